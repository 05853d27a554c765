"""An in-memory fake of the Kubernetes API server (core/v1 only) for tests.

Serves the REST paths the runtime uses, over real HTTP on 127.0.0.1, so the official
client is exercised end to end: list with label and field selectors, create (validated
against the official schema when `kubernetes-validate` is installed), get, replace,
delete, pod logs (tail, timestamps, previous, follow), and watches (`?watch=true` from a
list's resourceVersion, chunked JSON lines; `compact()` forgets history, so resuming from
before it answers an ERROR event with 410 Expired, as the real server does). Not a
scheduler and not a kubelet: tests move pods through their states with `set_pod_status`.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any

from a3s_runtime_kubernetes.fake_kube_http import Handler, LogRequest, WatchRequest, api_status
from a3s_runtime_kubernetes.selector_match import (
    FIELD_SELECTORS,
    field_match,
    label_match,
    split_terms,
)

CLUSTER_SCOPED = {"nodes": "Node", "namespaces": "Namespace"}
NAMESPACED = {"pods": "Pod", "services": "Service", "secrets": "Secret", "events": "Event"}
KINDS = {**CLUSTER_SCOPED, **NAMESPACED}
def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKubeApi:
    """`with FakeKubeApi() as api:` → `api.url` is the API server URL for the client."""

    def __init__(self, validate_version: str | None = "1.30") -> None:
        self.validate_version = validate_version
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.previous_logs: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.requests: list[tuple[str, str]] = []
        # (verb, resource) → 403 everywhere; (verb, resource, namespace) → 403 there only,
        # namespace "" meaning the cluster-wide (all namespaces) request.
        self.denied: set[tuple[str, ...]] = set()
        self._version = 0
        # (resourceVersion, type, resource, namespace, object) for watches
        self.history: list[tuple[int, str, str, str, dict[str, Any]]] = []
        self._compacted = 0  # watches from a version below this get 410 Expired
        self._epoch = 0  # compact() ends the watches open at the time
        self._lock = threading.Condition()
        # As a real API server: a deleted pod stays, terminating (deletionTimestamp set),
        # until its kubelet confirms; `confirm_deletion` plays the kubelet. Off by default.
        self.graceful_pod_deletion = False
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeKubeApi:
        handler = type("Handler", (Handler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeKubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    real = False  # tests/kube's RealKube, which shares these helpers, says True

    @property
    def options(self) -> dict[str, Any]:
        """runtime_options that connect a KubernetesRuntime to this fake."""
        return {"host": self.url}

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- seeding and inspection -----------------------------------------------------------

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store an object as the API server would (uid, timestamps, resourceVersion)."""
        with self._lock:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_rfc3339())
            self._version += 1
            meta["resourceVersion"] = str(self._version)
            obj.setdefault("apiVersion", "v1")
            obj.setdefault("kind", KINDS[resource])
            if resource == "pods":
                obj.setdefault("status", {"phase": "Pending"})
            if resource == "secrets" and "stringData" in obj:
                # write-only: the API server folds it into data, base64-encoded
                data = obj.setdefault("data", {})
                for key, value in obj.pop("stringData").items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
            ns = meta.get("namespace", "") if resource in NAMESPACED else ""
            kind = "MODIFIED" if (resource, ns, meta["name"]) in self.store else "ADDED"
            self.store[(resource, ns, meta["name"])] = obj
            self._record(kind, resource, ns, obj)
            return obj

    def _record(self, kind: str, resource: str, ns: str, obj: dict[str, Any]) -> None:
        """Remember a change for watches (under the lock) and wake them."""
        self.history.append((self._version, kind, resource, ns, json.loads(json.dumps(obj))))
        self._lock.notify_all()

    def _remove(self, key: tuple[str, str, str]) -> dict[str, Any]:
        obj = self.store.pop(key)
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._record("DELETED", key[0], key[1], obj)
        return obj

    def _mark_terminating(self, key: tuple[str, str, str]) -> dict[str, Any]:
        obj = self.store[key]
        meta = obj["metadata"]
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = now_rfc3339()
            meta["deletionGracePeriodSeconds"] = 30
            self._version += 1
            meta["resourceVersion"] = str(self._version)
            self._record("MODIFIED", key[0], key[1], obj)
        return obj

    def confirm_deletion(self, namespace: str, name: str) -> None:
        """The kubelet's confirmation: a terminating pod goes (see graceful_pod_deletion)."""
        with self._lock:
            if ("pods", namespace, name) in self.store:
                self._remove(("pods", namespace, name))

    def compact(self) -> None:
        """Forget the change history, as etcd compaction does, and end the open watches: a
        watch resuming from an earlier resourceVersion is told 410 Expired."""
        with self._lock:
            self.history.clear()
            self._compacted = self._version
            self._epoch += 1
            self._lock.notify_all()

    def delete_namespace(self, name: str) -> None:
        """The namespace and everything in it, at once (the namespace controller's work)."""
        with self._lock:
            for key in [k for k in self.store if k[1] == name or k == ("namespaces", "", name)]:
                self._remove(key)

    def add_namespace(self, name: str) -> None:
        self.put("namespaces", {"metadata": {"name": name}, "status": {"phase": "Active"}})

    def add_node(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        gpus: int | None = None,
        unschedulable: bool = False,
        taints: list[dict[str, str]] | None = None,
        ready: bool = True,
    ) -> None:
        allocatable = {"cpu": "63500m", "memory": "520000Mi", "pods": "110"}
        if gpus is not None:
            allocatable["nvidia.com/gpu"] = str(gpus)
        spec: dict[str, Any] = {"unschedulable": unschedulable} if unschedulable else {}
        if taints:
            spec["taints"] = taints
        self.put("nodes", {
            "metadata": {
                "name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}
            },
            "spec": spec,
            "status": {
                "allocatable": allocatable, "capacity": allocatable,
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        })

    def set_node_ready(self, name: str, status: str, reason: str = "", message: str = "",
                       since: str | None = None) -> None:
        """Replace the node's Ready condition, as its kubelet (or the node lifecycle
        controller, with Unknown) would; `since` is its lastTransitionTime."""
        node = json.loads(json.dumps(self.store[("nodes", "", name)]))
        node["status"]["conditions"] = [{
            "type": "Ready", "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now_rfc3339(), "lastTransitionTime": since or now_rfc3339(),
        }]
        self.put("nodes", node)

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.store.get((resource, namespace if resource in NAMESPACED else "", name))

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [o for (r, ns, _), o in sorted(self.store.items())
                if r == resource and (namespace is None or ns == namespace)]

    def set_pod_status(
        self, namespace: str, name: str, status: dict[str, Any], *, unwatched: bool = False
    ) -> None:
        """`unwatched`: no watch sees the change (one lost to compaction; `compact()` next)."""
        with self._lock:
            pod = self.store[("pods", namespace, name)]
            pod["status"] = status
            self._version += 1
            pod["metadata"]["resourceVersion"] = str(self._version)
            if not unwatched:
                self._record("MODIFIED", "pods", namespace, pod)

    def append_log(self, namespace: str, name: str, line: str, ts: str | None = None,
                   previous: bool = False) -> None:
        with self._lock:
            target = self.previous_logs if previous else self.logs
            stamp = ts or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
            target.setdefault((namespace, name), []).append((stamp, line))
            self._lock.notify_all()

    # -- request handling (called on server threads) --------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        self.requests.append((method, path))
        parts = path.strip("/").split("/")
        if parts == ["version"]:
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-fake",
                         "gitCommit": "fake", "gitTreeState": "clean", "buildDate": now_rfc3339(),
                         "goVersion": "go1.22", "compiler": "gc", "platform": "linux/amd64"}
        if parts[:2] != ["api", "v1"]:
            return api_status(404, "NotFound", f"the server could not find {path}")
        rest = parts[2:]
        ns = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces":
            rest = ["namespaces", rest[1]]
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if resource not in KINDS:
            return api_status(404, "NotFound", f"unknown resource {resource}")
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update",
                "DELETE": "delete", "PATCH": "patch"}[method]
        if verb == "list" and query.get("watch") in ("true", "1"):
            verb = "watch"
        what = resource + (f"/{sub}" if sub else "")
        if (verb, what) in self.denied or (verb, what, ns) in self.denied:
            return api_status(403, "Forbidden", f'{resource} is forbidden: User "fake" cannot '
                           f'{verb} resource "{resource}"')
        with self._lock:
            if sub == "log" and name:
                return self._log_headers(ns, name, query)
            if verb == "watch":
                return 200, WatchRequest(resource, ns, query)
            if verb == "list":
                return self._list(resource, ns, query)
            if verb == "create":
                return self._create(resource, ns, body)
            assert name is not None
            key = (resource, ns, name)
            if key not in self.store:
                return api_status(404, "NotFound", f'{resource} "{name}" not found')
            if verb == "get":
                return 200, self.store[key]
            if verb == "delete":
                if (resource == "pods" and self.graceful_pod_deletion
                        and query.get("gracePeriodSeconds") != "0"):
                    return 200, self._mark_terminating(key)
                return 200, self._remove(key)
            if verb == "update":
                return self._replace(resource, ns, name, body)
        return api_status(405, "MethodNotAllowed", f"{method} is not supported by the fake")

    def _list(self, resource: str, ns: str, query: dict[str, str]) -> tuple[int, Any]:
        for term in split_terms(query.get("fieldSelector") or ""):
            path = re.split(r"!=|==|=", term, maxsplit=1)[0]
            if path not in FIELD_SELECTORS[resource]:
                return api_status(400, "BadRequest", f'field label not supported: "{path}"')
        items = [o for (r, n, _), o in sorted(self.store.items())
                 if r == resource and (not ns or n == ns)
                 and label_match(query.get("labelSelector"), o["metadata"].get("labels") or {})
                 and field_match(query.get("fieldSelector"), o)]
        kind = KINDS[resource] + "List"
        return 200, {"apiVersion": "v1", "kind": kind,
                     "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _check(self, resource: str, body: dict[str, Any]) -> tuple[int, Any] | None:
        if self.validate_version is None:
            return None
        try:
            import kubernetes_validate
        except ImportError:
            return None
        try:
            kubernetes_validate.validate(body, self.validate_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            return api_status(422, "Invalid",
                              f"{KINDS[resource]} is invalid: {where}: {exc.message}")
        return None

    def _create(self, resource: str, ns: str, body: dict[str, Any]) -> tuple[int, Any]:
        if invalid := self._check(resource, body) or _check_labels(body):
            return invalid
        name = body.get("metadata", {}).get("name")
        if resource in NAMESPACED:
            if ("namespaces", "", ns) not in self.store:
                return api_status(404, "NotFound", f'namespaces "{ns}" not found')
            body["metadata"]["namespace"] = ns
        if (resource, ns, name) in self.store:
            return api_status(409, "AlreadyExists", f'{resource} "{name}" already exists')
        return 201, self.put(resource, body)

    def _replace(self, resource: str, ns: str, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if invalid := self._check(resource, body) or _check_labels(body):
            return invalid
        old = self.store[(resource, ns, name)]["metadata"]
        sent = body["metadata"].get("resourceVersion")
        if sent and sent != old["resourceVersion"]:
            return api_status(409, "Conflict", "the object has been modified")
        body["metadata"].update(uid=old["uid"], creationTimestamp=old["creationTimestamp"])
        if resource in NAMESPACED:
            body["metadata"]["namespace"] = ns
        return 200, self.put(resource, body)

    def _log_headers(self, ns: str, name: str, query: dict[str, str]) -> tuple[int, Any]:
        pod = self.store.get(("pods", ns, name))
        if pod is None:
            return api_status(404, "NotFound", f'pods "{name}" not found')
        previous = query.get("previous") == "true"
        if previous and (ns, name) not in self.previous_logs:
            return api_status(400, "BadRequest", f'previous terminated container "engine" in pod '
                           f'"{name}" not found')
        if not previous:
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (cs.get("state") or {}).get("waiting")
                if waiting:
                    return api_status(400, "BadRequest", f'container "{cs["name"]}" in pod '
                                   f'"{name}" is waiting to start: {waiting.get("reason")}')
        return 200, LogRequest(ns, name, query, previous)

    def log_lines(self, req: LogRequest) -> Iterator[str]:
        """The tail, then (follow) new lines until the pod goes or the server stops."""
        source = self.previous_logs if req.previous else self.logs
        stamps = req.query.get("timestamps") == "true"
        with self._lock:
            lines = list(source.get((req.ns, req.name), []))
        tail = req.query.get("tailLines")
        sent = len(lines)
        for ts, text in lines[-int(tail):] if tail else lines:
            yield f"{ts} {text}\n" if stamps else f"{text}\n"
        if req.query.get("follow") != "true":
            return
        while True:
            with self._lock:
                self._lock.wait_for(
                    lambda seen=sent: self._stopping  # type: ignore[misc]
                    or len(source.get((req.ns, req.name), [])) > seen
                    or ("pods", req.ns, req.name) not in self.store,
                    timeout=0.2,
                )
                if self._stopping or ("pods", req.ns, req.name) not in self.store:
                    return
                new = source.get((req.ns, req.name), [])[sent:]
                sent += len(new)
            for ts, text in new:
                yield f"{ts} {text}\n" if stamps else f"{text}\n"


    def watch_events(self, req: WatchRequest) -> Iterator[dict[str, Any]]:
        """Changes after the request's resourceVersion (its selectors applied) until
        `timeoutSeconds`, the client going, or the server stopping."""
        q = req.query
        deadline = time.monotonic() + float(q.get("timeoutSeconds") or 1800)
        with self._lock:
            epoch = self._epoch
            since = int(q.get("resourceVersion") or self._version)
            if since < self._compacted:
                expired = api_status(410, "Expired", f"too old resource version: {since} "
                                 f"({self._compacted})")[1]
                yield {"type": "ERROR", "object": expired}
                return
        while True:
            with self._lock:
                self._lock.wait_for(
                    lambda seen=since: self._stopping  # type: ignore[misc]
                    or time.monotonic() >= deadline
                    or self._epoch != epoch
                    or (bool(self.history) and self.history[-1][0] > seen),
                    timeout=0.2,
                )
                if self._stopping or time.monotonic() >= deadline or self._epoch != epoch:
                    return
                new = [h for h in self.history if h[0] > since]
            for version, kind, resource, ns, obj in new:
                since = version
                if resource != req.resource or (req.ns and ns != req.ns):
                    continue
                labels = obj["metadata"].get("labels") or {}
                if label_match(q.get("labelSelector"), labels):
                    yield {"type": kind, "object": obj}


def _check_labels(body: dict[str, Any]) -> tuple[int, Any] | None:
    """The API server's label syntax rules (the JSON schema does not carry them)."""
    from a3s_core.errors import InvalidRequest
    from a3s_runtime_kubernetes.naming import check_label_key, check_label_value

    try:
        for key, value in (body.get("metadata", {}).get("labels") or {}).items():
            check_label_key(key, "metadata.labels")
            check_label_value(value, f"metadata.labels[{key}]")
    except InvalidRequest as exc:
        return api_status(422, "Invalid", exc.message)
    return None


@contextmanager
def fake_kube_api(validate_version: str | None = "1.30") -> Iterator[FakeKubeApi]:
    api = FakeKubeApi(validate_version).start()
    try:
        yield api
    finally:
        api.stop()

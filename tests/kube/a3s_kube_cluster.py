"""pytest plugin: `kube_cluster`, one real control plane per test run (tests/kube/controlplane.py),
behind the seeding and inspection methods of `FakeKubeApi`, so one suite runs on both.

Registered by name (`pytest_plugins = ["a3s_kube_cluster"]`) from the kubernetes runtime's
tests and from tests/kube, so a run that has both starts one control plane, not two.
Set A3S_KUBECONFIG to run the same tests against another cluster (it must be disposable:
`reset()` deletes every namespace but the system ones, and nodes without kwok's annotation).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from controlplane import KWOK_ANNOTATION, SYSTEM_NAMESPACES, ControlPlane, missing_reason

NAMESPACED = {"pods", "services", "secrets", "events"}
MERGE = "application/merge-patch+json"


class RealKube:
    """The subset of FakeKubeApi's helpers the runtime's tests use, on a real API server."""

    real = True

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.local = isinstance(cp, ControlPlane)  # else a cluster given by A3S_KUBECONFIG
        self._stop = threading.Event()
        self._kubelet: threading.Thread | None = None

    def start_kubelet(self) -> None:
        """Play the kubelet of the nodes kwok does not run, for deletions only: a pod
        deleted there is terminating until its kubelet confirms (DELETE, grace 0)."""
        self._kubelet = threading.Thread(target=self._confirm_deletions, daemon=True)
        self._kubelet.start()

    def stop_kubelet(self) -> None:
        self._stop.set()

    def _confirm_deletions(self) -> None:
        while not self._stop.wait(0.1):
            try:
                kwok = {n["metadata"]["name"] for n in self.call("GET", "/api/v1/nodes")["items"]
                        if (n["metadata"].get("annotations") or {}).get(KWOK_ANNOTATION)}
                for pod in self.call("GET", "/api/v1/pods")["items"]:
                    md = pod["metadata"]
                    if md.get("deletionTimestamp") and pod["spec"].get("nodeName") not in kwok:
                        self.call("DELETE", self.path("pods", md["namespace"], md["name"])
                                  + "?gracePeriodSeconds=0", ok=(200, 404, 409))
            except Exception:
                continue

    @property
    def options(self) -> dict[str, Any]:
        """runtime_options that connect a KubernetesRuntime as cluster admin."""
        return {"kubeconfig": str(self.cp.kubeconfig)}

    @staticmethod
    def path(resource: str, namespace: str = "", name: str = "") -> str:
        base = f"/api/v1/namespaces/{namespace}/{resource}" if resource in NAMESPACED else \
            f"/api/v1/{resource}"
        return f"{base}/{quote(name)}" if name else base

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201),
             content_type: str = "application/json") -> Any:
        code, out = self.cp.request(method, path, body, content_type)
        if code not in ok:
            raise AssertionError(f"{method} {path}: HTTP {code}: {out}")
        return out

    # -- seeding --------------------------------------------------------------------------

    def add_namespace(self, name: str) -> None:
        self.call("POST", "/api/v1/namespaces", {"metadata": {"name": name}}, ok=(201, 409))

    def add_node(self, name: str, labels: dict[str, str] | None = None, gpus: int | None = None,
                 unschedulable: bool = False, taints: list[dict[str, str]] | None = None,
                 ready: bool = True, kwok: bool = False) -> None:
        """`kwok`: kwok runs the node (heartbeats, pods Running/Ready); otherwise the node is
        inert, as in the fake, and tests move its pods through their states themselves."""
        allocatable = {"cpu": "63500m", "memory": "520000Mi", "pods": "110"}
        if gpus is not None:
            allocatable["nvidia.com/gpu"] = str(gpus)
        spec: dict[str, Any] = {"unschedulable": unschedulable} if unschedulable else {}
        if taints:
            spec["taints"] = taints
        node = {"metadata": {"name": name,
                             "labels": {"kubernetes.io/hostname": name, **(labels or {})},
                             "annotations": {KWOK_ANNOTATION: "fake"} if kwok else {}},
                "spec": spec}
        self.call("POST", "/api/v1/nodes", node, ok=(201,))
        status = {"allocatable": allocatable, "capacity": allocatable}
        if not kwok:
            status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                     "reason": "Test", "message": "set by the test"}]
        self.call("PATCH", f"/api/v1/nodes/{name}/status", {"status": status},
                  content_type=MERGE)

    def set_node_ready(self, name: str, status: str, reason: str = "", message: str = "",
                       since: str | None = None) -> None:
        """Replace the node's Ready condition through /status, as its kubelet would. On a
        node kwok runs, kwok sets it back to True: take the node from kwok first."""
        stamp = since or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        condition = {"type": "Ready", "status": status, "reason": reason, "message": message,
                     "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        self.call("PATCH", f"/api/v1/nodes/{name}/status",
                  {"status": {"conditions": [condition]}}, content_type=MERGE)

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create (or replace) as given; a pod's `status` is then written through /status."""
        obj = json.loads(json.dumps(obj))
        ns = obj["metadata"].get("namespace", "")
        status = obj.pop("status", None) if resource == "pods" else None
        if resource == "events":
            obj.setdefault("involvedObject", {}).setdefault("namespace", ns)
        code, out = self.cp.request("POST", self.path(resource, ns), obj)
        if code == 409:
            current = self.call("GET", self.path(resource, ns, obj["metadata"]["name"]))
            obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            out = self.call("PUT", self.path(resource, ns, obj["metadata"]["name"]), obj)
        elif code != 201:
            raise AssertionError(f"create {resource} {ns}/{obj['metadata']['name']}: "
                                 f"HTTP {code}: {out}")
        if status is not None:
            self.set_pod_status(ns, obj["metadata"]["name"], status)
            out = self.call("GET", self.path(resource, ns, obj["metadata"]["name"]))
        return out  # type: ignore[no-any-return]

    def set_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Replace the pod's status, as its kubelet would (again on a 409: kube-scheduler
        may write the pod between our read and our write)."""
        for _ in range(10):
            pod = self.call("GET", self.path("pods", namespace, name))
            pod["status"] = status
            code, out = self.cp.request("PUT", self.path("pods", namespace, name) + "/status",
                                        pod)
            if code == 200:
                return
            assert code == 409, f"PUT {namespace}/{name}/status: HTTP {code}: {out}"
        raise AssertionError(f"pod {namespace}/{name}: status write kept conflicting")

    # -- inspection -----------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None once deleted. A deleted pod is terminating until its node
        confirms; it counts as gone (the runtime did delete it)."""
        code, out = self.cp.request("GET", self.path(resource, namespace, name))
        if code == 404 or (code == 200 and out["metadata"].get("deletionTimestamp")):
            return None
        assert code == 200, out
        return out  # type: ignore[no-any-return]

    def objects(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        path = self.path(resource, namespace) if namespace else f"/api/v1/{resource}"
        items = self.call("GET", path)["items"]
        live = [o for o in items if not o["metadata"].get("deletionTimestamp")]
        return sorted(live, key=lambda o: (o["metadata"].get("namespace", ""),
                                           o["metadata"]["name"]))

    # -- between tests --------------------------------------------------------------------

    def reset(self, keep_kwok_nodes: bool = False) -> None:
        """Back to an empty cluster: every non-system namespace and what is in it, and the
        nodes (kwok's too unless `keep_kwok_nodes`)."""
        for ns in self.call("GET", "/api/v1/namespaces")["items"]:
            name = ns["metadata"]["name"]
            for resource in ("pods", "services", "secrets", "events"):
                if name in SYSTEM_NAMESPACES and resource in ("secrets", "services"):
                    continue  # the `kubernetes` Service lives in default
                self.call("DELETE", f"{self.path(resource, name)}?gracePeriodSeconds=0",
                          ok=(200, 404))
            if name not in SYSTEM_NAMESPACES:
                self.delete_namespace(name)
        for node in self.call("GET", "/api/v1/nodes")["items"]:
            kwok = (node["metadata"].get("annotations") or {}).get(KWOK_ANNOTATION)
            if not (keep_kwok_nodes and kwok):
                self.call("DELETE", self.path("nodes", "", node["metadata"]["name"]),
                          ok=(200, 404))

    def delete_namespace(self, name: str) -> None:
        """Delete and finalize it (the namespace controller's job; none runs here)."""
        self.call("DELETE", self.path("namespaces", "", name), ok=(200, 202, 404))
        code, ns = self.cp.request("GET", self.path("namespaces", "", name))
        if code == 200:
            ns["spec"]["finalizers"] = []
            self.call("PUT", f"/api/v1/namespaces/{name}/finalize", ns, ok=(200, 404, 409))
        deadline = time.monotonic() + 10
        while self.cp.request("GET", self.path("namespaces", "", name))[0] != 404:
            assert time.monotonic() < deadline, f"namespace {name} not gone"
            time.sleep(0.05)


def needs_local(kube: RealKube, why: str) -> None:
    """Skip on a cluster given by A3S_KUBECONFIG: the test reaches into the control plane."""
    if not kube.local:
        pytest.skip(f"needs the local control plane of tests/kube: {why}")


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealKube]:
    """The control plane, started once per run (skips, saying why, where it cannot be)."""
    external = os.environ.get("A3S_KUBECONFIG")
    if external:
        kube = RealKube(_External(Path(external)))  # type: ignore[arg-type]
        kube.start_kubelet()
        try:
            yield kube
        finally:
            kube.stop_kubelet()
        return
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cp = ControlPlane(tmp_path_factory.mktemp("kube"))
    try:
        cp.start()
    except Exception:
        cp.stop()
        raise
    kube = RealKube(cp)
    kube.start_kubelet()
    try:
        yield kube
    finally:
        kube.stop_kubelet()
        cp.stop()


class _External:
    """A cluster given by kubeconfig (A3S_KUBECONFIG): requests through the official client."""

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import client, config

        self.kubeconfig = kubeconfig
        self.api = config.new_client_from_config(config_file=str(kubeconfig))
        self.client = client

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        from kubernetes.client.exceptions import ApiException

        cfg = self.api.configuration
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        for auth in cfg.auth_settings().values():  # a bearer token, when the kubeconfig has one
            if auth.get("in") == "header" and auth.get("value"):
                headers[auth["key"]] = auth["value"]
        try:
            resp = self.api.call_api(method, cfg.host + path, header_params=headers, body=body)
            resp.read()
            raw, code = resp.data, resp.status
        except ApiException as exc:
            raw, code = exc.body or b"{}", exc.status
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw.decode(errors="replace") if isinstance(raw, bytes) else raw

"""The `kubernetes` runtime: one GPU-pinned pod per replica, one Service per deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from a3s_core.catalog import load_catalog
from a3s_core.contracts import Runtime
from a3s_core.errors import Conflict, InvalidRequest, NotFound, RuntimeUnavailable
from a3s_core.types import LogLine, Node, ReplicaObservation, ReplicaRequest
from a3s_runtime_kubernetes import dcgm, logs, nodehealth
from a3s_runtime_kubernetes import naming as n
from a3s_runtime_kubernetes.client import build_api_client, call, raw_json
from a3s_runtime_kubernetes.inventory import build_inventory
from a3s_runtime_kubernetes.objects import Json, labels_of, meta, name_of, namespace_of
from a3s_runtime_kubernetes.options import KubernetesOptions, parse_options
from a3s_runtime_kubernetes.podcache import PodCache
from a3s_runtime_kubernetes.render import (
    render_hf_secret,
    render_namespace,
    render_pod,
    render_service,
    tolerations,
)
from a3s_runtime_kubernetes.status import observe_pod

# A pod name still held by a pod on its way out (its kubelet confirms within the grace
# period, 30 s by default) is waited for this long before create_replica gives up.
TERMINATING_WAIT_S = 30.0

log = logging.getLogger(__name__)

LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"


class KubernetesRuntime(Runtime):
    """Replicas as pods in a real cluster, through the official client (sync, in threads)."""

    name: ClassVar[str] = "kubernetes"
    runs_images: ClassVar[bool | None] = True  # the engine command runs in its image

    def __init__(
        self, options: dict[str, object] | None = None, *, api_client: k8s.ApiClient | None = None
    ) -> None:
        super().__init__(options)
        self.opts: KubernetesOptions = parse_options(self.options)
        self._api_client = api_client
        self._core: k8s.CoreV1Api | None = None
        self._namespaces: set[str] = set()
        self._secrets: set[str] = set()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._warned_foreign = False
        self._selector = n.managed_selector(self.opts.instance)
        self.pod_cache: PodCache | None = None  # with `watch_pods`
        self.node_health = nodehealth.NodeHealth(self.opts.node_check_interval_s)
        self._next_service_gc = float("-inf")  # monotonic

    # -- connection ---------------------------------------------------------------------

    @property
    def core(self) -> k8s.CoreV1Api:
        if self._core is None:
            raise RuntimeUnavailable("kubernetes runtime used before start()")
        return self._core

    async def start(self) -> None:
        if self._api_client is None:
            self._api_client = await asyncio.to_thread(build_api_client, self.opts)
        self._core = k8s.CoreV1Api(self._api_client)
        version_api = k8s.VersionApi(self._api_client)
        version = await self._call("read the server version", version_api.get_code)
        log.info("kubernetes runtime connected to %s (Kubernetes %s)",
                 self._api_client.configuration.host, version.git_version)
        if self.opts.watch_pods:
            self.pod_cache = PodCache(
                self._core, self._selector, self.opts.watch_namespaces,
                request_timeout_s=self.opts.request_timeout_s,
                watch_timeout_s=self.opts.watch_timeout_s,
            )
            self.pod_cache.start()

    async def close(self) -> None:
        if self.pod_cache is not None:
            self.pod_cache.stop()
            self.pod_cache = None
        if self._api_client is not None:
            await asyncio.to_thread(self._api_client.close)
        self._core = None

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await call(what, fn, *args, timeout_s=self.opts.request_timeout_s, **kwargs)

    # -- inventory ----------------------------------------------------------------------

    async def list_nodes(self) -> list[Node]:
        nodes, pods, stats = await asyncio.gather(
            self._call("list nodes", raw_json(self.core.list_node),
                       label_selector=self.opts.node_selector),
            self._pods_holding_gpus(),
            self._gpu_stats(),
        )
        catalog = load_catalog(self.opts.gpu_catalog)
        tols = self.core.api_client.sanitize_for_serialization(tolerations(self.opts))
        return build_inventory(
            nodes["items"] or [], pods, catalog, tols, stats, self.opts.instance
        )

    async def _gpu_stats(self) -> dict[dcgm.GpuKey, dcgm.GpuStats]:
        """DCGM figures from the configured URLs and the discovered exporter pods."""
        targets: dict[str, str | None] = dict.fromkeys(self.opts.dcgm_exporter_urls)
        if self.opts.dcgm_exporter_selector:
            ns = self.opts.dcgm_exporter_namespace
            what = "list dcgm-exporter pods"
            selector = self.opts.dcgm_exporter_selector
            try:
                if ns:
                    found = await self._call(what, raw_json(self.core.list_namespaced_pod), ns,
                                             label_selector=selector)
                else:
                    found = await self._call(
                        what, raw_json(self.core.list_pod_for_all_namespaces),
                        label_selector=selector,
                    )
            except RuntimeUnavailable as exc:
                log.warning("no GPU utilisation: %s", exc.message)
                found = {"items": []}
            for pod in found["items"] or []:
                ip = (pod.get("status") or {}).get("podIP")
                node = (pod.get("spec") or {}).get("nodeName")
                if ip and node:
                    host = f"[{ip}]" if ":" in ip else ip
                    targets[f"http://{host}:{self.opts.dcgm_exporter_port}/metrics"] = node
        return await dcgm.scrape(targets, self.opts.dcgm_timeout_s)

    async def _pods_holding_gpus(self) -> list[Json]:
        """Every live pod in the cluster (foreign GPUs count against capacity). Without the
        cluster-wide read, only A3S's own pods are known; that is logged once."""
        try:
            result = await self._call(
                "list pods in all namespaces", raw_json(self.core.list_pod_for_all_namespaces),
                field_selector=LIVE_PODS, passthrough=(403,),
            )
            return list(result["items"] or [])
        except ApiException:
            if not self._warned_foreign:
                log.warning("kubernetes runtime may not list pods cluster-wide; GPUs used by "
                            "other workloads are not seen (%s)", "contrib/kubernetes/rbac.yaml")
                self._warned_foreign = True
            return await self._managed_pods()

    # -- replicas -----------------------------------------------------------------------

    async def create_replica(self, request: ReplicaRequest) -> ReplicaObservation:
        ns = self.opts.k8s_namespace(request.namespace)
        pod = render_pod(request, ns, self.opts)  # bad labels fail here, before any write
        name = str(pod.metadata.name if pod.metadata else "")
        async with self._locks[request.deployment_id]:
            for attempt in (1, 2):
                await self._ensure_namespace(ns)
                try:
                    await self._ensure_hf_secret(ns)
                    await self._ensure_service(request, ns)
                    created = await self._create_pod(pod, ns, name, request.replica_id)
                    if self.pod_cache is not None:
                        self.pod_cache.upsert(created)  # observed before its watch event
                    return observe_pod(created)
                except ApiException as exc:  # 404: the namespace went since we cached it
                    self._namespaces.discard(ns)
                    self._secrets.discard(ns)
                    if attempt == 2:
                        raise RuntimeUnavailable(
                            f"Kubernetes API refused to create pod {ns}/{name}: "
                            f"namespace {ns!r} not found"
                        ) from exc
        raise AssertionError("unreachable")

    async def _create_pod(self, pod: k8s.V1Pod, ns: str, name: str, replica_id: str) -> Json:
        """Create the pod. A 409 is either this replica's own earlier create (a retry after a
        lost answer: adopt it) or a pod of that name still terminating from an earlier
        deletion, which the API server keeps until its kubelet confirms: wait for it to go
        (up to TERMINATING_WAIT_S) and create again, never adopt a pod on its way out."""
        deadline = time.monotonic() + TERMINATING_WAIT_S
        while True:
            try:
                created: Json = await self._call(
                    f"create pod {ns}/{name}", raw_json(self.core.create_namespaced_pod), ns,
                    pod, passthrough=(404, 409),
                )
                return created
            except ApiException as exc:
                if exc.status == 404:
                    raise
            try:
                existing: Json = await self._call(
                    f"read pod {ns}/{name}", raw_json(self.core.read_namespaced_pod), name, ns,
                    passthrough=(404,),
                )
            except ApiException:
                existing = {}  # gone between our create and our read: create again
            if existing and not meta(existing).get("deletionTimestamp"):
                if labels_of(existing).get(n.REPLICA) != replica_id:
                    raise Conflict(f"pod {ns}/{name} exists and belongs to another replica")
                return existing
            if time.monotonic() >= deadline:
                raise RuntimeUnavailable(
                    f"pod {ns}/{name} of an earlier deletion is still terminating after "
                    f"{TERMINATING_WAIT_S:g} s; the replica will be created again "
                    "once it is gone")
            await asyncio.sleep(0.2)

    async def delete_replica(self, replica_id: str) -> None:
        try:
            n.check_label_value(replica_id, "replica_id")
        except InvalidRequest:
            return  # no pod can carry it; deleting nothing is success
        for pod in await self._managed_pods(f"{n.REPLICA}={replica_id}"):
            deployment = labels_of(pod).get(n.DEPLOYMENT, "")
            async with self._locks[deployment]:
                await self._delete_pod(pod)
                await self._drop_service_if_unused(namespace_of(pod), deployment)

    async def delete_deployment(self, deployment_id: str) -> None:
        """Every pod of a deployment, then its Service. Idempotent."""
        n.check_label_value(deployment_id, "deployment_id")
        async with self._locks[deployment_id]:
            pods = await self._managed_pods(f"{n.DEPLOYMENT}={deployment_id}")
            await asyncio.gather(*(self._delete_pod(p) for p in pods))
            namespaces = {namespace_of(p) for p in pods}
            namespaces |= await self._service_namespaces(deployment_id)
            for ns in namespaces:
                await self._drop_service_if_unused(ns, deployment_id)

    async def observe(self) -> list[ReplicaObservation]:
        cache = self.pod_cache
        pods = cache.pods() if cache is not None and cache.synced else await self._managed_pods()
        pending = [p for p in pods if (p.get("status") or {}).get("phase") in (None, "Pending")]
        warnings = await asyncio.gather(*(self._latest_warning(p) for p in pending))
        by_uid = {meta(p).get("uid"): w for p, w in zip(pending, warnings, strict=True)}
        observed = [observe_pod(p, by_uid.get(meta(p).get("uid"))) for p in pods]
        if observed:
            await self._check_nodes()
        await self._collect_services(pods)
        return nodehealth.apply(observed, self.node_health.bad, self.opts.node_lost_grace_s,
                                time.time())

    async def _check_nodes(self) -> None:
        """Re-read the nodes' Ready conditions when due. If they cannot be read, the last
        view stands (replicas are not declared lost on an API hiccup)."""
        if not self.node_health.due():
            return
        try:
            nodes = await self._call("list nodes", raw_json(self.core.list_node))
        except RuntimeUnavailable as exc:
            log.warning("cannot check node readiness: %s", exc.message)
            return
        before = set(self.node_health.bad)
        self.node_health.update(nodes["items"] or [])
        for name in set(self.node_health.bad) - before:
            log.warning("%s", self.node_health.bad[name].describe())

    async def logs(
        self, replica_id: str, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        pod = await self._pod_of(replica_id)
        name, ns = name_of(pod), namespace_of(pod)
        what = f"read the log of pod {ns}/{name}"
        args: dict[str, Any] = dict(container=n.CONTAINER, tail_lines=tail, timestamps=True)
        try:
            if follow:
                response = await call(what, self.core.read_namespaced_pod_log, name, ns,
                                      follow=True, _preload_content=False, passthrough=(400,),
                                      **args)
                async for line in logs.follow(replica_id, response):
                    yield line
                return
            text = await self._call(what, self.core.read_namespaced_pod_log, name, ns,
                                    passthrough=(400,), **args)
        except ApiException:
            # 400: the container is waiting (to start, or to restart after a crash); the
            # crashed run's log is what explains it, and there is nothing to follow yet.
            try:
                text = await self._call(what, self.core.read_namespaced_pod_log, name, ns,
                                        previous=True, passthrough=(400,), **args)
            except ApiException:
                return  # it has never run: no log yet
        for line in logs.parse_text(replica_id, text):
            yield line

    # -- helpers ------------------------------------------------------------------------

    async def _managed_pods(self, extra_selector: str = "") -> list[Json]:
        selector = ",".join(s for s in (self._selector, extra_selector) if s)
        if self.opts.watch_namespaces is None:
            result = await self._call("list A3S pods",
                                      raw_json(self.core.list_pod_for_all_namespaces),
                                      label_selector=selector)
            return list(result["items"] or [])
        results = await asyncio.gather(*(
            self._call(f"list A3S pods in {ns}", raw_json(self.core.list_namespaced_pod), ns,
                       label_selector=selector)
            for ns in self.opts.watch_namespaces
        ))
        return [p for r in results for p in r["items"] or []]

    async def _pod_of(self, replica_id: str) -> Json:
        n.check_label_value(replica_id, "replica_id")
        pods = await self._managed_pods(f"{n.REPLICA}={replica_id}")
        if not pods:
            raise NotFound(f"replica {replica_id!r} has no pod in the cluster")
        return pods[0]

    async def _delete_pod(self, pod: Json) -> None:
        name, ns = name_of(pod), namespace_of(pod)
        # A NotReady node's kubelet cannot confirm a graceful deletion, so the pod would stay
        # Terminating (and come back to life with the node): force it, as `kubectl delete
        # --force` does; the kubelet stops the container when it reconnects.
        force = self.node_health.is_bad((pod.get("spec") or {}).get("nodeName"))
        extra: dict[str, Any] = {"grace_period_seconds": 0} if force else {}
        with contextlib.suppress(ApiException):  # 404: already gone
            await self._call(f"delete pod {ns}/{name}", self.core.delete_namespaced_pod,
                             name, ns, passthrough=(404,), **extra)

    async def _drop_service_if_unused(self, ns: str, deployment_id: str) -> None:
        """Delete the deployment's Service once none of its pods remains (terminating pods
        do not count: they leave the endpoints at once)."""
        selector = f"{self._selector},{n.DEPLOYMENT}={deployment_id}"
        left = await self._call(f"list pods in {ns}", raw_json(self.core.list_namespaced_pod),
                                ns, label_selector=selector)
        if any(not meta(p).get("deletionTimestamp") for p in left["items"] or []):
            return
        services = await self._call(f"list services in {ns}",
                                    raw_json(self.core.list_namespaced_service),
                                    ns, label_selector=selector)
        for svc in services["items"] or []:
            with contextlib.suppress(ApiException):  # 404: already gone
                await self._call(f"delete service {ns}/{name_of(svc)}",
                                 self.core.delete_namespaced_service, name_of(svc), ns,
                                 passthrough=(404,))

    async def _collect_services(self, pods: list[Json]) -> None:
        """Delete the Services of deployments none of whose pods is left, every
        `service_gc_interval_s`. delete_replica drops a Service with the deployment's last
        pod; but if that call fails after the pod went (an API timeout), the controller's
        retry finds no pod to start from, and the Service would stay for good."""
        if time.monotonic() < self._next_service_gc:
            return
        self._next_service_gc = time.monotonic() + self.opts.service_gc_interval_s
        live = {labels_of(p).get(n.DEPLOYMENT) for p in pods
                if not meta(p).get("deletionTimestamp")}
        try:
            services = await self._managed_services()
        except RuntimeUnavailable as exc:
            log.warning("kubernetes runtime could not list its Services: %s", exc)
            return
        for svc in services:
            deployment = labels_of(svc).get(n.DEPLOYMENT)
            if not deployment or deployment in live:
                continue
            async with self._locks[deployment]:  # not while a replica is being created
                await self._drop_service_if_unused(namespace_of(svc), deployment)

    async def _managed_services(self) -> list[Json]:
        namespaces = self.opts.watch_namespaces
        if namespaces is None:
            try:
                result = await self._call(
                    "list A3S services", raw_json(self.core.list_service_for_all_namespaces),
                    label_selector=self._selector, passthrough=(403,))
                return list(result["items"] or [])
            except ApiException:
                namespaces = sorted(self._namespaces)  # namespaced RBAC: where we put pods
        results = await asyncio.gather(*(
            self._call(f"list A3S services in {ns}", raw_json(self.core.list_namespaced_service),
                       ns, label_selector=self._selector)
            for ns in namespaces
        ))
        return [s for r in results for s in r["items"] or []]

    async def _service_namespaces(self, deployment_id: str) -> set[str]:
        selector = f"{self._selector},{n.DEPLOYMENT}={deployment_id}"
        if self.opts.watch_namespaces is not None:
            return set(self.opts.watch_namespaces)
        try:
            result = await self._call("list A3S services",
                                      raw_json(self.core.list_service_for_all_namespaces),
                                      label_selector=selector, passthrough=(403,))
        except ApiException:
            # contrib/kubernetes/rbac.yaml grants services per namespace only: look where
            # this process has put replicas (the caller adds the pods' namespaces).
            return set(self._namespaces)
        return {namespace_of(s) for s in result["items"] or []}

    async def _ensure_namespace(self, ns: str) -> None:
        if ns in self._namespaces:
            return
        try:
            await self._call(f"read namespace {ns}", self.core.read_namespace, ns,
                             passthrough=(403, 404))
        except ApiException as exc:
            if exc.status == 403:
                pass  # namespaced RBAC: cannot read namespaces; pod creation will tell
            elif not self.opts.create_namespaces:
                raise RuntimeUnavailable(
                    f"Kubernetes namespace {ns!r} does not exist and runtime_options."
                    "create_namespaces is false; create it or map the namespace "
                    "(runtime_options.namespace_map)"
                ) from None
            else:
                with contextlib.suppress(ApiException):  # 409: created meanwhile
                    await self._call(f"create namespace {ns}", self.core.create_namespace,
                                     render_namespace(ns), passthrough=(409,))
        self._namespaces.add(ns)

    async def _ensure_hf_secret(self, ns: str) -> None:
        if not self.opts.hf_token or ns in self._secrets:
            return
        secret = render_hf_secret(ns, self.opts)
        name = self.opts.hf_token_secret
        try:
            await self._call(f"create secret {ns}/{name}", self.core.create_namespaced_secret,
                             ns, secret, passthrough=(404, 409))
        except ApiException as exc:
            if exc.status == 404:
                raise
            await self._call(f"update secret {ns}/{name}", self.core.replace_namespaced_secret,
                             name, ns, secret)
        self._secrets.add(ns)

    async def _ensure_service(self, request: ReplicaRequest, ns: str) -> None:
        svc = render_service(request, ns, self.opts.instance)
        body: Json = self.core.api_client.sanitize_for_serialization(svc)
        name = name_of(body)
        try:
            await self._call(f"create service {ns}/{name}", self.core.create_namespaced_service,
                             ns, svc, passthrough=(404, 409))
            return
        except ApiException as exc:
            if exc.status == 404:  # no namespace: create_replica re-ensures it
                raise
        existing: Json = await self._call(f"read service {ns}/{name}",
                                          raw_json(self.core.read_namespaced_service), name, ns)
        labels = labels_of(existing)
        if labels.get(n.DEPLOYMENT) == request.deployment_id:
            return
        if not n.is_ours(labels, self.opts.instance):
            raise Conflict(
                f"Service {ns}/{name} already exists and is not managed by this A3S "
                f"installation ({n.INSTANCE}={self.opts.instance}); rename the deployment "
                "or remove that Service"
            )
        # A3S's Service from an earlier deployment of the same name: point it at this one.
        # Read-modify-replace (resourceVersion guards it) rather than PATCH, whose content
        # type defaults differ between client generations.
        cluster_ip = (existing.get("spec") or {}).get("clusterIP")
        existing["metadata"]["labels"] = labels_of(body)
        existing["spec"] = {**body["spec"], "clusterIP": cluster_ip}  # immutable: keep it
        await self._call(f"update service {ns}/{name}", self.core.replace_namespaced_service,
                         name, ns, existing)

    async def _latest_warning(self, pod: Json) -> str | None:
        """The newest Warning event about a pending pod (FailedMount, FailedScheduling…)."""
        ns = namespace_of(pod)
        try:
            events = await self._call(
                f"list events in {ns}", self.core.list_namespaced_event, ns,
                field_selector=f"involvedObject.uid={meta(pod).get('uid')},type=Warning",
                passthrough=(403,),
            )
        except (ApiException, RuntimeUnavailable):
            return None  # events are a nicety; state comes from the pod itself
        if not events.items:
            return None
        latest = max(events.items, key=_event_time)
        return f"{latest.reason}: {latest.message}"


def _event_time(event: Any) -> datetime:
    stamp = (
        event.last_timestamp or event.event_time or event.first_timestamp
        or event.metadata.creation_timestamp
    )
    return stamp or datetime.min.replace(tzinfo=UTC)

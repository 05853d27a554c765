"""`watch_pods`: the runtime's pods from a watch-fed cache instead of a list every pass,
against the fake API server (list + watch from its resourceVersion, 410 after compaction,
403 on watch). Waits poll with generous deadlines; nothing asserts a duration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from a3s_k8s_test_helpers import fake_only, make_request
from a3s_runtime_kubernetes import KubernetesRuntime
from a3s_runtime_kubernetes.podcache import PodCache
from a3s_runtime_kubernetes.testing import FakeKubeApi
from kubernetes.client import V1PodList

POD = "qwen-72b-0a1b2c3d4e5f"
NS = "team-ai"
READY = {
    "phase": "Running",
    "podIP": "10.0.0.7",
    "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-25T08:00:00Z"}
    ],
    "containerStatuses": [{"name": "engine", "ready": True, "started": True, "restartCount": 0,
                           "image": "x", "imageID": "", "state": {"running": {}}}],
}

pytest_plugins = ["a3s_k8s_fixtures"]  # the `kube` fixture


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str,
                     timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


@pytest.fixture
async def watching(kube: FakeKubeApi) -> AsyncIterator[KubernetesRuntime]:
    rt = KubernetesRuntime({**kube.options, "watch_pods": True})
    await rt.start()
    try:
        await eventually(lambda: cache_of(rt).synced, "the first list")
        yield rt
    finally:
        await rt.close()


def cache_of(rt: KubernetesRuntime) -> PodCache:
    assert rt.pod_cache is not None
    return rt.pod_cache


async def states(rt: KubernetesRuntime) -> list[str]:
    return [o.state for o in await rt.observe()]


async def test_observe_follows_the_watch_without_listing(
    kube: FakeKubeApi, watching: KubernetesRuntime
) -> None:
    await watching.create_replica(make_request())
    assert await states(watching) == ["starting"]  # known at once, before its watch event
    kube.set_pod_status(NS, POD, READY)

    async def ready() -> bool:
        return await states(watching) == ["ready"]

    await eventually(ready, "the status change arrives by the watch")
    if kube.real:  # no request log to count; the state came by the watch all the same
        obs = await watching.observe()
    else:
        asked = len(kube.requests)
        obs = await watching.observe()
        assert len(kube.requests) == asked, "observe() asked the API server"
    assert obs[0].url == "http://10.0.0.7:8000"
    await watching.delete_replica(POD)

    async def gone() -> bool:
        return await states(watching) == []

    await eventually(gone, "the deletion arrives by the watch")
    assert cache_of(watching).lists == 1


async def test_a_compacted_history_is_listed_again(
    kube: FakeKubeApi, watching: KubernetesRuntime
) -> None:
    await watching.create_replica(make_request())
    fake_only(kube, "drops one change from the watch history (tests/kube compacts etcd)")
    kube.set_pod_status(NS, POD, READY, unwatched=True)  # a change no watch will deliver…
    kube.compact()  # …because the history holding it is gone: resuming gets 410 Gone

    async def ready() -> bool:
        return await states(watching) == ["ready"]

    await eventually(ready, "the relist after 410 sees the change")
    assert cache_of(watching).lists >= 2


async def test_a_forbidden_watch_falls_back_to_listing(kube: FakeKubeApi) -> None:
    fake_only(kube, "injects a 403 (tests/kube runs the real RBAC)")
    kube.denied.add(("watch", "pods"))
    rt = KubernetesRuntime({**kube.options, "watch_pods": True})
    await rt.start()
    try:
        await eventually(lambda: rt.pod_cache is not None and rt.pod_cache.lists >= 1
                         and not rt.pod_cache.synced, "the watch is refused")
        await rt.create_replica(make_request())
        kube.set_pod_status(NS, POD, READY)
        assert await states(rt) == ["ready"]  # listed, so current at once
    finally:
        await rt.close()


class _WatchSpy:
    """CoreV1Api's pod listing, noting whether the cache says it is current each time it
    opens a watch (the list it has then is all it knows)."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.cache: PodCache | None = None
        self.synced_at_watch: list[bool] = []

    def list_pod_for_all_namespaces(self, *args: Any, **kwargs: Any) -> V1PodList:
        if kwargs.get("watch"):
            assert self.cache is not None
            self.synced_at_watch.append(self.cache.synced)
        return self.core.list_pod_for_all_namespaces(*args, **kwargs)  # type: ignore[no-any-return]


async def test_a_relist_after_a_failed_watch_is_not_current_until_a_watch_works(
    kube: FakeKubeApi,
) -> None:
    """With the watch refused, each retry lists and then fails to watch; in between, the
    list must not pass for current (a change after it would never arrive): the runtime
    lists on every pass instead. (Flaked as `['starting'] == ['ready']` under load.)"""
    fake_only(kube, "injects a 403 (tests/kube runs the real RBAC)")
    kube.denied.add(("watch", "pods"))
    rt = KubernetesRuntime({**kube.options, "watch_pods": False})
    await rt.start()
    spy = _WatchSpy(rt.core)
    cache = spy.cache = PodCache(cast(Any, spy), "a3s.io/managed-by=a3s", None,
                                 request_timeout_s=5, watch_timeout_s=5)
    cache.start()
    try:
        await eventually(lambda: len(spy.synced_at_watch) >= 3, "three watch attempts")
        assert spy.synced_at_watch[0] is True  # the first list: current, as informers say
        assert spy.synced_at_watch[1:] == [False] * (len(spy.synced_at_watch) - 1)
        assert not cache.synced
    finally:
        cache.stop()
        await rt.close()


async def test_watch_namespaces_watch_each_namespace(kube: FakeKubeApi) -> None:
    kube.add_namespace(NS)
    rt = KubernetesRuntime({**kube.options, "watch_pods": True, "watch_namespaces": [NS]})
    await rt.start()
    try:
        await eventually(lambda: cache_of(rt).synced, "the first list")
        await rt.create_replica(make_request())
        kube.set_pod_status(NS, POD, READY)

        async def ready() -> bool:
            return await states(rt) == ["ready"]

        await eventually(ready, "the namespaced watch delivers the change")
    finally:
        await rt.close()

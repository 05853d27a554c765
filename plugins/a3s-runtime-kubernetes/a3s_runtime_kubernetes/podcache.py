"""A watch-fed cache of the runtime's pods, so `observe()` need not list them every pass.

Per scope (all namespaces, or each of `watch_namespaces`) a daemon thread lists the
label-selected pods once, then watches from the list's resourceVersion, applying ADDED /
MODIFIED / DELETED as they come and resuming from the last version it saw when the server
ends the watch (`watch_timeout_s`). A 410 Gone (history compacted) or any other failure
means "list again"; until that list succeeds (and, after a failure other than 410, until
the watch that follows it has delivered an event or ended normally) the scope is not synced
and the runtime lists as before, so a broken or forbidden watch costs freshness never
correctness.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from a3s_runtime_kubernetes.client import raw_json
from a3s_runtime_kubernetes.objects import Json, meta, name_of, namespace_of

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
ALL = ""  # the scope "every namespace"


class PodCache:
    def __init__(
        self,
        core: k8s.CoreV1Api,
        selector: str,
        namespaces: list[str] | None,
        *,
        request_timeout_s: float,
        watch_timeout_s: int,
    ) -> None:
        self.core = core
        self.selector = selector
        self.scopes = list(namespaces) if namespaces is not None else [ALL]
        self.request_timeout_s = request_timeout_s
        self.watch_timeout_s = watch_timeout_s
        self._pods: dict[str, dict[tuple[str, str], Json]] = {s: {} for s in self.scopes}
        self._synced: dict[str, bool] = dict.fromkeys(self.scopes, False)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watches: dict[str, k8s_watch.Watch] = {}
        self._threads: list[threading.Thread] = []
        self.lists = 0  # full lists made (the first one, and one per 410 or failure)
        self.expired = 0  # watches answered 410 Gone (resumed from a compacted version)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for scope in self.scopes:
            t = threading.Thread(
                target=self._run, args=(scope,), name=f"a3s-k8s-watch-{scope or 'all'}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop watching; threads end at their next event or watch timeout (daemons)."""
        self._stop.set()
        for w in list(self._watches.values()):
            w.stop()

    # -- reading ----------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        with self._lock:
            return all(self._synced.values())

    def pods(self) -> list[Json]:
        with self._lock:
            return [p for scope in self.scopes for p in self._pods[scope].values()]

    def upsert(self, pod: Json) -> None:
        """A pod this process just created or read: known before its watch event arrives.
        Never replaces a newer version already seen."""
        key = (namespace_of(pod), name_of(pod))
        with self._lock:
            for scope in self.scopes:
                if scope in (ALL, key[0]):
                    held = self._pods[scope].get(key)
                    if held is None or _newer(pod, held):
                        self._pods[scope][key] = pod

    # -- the watch thread -------------------------------------------------------------------

    def _list_fn(self, scope: str) -> tuple[Any, tuple[Any, ...]]:
        if scope == ALL:
            return self.core.list_pod_for_all_namespaces, ()
        return self.core.list_namespaced_pod, (scope,)

    def _run(self, scope: str) -> None:
        fn, args = self._list_fn(scope)
        version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    listing = raw_json(fn)(*args, label_selector=self.selector,
                                           _request_timeout=self.request_timeout_s)
                    pods = {(namespace_of(p), name_of(p)): p for p in listing["items"] or []}
                    with self._lock:
                        self._pods[scope] = pods
                        # After a failure the watch must work before this list counts as
                        # current: a forbidden watch would leave it stale, claiming not to be.
                        self._synced[scope] = failures == 0
                    self.lists += 1
                    version = listing["metadata"]["resourceVersion"]
                w = k8s_watch.Watch()
                self._watches[scope] = w
                for event in w.stream(
                    fn, *args, label_selector=self.selector, resource_version=version,
                    timeout_seconds=self.watch_timeout_s, allow_watch_bookmarks=True,
                    _request_timeout=(self.request_timeout_s,
                                      self.watch_timeout_s + self.request_timeout_s),
                ):
                    if self._stop.is_set():
                        break
                    version = self._apply(scope, event) or version
                    failures = self._watching(scope, failures)
                else:  # the server ended the watch (its timeout): it was accepted
                    failures = self._watching(scope, failures)
            except ApiException as exc:
                if exc.status == 410:  # our version is gone from the server's history
                    log.info("pod watch %s: %s; listing again", scope or "(all)", exc.reason)
                    self.expired += 1
                    version = None
                    continue
                failures = self._failed(scope, f"HTTP {exc.status}: {exc.reason}", failures)
                version = None
            except Exception as exc:  # unreachable server, timeouts, a dropped stream
                if self._stop.is_set():
                    break
                failures = self._failed(scope, f"{type(exc).__name__}: {exc}", failures)
                version = None

    def _apply(self, scope: str, event: dict[str, Any]) -> str | None:
        kind, pod = event.get("type"), event.get("raw_object") or {}
        version = meta(pod).get("resourceVersion")
        if kind == "BOOKMARK":
            return version  # type: ignore[no-any-return]
        key = (namespace_of(pod), name_of(pod))
        with self._lock:
            if kind == "DELETED":
                self._pods[scope].pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                self._pods[scope][key] = pod
        return version  # type: ignore[no-any-return]

    def _watching(self, scope: str, failures: int) -> int:
        """The watch works: the cache is current again (if a failure had said otherwise)."""
        if failures:
            with self._lock:
                self._synced[scope] = True
        return 0

    def _failed(self, scope: str, why: str, failures: int) -> int:
        """Not synced until the next list succeeds; the runtime lists meanwhile."""
        with self._lock:
            self._synced[scope] = False
        delay = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
        log.warning("pod watch %s failed (%s); listing pods every pass until it is back "
                    "(retry in %.1fs)", scope or "(all namespaces)", why, delay)
        self._stop.wait(delay)
        return failures + 1


def _newer(a: Json, b: Json) -> bool:
    """Whether pod `a` is a later version than `b` (resourceVersions are etcd revisions in
    practice; when they are not numbers, the one given last wins)."""
    try:
        return int(meta(a).get("resourceVersion") or 0) >= int(meta(b).get("resourceVersion") or 0)
    except ValueError:
        return True

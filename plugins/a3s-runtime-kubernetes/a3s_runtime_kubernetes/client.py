"""Connecting the official (sync) client, and calling it from asyncio with clear errors."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Collection
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from a3s_core.errors import InvalidRequest, RuntimeUnavailable
from a3s_runtime_kubernetes.options import KubernetesOptions

RBAC_HINT = "grant the platform's service account the RBAC in contrib/kubernetes/rbac.yaml"


def build_api_client(opts: KubernetesOptions) -> k8s.ApiClient:
    """`host` as given (kubectl proxy, tests) > in-cluster service account > kubeconfig."""
    cfg = k8s.Configuration()
    try:
        if opts.host:
            cfg.host = opts.host.rstrip("/")
            cfg.verify_ssl = opts.verify_ssl
            if opts.token:
                cfg.api_key = {"authorization": opts.token}
                cfg.api_key_prefix = {"authorization": "Bearer"}
        elif opts.in_cluster or (
            opts.in_cluster is None and os.environ.get("KUBERNETES_SERVICE_HOST")
        ):
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            # persist_config=False: never rewrite the operator's kubeconfig on token refresh.
            k8s_config.load_kube_config(
                config_file=opts.kubeconfig,
                context=opts.context,
                client_configuration=cfg,
                persist_config=False,
            )
    except (ConfigException, OSError) as exc:
        where = opts.kubeconfig or "~/.kube/config (or $KUBECONFIG)"
        raise RuntimeUnavailable(
            f"kubernetes runtime: no usable cluster configuration ({exc}); tried "
            f"{'the in-cluster service account' if opts.in_cluster else where}. Set "
            "runtime_options.kubeconfig / context / in_cluster / host"
        ) from exc
    return k8s.ApiClient(cfg)


def api_message(exc: ApiException) -> str:
    """The API server's own sentence (Status.message) rather than the raw body."""
    try:
        body = json.loads(exc.body or "{}")
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except (ValueError, TypeError):
        pass
    return str(exc.reason or exc.body or exc)


def raw_json(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` returning the response's JSON as dicts instead of typed models: for big
    lists (every pod in the cluster), where building the models costs ~1 ms an object."""

    def fetch(*args: Any, **kwargs: Any) -> Any:
        response = fn(*args, _preload_content=False, **kwargs)
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    return fetch


async def call(
    what: str,
    fn: Callable[..., Any],
    *args: Any,
    passthrough: Collection[int] = (),
    timeout_s: float | None = None,
    **kwargs: Any,
) -> Any:
    """Run one client call in a worker thread. API errors whose status is in `passthrough`
    are re-raised as ApiException for the caller to handle (404 on delete, 409 on create);
    the rest become the platform's errors with the API server's message and `what`."""
    if timeout_s is not None:
        kwargs["_request_timeout"] = timeout_s
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ApiException as exc:
        if exc.status in passthrough:
            raise
        said = api_message(exc)
        msg = f"Kubernetes API refused to {what}: HTTP {exc.status}: {said}"
        # 403 is also "namespace is being terminated" or a quota; point at RBAC only for
        # an authorisation refusal ('User "…" cannot create resource "pods"').
        if exc.status == 401 or (exc.status == 403 and " cannot " in said):
            raise RuntimeUnavailable(f"{msg}; {RBAC_HINT}") from None
        if exc.status in (400, 422):
            raise InvalidRequest(msg, field=what) from None
        raise RuntimeUnavailable(msg) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise RuntimeUnavailable(
            f"Kubernetes API unreachable while trying to {what}: {exc}"
        ) from None

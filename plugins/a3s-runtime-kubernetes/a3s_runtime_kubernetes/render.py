"""ReplicaRequest → the Kubernetes objects that run it (typed client models, no I/O)."""

from __future__ import annotations

import math

from kubernetes import client as k8s

from a3s_core.types import ReplicaRequest
from a3s_runtime_kubernetes import naming as n
from a3s_runtime_kubernetes.options import KubernetesOptions

HF_TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # the second for older TGI images
PORT_NAME = "http"
DEFAULT_CACHE_PATH = "/root/.cache/huggingface"
# Where an engine's image keeps downloaded models, when that is not the Hugging Face cache
# under HF_HOME: the model cache volume is mounted there, so a restart does not download again.
ENGINE_CACHE: dict[str, tuple[str, dict[str, str]]] = {
    # TEI's image sets HUGGINGFACE_HUB_CACHE=/data (and declares it a volume)
    "tei": ("/data", {"HUGGINGFACE_HUB_CACHE": "/data"}),
    # Ollama keeps its blobs in $HOME/.ollama/models
    "ollama": ("/root/.ollama", {}),
}


def cache_mount(request: ReplicaRequest, opts: KubernetesOptions) -> tuple[str, dict[str, str]]:
    """Where the model cache volume goes and the env that points the engine at it. An
    operator's model_cache_mount_path wins; otherwise the engine's own place."""
    if opts.model_cache_mount_path == DEFAULT_CACHE_PATH and request.engine in ENGINE_CACHE:
        return ENGINE_CACHE[request.engine]
    return opts.model_cache_mount_path, {"HF_HOME": opts.model_cache_mount_path}


def pod_labels(request: ReplicaRequest, instance: str) -> dict[str, str]:
    """Caller labels first, ours last so they cannot be overridden (observe relies on them)."""
    for key, value in request.labels.items():
        n.check_label_key(key, "labels")
        n.check_label_value(value, f"labels[{key}]")
    return {
        **request.labels,
        **n.ownership(instance),
        n.DEPLOYMENT: n.check_label_value(request.deployment_id, "deployment_id"),
        n.REPLICA: n.check_label_value(request.replica_id, "replica_id"),
        n.NAME: n.check_label_value(request.deployment_name, "deployment_name"),
        n.ENGINE: n.check_label_value(request.engine, "engine"),
        "app.kubernetes.io/name": request.deployment_name,
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/managed-by": n.MANAGER,
    }


def _env(request: ReplicaRequest, opts: KubernetesOptions) -> list[k8s.V1EnvVar]:
    env = [k8s.V1EnvVar(name=key, value=value) for key, value in sorted(request.env.items())]
    _, cache_env = cache_mount(request, opts)
    env += [k8s.V1EnvVar(name=key, value=value) for key, value in sorted(cache_env.items())
            if key not in request.env]
    for name in HF_TOKEN_ENVS:
        if name in request.env:
            continue
        # optional: public models need no token, and a pod must not hang on a missing Secret.
        ref = k8s.V1SecretKeySelector(
            name=opts.hf_token_secret, key=opts.hf_token_secret_key, optional=True
        )
        env.append(k8s.V1EnvVar(name=name, value_from=k8s.V1EnvVarSource(secret_key_ref=ref)))
    return env


def _probes(request: ReplicaRequest, opts: KubernetesOptions) -> dict[str, k8s.V1Probe]:
    def get(path: str) -> k8s.V1HTTPGetAction:
        return k8s.V1HTTPGetAction(path=path, port=PORT_NAME, scheme="HTTP")

    period = 10
    return {
        # Loading weights takes minutes; the startup probe holds the other two back until
        # the engine answers, so liveness never kills a replica that is still loading.
        "startup_probe": k8s.V1Probe(
            http_get=get(request.health_path),
            period_seconds=period,
            timeout_seconds=5,
            failure_threshold=math.ceil(opts.startup_timeout_s / period),
        ),
        "readiness_probe": k8s.V1Probe(
            http_get=get(request.ready_path), period_seconds=5, timeout_seconds=5,
            failure_threshold=3,
        ),
        "liveness_probe": k8s.V1Probe(
            http_get=get(request.health_path), period_seconds=15, timeout_seconds=10,
            failure_threshold=4,
        ),
    }


def _resources(request: ReplicaRequest, opts: KubernetesOptions) -> k8s.V1ResourceRequirements:
    # The plan's CPU and memory as requests (not limits): without them the pod is
    # BestEffort, the first evicted under node pressure. The operator's values win.
    requests: dict[str, str] = {}
    if request.cpu_request:
        requests["cpu"] = f"{round(request.cpu_request * 1000)}m"
    if request.memory_request_bytes:
        requests["memory"] = f"{-(-request.memory_request_bytes // 2**20)}Mi"
    limits = dict(opts.resources.get("limits", {}))
    for key in ("cpu", "memory"):
        if key in limits and key in requests:  # a request above its limit is invalid
            del requests[key]  # the API server then defaults it to the limit
    requests.update(opts.resources.get("requests", {}))
    if request.placement.gpu is not None:
        # Extended resources are limits-only (requests default to them and may not differ).
        limits[n.GPU_RESOURCE] = str(request.tensor_parallel_size)
        requests.pop(n.GPU_RESOURCE, None)
    return k8s.V1ResourceRequirements(requests=requests or None, limits=limits or None)


def _volumes(
    request: ReplicaRequest, opts: KubernetesOptions
) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    shm = k8s.V1Volume(
        name="dshm", empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit=opts.shm_size)
    )
    if opts.model_cache_pvc:
        cache = k8s.V1Volume(
            name="model-cache",
            persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                claim_name=opts.model_cache_pvc
            ),
        )
    elif opts.model_cache_host_path:
        cache = k8s.V1Volume(
            name="model-cache",
            host_path=k8s.V1HostPathVolumeSource(
                path=opts.model_cache_host_path, type="DirectoryOrCreate"
            ),
        )
    else:
        cache = k8s.V1Volume(name="model-cache", empty_dir=k8s.V1EmptyDirVolumeSource())
    mounts = [
        k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
        k8s.V1VolumeMount(name="model-cache", mount_path=cache_mount(request, opts)[0]),
    ]
    return [shm, cache], mounts


def tolerations(opts: KubernetesOptions, gpu: bool = True) -> list[k8s.V1Toleration]:
    """What a replica pod tolerates (the inventory judges node taints with the same list)."""
    out = []
    if gpu:
        # GPU node pools are commonly tainted nvidia.com/gpu:NoSchedule (GKE, AKS, GPU operator).
        out.append(k8s.V1Toleration(key=n.GPU_RESOURCE, operator="Exists", effect="NoSchedule"))
    out += [k8s.V1Toleration(**_snake(t)) for t in opts.tolerations]
    return out


def _snake(obj: dict[str, object]) -> dict[str, object]:
    """Kubernetes JSON keys (tolerationSeconds) → client model keywords (toleration_seconds)."""
    return {"".join("_" + c.lower() if c.isupper() else c for c in k): v for k, v in obj.items()}


def _pinning(request: ReplicaRequest, opts: KubernetesOptions) -> dict[str, object]:
    node = request.placement.node
    if opts.pinning == "nodeName":
        return {"node_name": node}
    # matchFields on metadata.name is exact even where the hostname label differs from the
    # node name (EKS), and kube-scheduler still accounts resources and taints.
    term = k8s.V1NodeSelectorTerm(
        match_fields=[
            k8s.V1NodeSelectorRequirement(key="metadata.name", operator="In", values=[node])
        ]
    )
    affinity = k8s.V1Affinity(
        node_affinity=k8s.V1NodeAffinity(
            required_during_scheduling_ignored_during_execution=k8s.V1NodeSelector(
                node_selector_terms=[term]
            )
        )
    )
    return {"affinity": affinity}


def render_pod(request: ReplicaRequest, namespace: str, opts: KubernetesOptions) -> k8s.V1Pod:
    """One pod for one replica, pinned to the scheduled node."""
    volumes, mounts = _volumes(request, opts)
    container = k8s.V1Container(
        name=n.CONTAINER,
        image=request.image,
        # The engine renders the whole argv (executable included), so it replaces the
        # image's ENTRYPOINT; what runs is exactly what the local runtime would run. An
        # engine whose image's ENTRYPOINT must run (TEI's picks its binary by GPU) renders
        # only the arguments, which become the container's args.
        command=None if request.keep_entrypoint else list(request.command),
        args=list(request.command) if request.keep_entrypoint else None,
        image_pull_policy=opts.image_pull_policy,
        ports=[k8s.V1ContainerPort(name=PORT_NAME, container_port=request.port, protocol="TCP")],
        env=_env(request, opts),
        resources=_resources(request, opts),
        volume_mounts=mounts,
        # A crash that wrote no termination message still says why: the log's tail.
        termination_message_policy="FallbackToLogsOnError",
        **_probes(request, opts),
    )
    annotations = {
        n.GPU_INDICES: n.format_indices(request.placement.gpu_indices),
        n.NODE: request.placement.node,
        n.PORT: str(request.port),
    }
    if request.placement.gpu:
        annotations[n.GPU_PRODUCT] = request.placement.gpu
    spec = k8s.V1PodSpec(
        containers=[container],
        restart_policy="Always",
        volumes=volumes,
        tolerations=tolerations(opts, request.placement.gpu is not None) or None,
        node_selector=dict(opts.extra_node_selector) or None,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=s) for s in opts.image_pull_secrets]
        or None,
        runtime_class_name=opts.runtime_class_name,
        priority_class_name=opts.priority_class_name,
        service_account_name=opts.service_account_name,
        automount_service_account_token=False,  # the engine never talks to the API server
        # Service links would inject e.g. VLLM_PORT=tcp://… for a Service named "vllm",
        # which vLLM reads as its own setting and fails on.
        enable_service_links=False,
        termination_grace_period_seconds=opts.termination_grace_period_s,
        **_pinning(request, opts),
    )
    return k8s.V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=k8s.V1ObjectMeta(
            name=n.pod_name(request.deployment_name, request.replica_id),
            namespace=namespace,
            labels=pod_labels(request, opts.instance),
            annotations=annotations,
        ),
        spec=spec,
    )


def render_service(request: ReplicaRequest, namespace: str, instance: str) -> k8s.V1Service:
    """One ClusterIP Service per deployment, for in-cluster callers; the gateway itself
    balances across pod IPs."""
    return k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=k8s.V1ObjectMeta(
            name=n.service_name(request.deployment_name),
            namespace=namespace,
            labels={
                **n.ownership(instance),
                n.DEPLOYMENT: request.deployment_id,
                n.NAME: request.deployment_name,
                "app.kubernetes.io/managed-by": n.MANAGER,
            },
        ),
        spec=k8s.V1ServiceSpec(
            type="ClusterIP",
            selector={**n.ownership(instance), n.DEPLOYMENT: request.deployment_id},
            ports=[
                k8s.V1ServicePort(
                    name=PORT_NAME, port=request.port, target_port=PORT_NAME, protocol="TCP"
                )
            ],
        ),
    )


def render_namespace(name: str) -> k8s.V1Namespace:
    return k8s.V1Namespace(
        api_version="v1",
        kind="Namespace",
        metadata=k8s.V1ObjectMeta(name=name, labels={n.MANAGED_BY: n.MANAGER}),
    )


def render_hf_secret(namespace: str, opts: KubernetesOptions) -> k8s.V1Secret:
    return k8s.V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=k8s.V1ObjectMeta(
            name=opts.hf_token_secret, namespace=namespace, labels={n.MANAGED_BY: n.MANAGER}
        ),
        string_data={opts.hf_token_secret_key: opts.hf_token or ""},
    )

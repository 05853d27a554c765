"""The runtime's options (`settings.runtime_options`), validated with clear errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from a3s_core.errors import InvalidRequest
from a3s_runtime_kubernetes.naming import check_label_value


class KubernetesOptions(BaseModel):
    """Everything the operator can say about the cluster. All optional: with none given
    the runtime uses the in-cluster service account, or else ~/.kube/config."""

    model_config = ConfigDict(extra="forbid")

    data_dir: str | None = Field(None, description="set by the platform; not used here")

    # -- connection ------------------------------------------------------------------
    kubeconfig: str | None = Field(None, description="path to a kubeconfig file")
    context: str | None = Field(None, description="kubeconfig context to use")
    in_cluster: bool | None = Field(
        None, description="True: service account; False: kubeconfig; None: in-cluster if "
        "KUBERNETES_SERVICE_HOST is set"
    )
    host: str | None = Field(
        None, description="API server URL used as it is (e.g. `kubectl proxy` at "
        "http://127.0.0.1:8001); skips kubeconfig and in-cluster config"
    )
    token: str | None = Field(None, description="bearer token, with `host`")
    verify_ssl: bool = True
    request_timeout_s: float = Field(30.0, gt=0)
    watch_pods: bool = Field(
        True, description="keep the replicas' pods in a watch-fed cache instead of listing "
        "them on every reconcile pass (needs `watch` on pods; without it, or while the "
        "watch is down, the runtime lists)"
    )
    watch_timeout_s: int = Field(
        300, gt=0, description="server-side length of one watch; it resumes where it ended"
    )

    node_lost_grace_s: float = Field(
        60.0, ge=0, description="a replica whose node's Ready condition is not True is out "
        "of traffic at once and, once the node has been so this long, lost: deleted and "
        "replaced on another node (Kubernetes itself evicts only after 300 s, if at all)"
    )
    node_check_interval_s: float = Field(
        5.0, ge=0, description="how often the nodes' Ready conditions are re-read (0: on "
        "every reconcile pass)"
    )
    service_gc_interval_s: float = Field(
        30.0, ge=0, description="how often Services of deployments without pods are looked "
        "for and deleted (left by a deletion interrupted between the pod and its Service)"
    )

    instance: str = Field(
        "default", description="this platform installation's name; several installations "
        "may share a cluster, each sees only the pods labelled with its own"
    )

    # -- where replicas go ---------------------------------------------------------------
    namespace_map: dict[str, str] = Field(
        default_factory=dict, description="A3S namespace → Kubernetes namespace; default same"
    )
    namespace_prefix: str = Field("", description="prepended to unmapped namespaces")
    create_namespaces: bool = Field(True, description="create a missing namespace")
    watch_namespaces: list[str] | None = Field(
        None, description="Kubernetes namespaces to look for replicas in; None = all "
        "(needs the cluster-wide pod read of contrib/kubernetes/rbac.yaml)"
    )
    node_selector: str | None = Field(
        None, description="label selector picking the nodes offered to the scheduler"
    )
    pinning: Literal["affinity", "nodeName"] = Field(
        "affinity", description="affinity: required node affinity on metadata.name, so "
        "kube-scheduler still checks resources and taints; nodeName: bypass kube-scheduler"
    )

    # -- pod contents ----------------------------------------------------------------------
    hf_token_secret: str = Field("a3s-hf-token", description="Secret holding the HF token")
    hf_token_secret_key: str = Field("HF_TOKEN", description="key in that Secret")
    hf_token: str | None = Field(
        None, description="if given, the runtime writes it into `hf_token_secret` in every "
        "namespace it deploys to; otherwise the Secret is the operator's (and optional)"
    )
    model_cache_pvc: str | None = Field(None, description="PVC (per namespace) for the HF cache")
    model_cache_host_path: str | None = Field(None, description="node directory for the HF cache")
    model_cache_mount_path: str = "/root/.cache/huggingface"
    shm_size: str | None = Field("16Gi", description="sizeLimit of the /dev/shm emptyDir")
    image_pull_secrets: list[str] = Field(default_factory=list)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="extra tolerations, Kubernetes JSON shape"
    )
    extra_node_selector: dict[str, str] = Field(default_factory=dict)
    runtime_class_name: str | None = Field(None, description="e.g. 'nvidia'")
    priority_class_name: str | None = None
    service_account_name: str | None = Field(None, description="for the engine pods")
    resources: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="extra requests/limits, e.g. {'requests': {'cpu': '4'}}"
    )
    termination_grace_period_s: int = Field(60, ge=0)
    startup_timeout_s: int = Field(
        1800, ge=60, description="how long the engine may take to load the model"
    )

    # -- observability ---------------------------------------------------------------------
    dcgm_exporter_urls: list[str] = Field(
        default_factory=list, description="DCGM exporter /metrics URLs for GPU utilisation"
    )
    dcgm_exporter_selector: str | None = Field(
        None, description="find dcgm-exporter pods by this label selector (e.g. "
        "'app=nvidia-dcgm-exporter') and scrape each at its pod IP; its node is the pod's node"
    )
    dcgm_exporter_namespace: str | None = Field(None, description="where to look; None = all")
    dcgm_exporter_port: int = Field(9400, gt=0, lt=65536)
    dcgm_timeout_s: float = Field(2.0, gt=0)
    gpu_catalog: str | None = Field(None, description="GPU catalog TOML; default the built-in")

    @field_validator("dcgm_exporter_urls", "image_pull_secrets", "watch_namespaces", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("instance")
    @classmethod
    def _label_value(cls, value: str) -> str:
        check_label_value(value, "instance")
        return value

    @field_validator("resources")
    @classmethod
    def _resource_sections(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = set(value) - {"requests", "limits"}
        if unknown:
            raise ValueError(f"resources may hold 'requests' and 'limits', not {sorted(unknown)}")
        return value

    @model_validator(mode="after")
    def _one_cache(self) -> KubernetesOptions:
        if self.model_cache_pvc and self.model_cache_host_path:
            raise ValueError("give model_cache_pvc or model_cache_host_path, not both")
        return self

    def k8s_namespace(self, namespace: str) -> str:
        """The Kubernetes namespace a deployment of A3S namespace `namespace` lives in."""
        return self.namespace_map.get(namespace) or f"{self.namespace_prefix}{namespace}"


def parse_options(raw: dict[str, object]) -> KubernetesOptions:
    """Options → model; a bad one is an InvalidRequest naming `runtime_options.<field>`."""
    try:
        return KubernetesOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        field = f"runtime_options.{where}" if where else "runtime_options"
        raise InvalidRequest(
            f"kubernetes runtime option {field}: {err['msg']} (got {err.get('input')!r})",
            field=field,
            value=err.get("input"),
        ) from None

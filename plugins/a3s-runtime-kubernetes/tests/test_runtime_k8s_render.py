"""Rendered objects: valid against the official schema, and saying what the design says."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from a3s_k8s_test_helpers import K8S_VERSION, make_request, validate
from a3s_runtime_kubernetes.options import KubernetesOptions, parse_options
from a3s_runtime_kubernetes.render import (
    render_hf_secret,
    render_namespace,
    render_pod,
    render_service,
)

from a3s_core.errors import InvalidRequest
from a3s_core.types import Placement

CONTRIB = Path(__file__).resolve().parents[3] / "contrib" / "kubernetes"


def opts(**kw: object) -> KubernetesOptions:
    return parse_options(dict(kw))


def engine_container(pod: dict) -> dict:
    (container,) = pod["spec"]["containers"]
    assert container["name"] == "engine"
    return container


def test_pod_is_valid_and_pinned_with_gpus_probes_shm_and_labels() -> None:
    req = make_request()
    pod = validate(render_pod(req, "team-ai", opts()))
    spec = pod["spec"]
    c = engine_container(pod)

    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-a100-0"]}]}
    ]
    assert "nodeName" not in spec
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    # The engine's argv replaces the image entrypoint, unchanged.
    assert c["command"] == req.command and "args" not in c
    assert c["image"] == "vllm/vllm-openai:v0.6.3"
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]

    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http", "scheme": "HTTP"}
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 1800
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"

    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/dev/shm"] == "dshm"
    assert mounts["/root/.cache/huggingface"] == "model-cache"

    labels = pod["metadata"]["labels"]
    assert labels["a3s.io/managed-by"] == "a3s"
    assert labels["a3s.io/deployment"] == "dep-5e6f7a8b9c0d"
    assert labels["a3s.io/replica"] == "qwen-72b-0a1b2c3d4e5f"
    assert labels["a3s.io/name"] == "qwen-72b"
    assert labels["a3s.io/namespace"] == "team-ai"  # the request's own labels are kept
    assert pod["metadata"]["annotations"]["a3s.io/gpu-indices"] == "2,3"
    assert pod["metadata"]["name"] == "qwen-72b-0a1b2c3d4e5f"
    assert pod["metadata"]["namespace"] == "team-ai"
    assert spec["enableServiceLinks"] is False
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Always"


def test_hf_token_comes_from_an_optional_secret_and_cache_env_is_set() -> None:
    pod = validate(render_pod(make_request(), "team-ai", opts(hf_token_secret="hf")))
    env = {e["name"]: e for e in engine_container(pod)["env"]}
    ref = env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "hf", "key": "HF_TOKEN", "optional": True}
    assert env["HF_HOME"]["value"] == "/root/.cache/huggingface"
    assert env["VLLM_NO_USAGE_STATS"]["value"] == "1"


def test_model_cache_pvc_or_host_path() -> None:
    pvc = validate(render_pod(make_request(), "ns", opts(model_cache_pvc="hf-cache")))
    cache = next(v for v in pvc["spec"]["volumes"] if v["name"] == "model-cache")
    assert cache == {"name": "model-cache", "persistentVolumeClaim": {"claimName": "hf-cache"}}
    host = validate(render_pod(make_request(), "ns", opts(model_cache_host_path="/data/hf")))
    cache = next(v for v in host["spec"]["volumes"] if v["name"] == "model-cache")
    assert cache["hostPath"] == {"path": "/data/hf", "type": "DirectoryOrCreate"}
    with pytest.raises(InvalidRequest, match="not both"):
        parse_options({"model_cache_pvc": "a", "model_cache_host_path": "/b"})


def test_cpu_placement_asks_for_no_gpu() -> None:
    req = make_request(placement=Placement(node="cpu-0", gpu=None), tensor_parallel_size=1)
    pod = validate(render_pod(req, "ns", opts()))
    assert "limits" not in engine_container(pod).get("resources", {})
    assert "tolerations" not in pod["spec"]
    assert pod["metadata"]["annotations"]["a3s.io/gpu-indices"] == ""


def test_operator_options_reach_the_pod() -> None:
    o = opts(
        pinning="nodeName",
        image_pull_secrets="regcred",
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "llm",
                      "effect": "NoSchedule", "tolerationSeconds": None}],
        runtime_class_name="nvidia",
        priority_class_name="inference",
        resources={"requests": {"cpu": "8", "memory": "64Gi"}},
        extra_node_selector={"pool": "llm"},
        image_pull_policy="IfNotPresent",
    )
    pod = validate(render_pod(make_request(), "ns", o))
    spec = pod["spec"]
    assert spec["nodeName"] == "gpu-a100-0" and "affinity" not in spec
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"} in (
        spec["tolerations"]
    )
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["priorityClassName"] == "inference"
    assert spec["nodeSelector"] == {"pool": "llm"}
    res = engine_container(pod)["resources"]
    assert res == {"requests": {"cpu": "8", "memory": "64Gi"}, "limits": {"nvidia.com/gpu": "2"}}


def test_service_selects_the_deployment_by_label() -> None:
    svc = validate(render_service(make_request(), "team-ai", "default"))
    assert svc["metadata"]["name"] == "a3s-qwen-72b"
    assert svc["spec"]["selector"] == {
        "a3s.io/managed-by": "a3s", "a3s.io/instance": "default",
        "a3s.io/deployment": "dep-5e6f7a8b9c0d",
    }
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]


def test_names_stay_valid_dns_labels() -> None:
    long_name = "m" * 63
    req = make_request(deployment_name=long_name, replica_id="r-0123456789ab",
                       labels={})
    pod = validate(render_pod(req, "ns", opts()))
    svc = validate(render_service(req, "ns", "default"))
    assert len(pod["metadata"]["name"]) <= 63
    assert len(svc["metadata"]["name"]) <= 63
    # digits first is fine for a deployment name, not for a Service (DNS-1035)
    svc = validate(render_service(make_request(deployment_name="7b-chat"), "ns", "default"))
    assert svc["metadata"]["name"][0].isalpha()


def test_namespace_and_secret_are_valid() -> None:
    validate(render_namespace("team-ai"))
    secret = validate(render_hf_secret("team-ai", opts(hf_token="hf_abc")))
    assert secret["stringData"] == {"HF_TOKEN": "hf_abc"}


def test_bad_label_values_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as err:
        render_pod(make_request(labels={"team": "a b"}), "ns", opts())
    assert err.value.field == "labels[team]"
    with pytest.raises(InvalidRequest, match="label key"):
        render_pod(make_request(labels={"-team": "ai"}), "ns", opts())
    with pytest.raises(InvalidRequest, match="label key"):
        render_pod(make_request(labels={"Not_DNS/team": "ai"}), "ns", opts())
    render_pod(make_request(labels={"example.com/team": "ai", "tier": "A_1.b"}), "ns", opts())
    with pytest.raises(InvalidRequest, match="replica_id"):
        render_pod(make_request(replica_id="x" * 64), "ns", opts())


def test_the_options_the_platform_adds_are_accepted() -> None:
    # a3s_core.platform passes data_dir to every runtime along with runtime_options
    assert parse_options({"data_dir": "/var/lib/a3s", "in_cluster": True}).in_cluster


def test_bad_options_name_the_option() -> None:
    with pytest.raises(InvalidRequest) as err:
        parse_options({"pinning": "hostname"})
    assert err.value.field == "runtime_options.pinning"
    with pytest.raises(InvalidRequest) as err:
        parse_options({"kubeconfg": "/x"})
    assert err.value.field == "runtime_options.kubeconfg"


def test_schema_validation_is_strict_enough_to_catch_a_typo() -> None:
    pod = validate(render_pod(make_request(), "ns", opts()))
    pod["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_contrib_manifests_are_valid() -> None:
    files = sorted(CONTRIB.glob("*.yaml"))
    assert files, f"no manifests in {CONTRIB}"
    kinds = set()
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
                kinds.add(doc["kind"])
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
            "Deployment", "Service", "HorizontalPodAutoscaler"} <= kinds


def test_plan_cpu_and_memory_are_requested_so_the_pod_is_not_best_effort() -> None:
    req = make_request(cpu_request=4.0, memory_request_bytes=150 * 2**30 + 1)
    c = engine_container(validate(render_pod(req, "team-ai", opts())))
    assert c["resources"]["requests"] == {"cpu": "4000m", "memory": "153601Mi"}
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}  # no CPU/memory limit

    # the operator's requests win; a limit below the plan's request replaces it
    custom = opts(resources={"requests": {"cpu": "6"}, "limits": {"memory": "64Gi"}})
    c = engine_container(validate(render_pod(req, "team-ai", custom)))
    assert c["resources"]["requests"] == {"cpu": "6"}
    assert c["resources"]["limits"] == {"memory": "64Gi", "nvidia.com/gpu": "2"}


def test_a_crash_says_why_from_the_log_tail() -> None:
    c = engine_container(validate(render_pod(make_request(), "team-ai", opts())))
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


@pytest.mark.parametrize(("engine", "path", "env"), [
    ("vllm", "/root/.cache/huggingface", {"HF_HOME": "/root/.cache/huggingface"}),
    ("tei", "/data", {"HUGGINGFACE_HUB_CACHE": "/data"}),
    ("ollama", "/root/.ollama", {}),
])
def test_model_cache_is_mounted_where_the_engine_reads_it(
    engine: str, path: str, env: dict[str, str]
) -> None:
    pod = validate(render_pod(make_request(engine=engine), "team-ai", opts()))
    c = engine_container(pod)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["model-cache"] == path
    values = {e["name"]: e.get("value") for e in c["env"]}
    assert {k: values[k] for k in env} == env
    assert ("HF_HOME" in values) == ("HF_HOME" in env)


def test_an_operators_cache_path_is_used_for_every_engine() -> None:
    pod = validate(render_pod(make_request(engine="tei"), "team-ai",
                              opts(model_cache_mount_path="/models")))
    c = engine_container(pod)
    assert {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["model-cache"] == "/models"
    assert {"name": "HF_HOME", "value": "/models"} in c["env"]


def test_gateway_manifest_is_data_plane_only_and_scales_on_cpu() -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((CONTRIB / "gateway.yaml").read_text())}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--role") + 1] == "gateway"
    workers = int(args[args.index("--workers") + 1])
    assert workers == int(pod["containers"][0]["resources"]["limits"]["cpu"])
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == docs["Deployment"]["metadata"]["name"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    control = next(d for d in yaml.safe_load_all((CONTRIB / "platform.yaml").read_text())
                   if d["kind"] == "Deployment")
    cargs = control["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cargs[cargs.index("--role") + 1] == "control"

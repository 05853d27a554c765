"""Hostile bodies for `POST /v1/deployments` (also `?dryRun=true` and `:plan`): "bad input
gets a clear error that names the field and the value, and changes nothing". Every case must
be a 4xx (never a 500) in the API's error shape, name the field by its JSON path
(`models[1].name`), quote the value (cut if long, never a credential), and leave the store as
it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from api_fuzz_kit import (
    ANY,
    CEILING,
    ENDPOINTS,
    LONG,
    OK,
    SECRET,
    _counts,
    assert_refused,
    model,
    one,
    platform_client,
)
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with platform_client(tmp_path_factory) as c:
        yield c


# --------------------------------------------------------------- POST /v1/deployments

# (what, body, field, value): the value the error must quote, or ANY.
TYPES: list[tuple[str, Any, str, Any]] = [
    ("body null", None, "body", None),
    ("body list", [OK], "body", ANY),
    ("body string", "models", "body", "models"),
    ("models missing", {}, "models", ANY),
    ("models null", {"models": None}, "models", None),
    ("models string", {"models": "qwen"}, "models", "qwen"),
    ("models object", {"models": OK}, "models", ANY),
    ("models number", {"models": 1}, "models", 1),
    ("models true", {"models": True}, "models", True),
    ("models empty", {"models": []}, "models", ANY),
    ("model entry null", {"models": [None]}, "models[0]", None),
    ("model entry string", {"models": ["qwen"]}, "models[0]", "qwen"),
    ("model entry list", {"models": [[OK]]}, "models[0]", ANY),
    ("second entry bad", {"models": [OK, 7]}, "models[1]", 7),
    ("name missing", one(name=...), "models[0].name", ANY),
    ("name null", one(name=None), "models[0].name", None),
    ("name number", one(name=5), "models[0].name", 5),
    ("name bool", one(name=True), "models[0].name", True),
    ("name list", one(name=["a"]), "models[0].name", ANY),
    ("name object", one(name={"a": 1}), "models[0].name", ANY),
    ("model missing", one(model=...), "models[0].model", ANY),
    ("model null", one(model=None), "models[0].model", None),
    ("model number", one(model=72), "models[0].model", 72),
    ("model bool", one(model=False), "models[0].model", False),
    ("model list", one(model=["Qwen/Qwen2.5-7B"]), "models[0].model", ANY),
    ("engine null", one(engine=None), "models[0].engine", None),
    ("engine number", one(engine=1), "models[0].engine", 1),
    ("engine bool", one(engine=True), "models[0].engine", True),
    ("engine object", one(engine={"name": "vllm"}), "models[0].engine", ANY),
    ("quantization null", one(quantization=None), "models[0].quantization", None),
    ("quantization number", one(quantization=4), "models[0].quantization", 4),
    ("quantization bool", one(quantization=True), "models[0].quantization", True),
    ("max_model_len string", one(max_model_len="32k"), "models[0].max_model_len", "32k"),
    ("max_model_len numeric string", one(max_model_len="4096"), "models[0].max_model_len", "4096"),
    ("max_model_len true", one(max_model_len=True), "models[0].max_model_len", True),
    ("max_model_len false", one(max_model_len=False), "models[0].max_model_len", False),
    ("max_model_len float", one(max_model_len=1.5), "models[0].max_model_len", 1.5),
    ("max_model_len whole float", one(max_model_len=4096.0), "models[0].max_model_len", 4096.0),
    ("max_model_len list", one(max_model_len=[4096]), "models[0].max_model_len", ANY),
    ("replicas string", one(replicas="1"), "models[0].replicas", "1"),
    ("replicas true", one(replicas=True), "models[0].replicas", True),
    ("replicas false", one(replicas=False), "models[0].replicas", False),
    ("replicas whole float", one(replicas=1.0), "models[0].replicas", 1.0),
    ("replicas float", one(replicas=1.5), "models[0].replicas", 1.5),
    ("replicas null", one(replicas=None), "models[0].replicas", None),
    ("replicas object", one(replicas={"n": 1}), "models[0].replicas", ANY),
    ("extra_args list", one(extra_args=[1]), "models[0].extra_args", ANY),
    ("extra_args string", one(extra_args="--enforce-eager"), "models[0].extra_args", ANY),
    ("extra_args null", one(extra_args=None), "models[0].extra_args", None),
    ("extra_args number", one(extra_args=1), "models[0].extra_args", 1),
    # extra_args keys that override sizing are typed: refused now, not failed later.
    (
        "extra_args.max_model_len string",
        one(extra_args={"max_model_len": "32k"}),
        "models[0].extra_args.max_model_len",
        "32k",
    ),
    (
        "extra_args --max-model-len negative",
        one(extra_args={"--max-model-len": -1}),
        "models[0].extra_args.--max-model-len",
        -1,
    ),
    (
        "extra_args.tensor_parallel_size bool",
        one(extra_args={"tensor_parallel_size": True}),
        "models[0].extra_args.tensor_parallel_size",
        True,
    ),
    ("extra_args.tp float", one(extra_args={"tp": 2.5}), "models[0].extra_args.tp", 2.5),
    (
        "extra_args.gpu_memory_utilization string",
        one(extra_args={"gpu_memory_utilization": "0.9"}),
        "models[0].extra_args.gpu_memory_utilization",
        "0.9",
    ),
    (
        "extra_args.gpu_memory_utilization above 1",
        one(extra_args={"gpu_memory_utilization": 2}),
        "models[0].extra_args.gpu_memory_utilization",
        2,
    ),
    (
        "extra_args.enforce_eager string",
        one(extra_args={"enforce_eager": "yes"}),
        "models[0].extra_args.enforce_eager",
        "yes",
    ),
    ("extra_args.dtype unknown", one(extra_args={"dtype": "int3"}), "models[0].extra_args.dtype",
     "int3"),
    (
        "second model's extra_args",
        {"models": [OK, model(name="b", extra_args={"max_num_seqs": 0})]},
        "models[1].extra_args.max_num_seqs",
        0,
    ),
    ("autoscaling string", one(autoscaling="on"), "models[0].autoscaling", "on"),
    ("autoscaling list", one(autoscaling=[]), "models[0].autoscaling", ANY),
    ("autoscaling number", one(autoscaling=1), "models[0].autoscaling", 1),
    (
        "autoscaling.enabled string",
        one(autoscaling={"enabled": "yes"}),
        "models[0].autoscaling.enabled",
        "yes",
    ),
    (
        "autoscaling.enabled number",
        one(autoscaling={"enabled": 1}),
        "models[0].autoscaling.enabled",
        1,
    ),
    (
        "autoscaling.minReplicas bool",
        one(autoscaling={"minReplicas": True}),
        "models[0].autoscaling.minReplicas",
        True,
    ),
    (
        "autoscaling.minReplicas float",
        one(autoscaling={"minReplicas": 1.0}),
        "models[0].autoscaling.minReplicas",
        1.0,
    ),
    (
        "autoscaling.maxReplicas string",
        one(autoscaling={"maxReplicas": "4"}),
        "models[0].autoscaling.maxReplicas",
        "4",
    ),
    (
        "autoscaling.gpu_util_up string",
        one(autoscaling={"gpu_util_up": "80"}),
        "models[0].autoscaling.gpu_util_up",
        "80",
    ),
    (
        "autoscaling.gpu_util_up bool",
        one(autoscaling={"gpu_util_up": True}),
        "models[0].autoscaling.gpu_util_up",
        True,
    ),
    (
        "autoscaling.p99_up_s null",
        one(autoscaling={"p99_up_s": None}),
        "models[0].autoscaling.p99_up_s",
        None,
    ),
    ("autoscaling unknown field", one(autoscaling={"foo": 1}), "models[0].autoscaling.foo", 1),
    ("scheduler number", one(scheduler=1), "models[0].scheduler", 1),
    ("balancer bool", one(balancer=False), "models[0].balancer", False),
    ("namespace number", {"models": [OK], "namespace": 1}, "namespace", 1),
    ("namespace bool", {"models": [OK], "namespace": True}, "namespace", True),
    ("namespace list", {"models": [OK], "namespace": ["a"]}, "namespace", ANY),
    ("metadata string", {"models": [OK], "metadata": "x"}, "metadata", "x"),
    ("metadata list", {"models": [OK], "metadata": []}, "metadata", ANY),
    ("metadata null", {"models": [OK], "metadata": None}, "metadata", None),
]

RANGES: list[tuple[str, Any, str, Any]] = [
    ("max_model_len zero", one(max_model_len=0), "models[0].max_model_len", 0),
    ("max_model_len negative", one(max_model_len=-4096), "models[0].max_model_len", -4096),
    ("max_model_len 2**31", one(max_model_len=2**31), "models[0].max_model_len", 2**31),
    ("max_model_len huge", one(max_model_len=10**30), "models[0].max_model_len", ANY),
    ("max_model_len 1e308", one(max_model_len=1e308), "models[0].max_model_len", 1e308),
    ("replicas zero", one(replicas=0), "models[0].replicas", 0),
    ("replicas negative", one(replicas=-1), "models[0].replicas", -1),
    ("replicas over ceiling", one(replicas=CEILING + 1), "models[0].replicas", CEILING + 1),
    ("replicas huge", one(replicas=10**30), "models[0].replicas", ANY),
    ("replicas 1e308", one(replicas=1e308), "models[0].replicas", 1e308),
    (
        "autoscaling.maxReplicas over ceiling",
        one(autoscaling={"maxReplicas": 999}),
        "models[0].autoscaling.maxReplicas",
        999,
    ),
    (
        "autoscaling.minReplicas zero",
        one(autoscaling={"minReplicas": 0}),
        "models[0].autoscaling.minReplicas",
        0,
    ),
    (
        "autoscaling min above max",
        one(autoscaling={"minReplicas": 5, "maxReplicas": 2}),
        "models[0].autoscaling",
        ANY,
    ),
    (
        "autoscaling.gpu_util_up above 100",
        one(autoscaling={"gpu_util_up": 101}),
        "models[0].autoscaling.gpu_util_up",
        101,
    ),
    (
        "autoscaling.p99_up_s zero",
        one(autoscaling={"p99_up_s": 0}),
        "models[0].autoscaling.p99_up_s",
        0,
    ),
    (
        "autoscaling.up_cooldown_s negative",
        one(autoscaling={"up_cooldown_s": -1}),
        "models[0].autoscaling.up_cooldown_s",
        -1,
    ),
    (
        "autoscaling.max_step zero",
        one(autoscaling={"max_step": 0}),
        "models[0].autoscaling.max_step",
        0,
    ),
]

BAD_LABELS = [
    ("empty", ""),
    ("space", " "),
    ("tab", "\t"),
    ("upper-case", "Qwen-72b"),
    ("underscore", "qwen_72b"),
    ("dot", "qwen.72b"),
    ("leading dash", "-qwen"),
    ("trailing dash", "qwen-"),
    ("trailing newline", "qwen\n"),
    ("leading space", " qwen"),
    ("64 characters", "a" * 64),
    ("NUL", "qw\x00en"),
    ("escape sequence", "qw\x1b[31men"),
    ("zero-width space", "qw\u200ben"),
    ("Cyrillic e", "qw\u0435n"),
    ("full-width q", "\uff51wen"),
    ("accented", "qwén"),
]
STRINGS: list[tuple[str, Any, str, Any]] = [
    *[(f"name {w}", one(name=v), "models[0].name", v) for w, v in BAD_LABELS],
    ("name 10k", one(name=LONG), "models[0].name", ANY),
    *[
        (f"namespace {w}", {"models": [OK], "namespace": v}, "namespace", v)
        for w, v in BAD_LABELS
    ],
    ("namespace 10k", {"models": [OK], "namespace": LONG}, "namespace", ANY),
    ("model empty", one(model=""), "models[0].model", ""),
    ("model blank", one(model="   "), "models[0].model", "   "),
    ("model 10k", one(model=LONG), "models[0].model", ANY),
    ("model NUL", one(model="Qwen/Qwen2.5\x00-7B"), "models[0].model", "Qwen/Qwen2.5\x00-7B"),
    ("model newline inside", one(model="Qwen/\nx"), "models[0].model", "Qwen/\nx"),
    ("model escape", one(model="Qwen/\x1b[2Jx"), "models[0].model", "Qwen/\x1b[2Jx"),
    ("metadata NUL", {"models": [OK], "metadata": {"userId": "u\x00"}}, "metadata.userId", "u\x00"),
    (
        "extra_args nested NUL",
        one(extra_args={"env": {"A": ["x", "\x00"]}}),
        "models[0].extra_args.env.A[1]",
        "\x00",
    ),
    (
        "extra_args nested too deep",
        one(extra_args={"a": json.loads("[" * 40 + "]" * 40)}),
        "models[0].extra_args.a" + "[0]" * 31,
        ANY,
    ),
]

# An unknown engine / quantization / scheduler / balancer lists what is accepted.
UNKNOWN_NAMES: list[tuple[str, Any, str, Any, str]] = [
    ("engine unknown", one(engine="vllm2"), "models[0].engine", "vllm2", "vllm"),
    ("engine upper-case", one(engine="VLLM"), "models[0].engine", "VLLM", "tgi"),
    ("engine empty", one(engine=""), "models[0].engine", "", "vllm"),
    ("engine padded", one(engine=" vllm"), "models[0].engine", " vllm", "sglang"),
    ("engine 10k", one(engine=LONG), "models[0].engine", ANY, "vllm"),
    ("quantization unknown", one(quantization="int3"), "models[0].quantization", "int3", "gptq"),
    ("quantization upper", one(quantization="AWQ"), "models[0].quantization", "AWQ", "'awq'"),
    ("quantization empty", one(quantization=""), "models[0].quantization", "", "fp8"),
    ("scheduler unknown", one(scheduler="fastest"), "models[0].scheduler", "fastest", "binpack"),
    ("scheduler empty", one(scheduler=""), "models[0].scheduler", "", "spread"),
    ("balancer unknown", one(balancer="random"), "models[0].balancer", "random", "least-queue"),
]

# Strict, as Kubernetes' field validation: a misspelt or invented field is refused, not
# silently ignored (the seed's §2.2 lists every field; extensions live in extra_args/metadata).
UNKNOWN_FIELDS: list[tuple[str, Any, str, Any]] = [
    ("top-level foo", {"models": [OK], "foo": 1}, "foo", 1),
    ("top-level apiVersion", {"models": [OK], "apiVersion": "v1"}, "apiVersion", "v1"),
    ("top-level Models", {"Models": [OK]}, "Models", ANY),
    ("top-level model", {"models": [OK], "model": "x"}, "model", "x"),
    ("per-model foo", one(foo=1), "models[0].foo", 1),
    ("per-model camelCase", one(maxModelLen=4096), "models[0].maxModelLen", 4096),
    ("per-model Name", one(Name="x"), "models[0].Name", "x"),
    ("per-model gpu", one(gpu="H100"), "models[0].gpu", "H100"),
    ("per-model resources", one(resources={"gpus": 2}), "models[0].resources", ANY),
    ("second model unknown", {"models": [OK, model(name="b", gpus=2)]}, "models[1].gpus", 2),
]

SECRETS: list[tuple[str, Any, str]] = [
    ("top-level apiKey", {"models": [OK], "apiKey": SECRET}, "apiKey"),
    ("top-level token", {"models": [OK], "token": SECRET}, "token"),
    ("per-model api_key", one(api_key=SECRET), "models[0].api_key"),
    ("per-model hf_token", one(hf_token=SECRET), "models[0].hf_token"),
    (
        "autoscaling password",
        one(autoscaling={"password": SECRET}),
        "models[0].autoscaling.password",
    ),
    ("secret wrong type", {"models": [OK], "secret": {"value": SECRET}}, "secret"),
    # The duplicate-name error quotes the models list: credentials inside are redacted.
    (
        "duplicate names with a token in extra_args",
        {"models": [model(extra_args={"hf_token": SECRET}), model()]},
        "models",
    ),
]

BODY_CASES = TYPES + RANGES + STRINGS + UNKNOWN_FIELDS


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=["create", "dryRun", "plan"])
@pytest.mark.parametrize(
    ("what", "body", "field", "value"), BODY_CASES, ids=[c[0] for c in BODY_CASES]
)
def test_bad_body_is_refused_naming_field_and_value(
    client: TestClient, endpoint: str, what: str, body: Any, field: str, value: Any
) -> None:
    before = _counts(client)
    assert_refused(client.post(endpoint, json=body), field, value)
    assert _counts(client) == before


@pytest.mark.parametrize(
    ("what", "body", "field", "value", "lists"), UNKNOWN_NAMES, ids=[c[0] for c in UNKNOWN_NAMES]
)
def test_unknown_names_list_what_is_accepted(
    client: TestClient, what: str, body: Any, field: str, value: Any, lists: str
) -> None:
    before = _counts(client)
    err = assert_refused(client.post("/v1/deployments", json=body), field, value)
    assert lists in err["message"], err["message"]
    assert _counts(client) == before


@pytest.mark.parametrize(("what", "body", "field"), SECRETS, ids=[c[0] for c in SECRETS])
def test_credentials_are_never_echoed(
    client: TestClient, what: str, body: Any, field: str
) -> None:
    before = _counts(client)
    r = client.post("/v1/deployments", json=body)
    assert_refused(r, field)
    assert SECRET not in r.text
    assert _counts(client) == before


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=["create", "dryRun", "plan"])
def test_duplicate_names_name_both_entries(client: TestClient, endpoint: str) -> None:
    before = _counts(client)
    body = {"models": [model(name="a"), model(name="b"), model(name="a")]}
    err = assert_refused(client.post(endpoint, json=body), "models")
    assert "models[2].name" in err["message"] and "models[0].name" in err["message"]
    assert "'a'" in err["message"]
    assert _counts(client) == before


@pytest.mark.parametrize("n", [101, 5000])
def test_too_many_models_is_refused_with_the_limit(client: TestClient, n: int) -> None:
    before = _counts(client)
    body = {"models": [model(name=f"m{i}") for i in range(n)]}
    for endpoint in ENDPOINTS:
        err = assert_refused(client.post(endpoint, json=body), "models")
        assert "at most 100" in err["message"] and str(n) in err["message"]
        assert len(json.dumps(err)) < 10_000  # the list is not sent back whole
    assert _counts(client) == before


# Bodies no JSON encoder writes: NaN / Infinity (Python's parser admits them), lone
# surrogates, bytes that are not UTF-8, nesting deeper than the parser's stack, huge integers.
RAW: list[tuple[str, bytes, str, Any]] = [
    ("max_model_len NaN", b'{"models":[{"name":"a","model":"x","max_model_len":NaN}]}',
     "models[0].max_model_len", "NaN"),
    ("replicas Infinity", b'{"models":[{"name":"a","model":"x","replicas":Infinity}]}',
     "models[0].replicas", "Infinity"),
    ("replicas -Infinity", b'{"models":[{"name":"a","model":"x","replicas":-Infinity}]}',
     "models[0].replicas", "-Infinity"),
    ("autoscaling NaN", b'{"models":[{"name":"a","model":"x","autoscaling":{"gpu_util_up":NaN}}]}',
     "models[0].autoscaling.gpu_util_up", "NaN"),
    ("autoscaling Infinity",
     b'{"models":[{"name":"a","model":"x","autoscaling":{"down_cooldown_s":Infinity}}]}',
     "models[0].autoscaling.down_cooldown_s", "Infinity"),
    ("extra_args NaN", b'{"models":[{"name":"a","model":"x","extra_args":{"seed":NaN}}]}',
     "models[0].extra_args.seed", "NaN"),
    ("metadata Infinity", b'{"models":[{"name":"a","model":"x"}],"metadata":{"n":[1,Infinity]}}',
     "metadata.n[1]", "Infinity"),
    ("name lone surrogate", b'{"models":[{"name":"a\\ud800","model":"x"}]}',
     "models[0].name", ANY),
    ("model lone surrogate", b'{"models":[{"name":"a","model":"x\\udfff"}]}',
     "models[0].model", ANY),
    ("engine lone surrogate", b'{"models":[{"name":"a","model":"x","engine":"\\ud800"}]}',
     "models[0].engine", ANY),
    ("namespace lone surrogate", b'{"models":[{"name":"a","model":"x"}],"namespace":"\\udc80"}',
     "namespace", ANY),
    ("metadata lone surrogate", b'{"models":[{"name":"a","model":"x"}],"metadata":{"u":"\\ud83d"}}',
     "metadata.u", ANY),
    ("extra_args key lone surrogate",
     b'{"models":[{"name":"a","model":"x","extra_args":{"\\ud800":1}}]}',
     "models[0].extra_args['\\ud800']", ANY),
    ("not UTF-8", b'{"models":[{"name":"a","model":"Qwen\xff"}]}', "body", None),
    ("Latin-1", '{"models":[{"name":"a","model":"Qwén"}]}'.encode("latin-1"), "body", None),
    ("not JSON", b'{"models": [', "body", None),
    ("nested past the parser", b'{"models":[{"name":"a","model":"x","extra_args":{"a":'
     + b"[" * 100_000 + b"]" * 100_000 + b"}}]}", "body", None),
    ("integer of 5000 digits", b'{"models":[{"name":"a","model":"x","replicas":'
     + b"9" * 5000 + b"}]}", "body", None),
    ("integer of 40 digits", b'{"models":[{"name":"a","model":"x","max_model_len":'
     + b"9" * 40 + b"}]}", "models[0].max_model_len", ANY),
]


@pytest.mark.parametrize(("what", "raw", "field", "value"), RAW, ids=[c[0] for c in RAW])
def test_unencodable_body_is_refused(
    client: TestClient, what: str, raw: bytes, field: str, value: Any
) -> None:
    before = _counts(client)
    for endpoint in ENDPOINTS:
        r = client.post(endpoint, content=raw, headers={"content-type": "application/json"})
        assert_refused(r, field, value)
    assert _counts(client) == before


# Decisions: what is accepted (so the validators above are not simply refusing everything).
ACCEPTED: list[tuple[str, Any]] = [
    ("leading digit (a DNS-1123 label; Services get an 'a3s-' prefix)", one(name="1qwen")),
    ("63 characters", one(name="a" * 63)),
    ("max_model_len at 2**31-1", one(max_model_len=2**31 - 1)),
    ("max_model_len null is automatic", one(max_model_len=None)),
    ("integers for autoscaling's numbers", one(autoscaling={"gpu_util_up": 90, "queue_up": 5})),
    ("snake-case autoscaling names", one(autoscaling={"min_replicas": 1, "max_replicas": 2})),
    ("model id with padding is trimmed", one(model="  Qwen/Qwen2.5-7B-Instruct  ")),
    ("free-form extra_args", one(extra_args={"chat_template": "{{ a }}\n\t{{ b }}", "seed": 1.5})),
    ("unicode metadata", {"models": [OK], "metadata": {"团队": "推理", "emoji": "🚀", "n": None}}),
]


@pytest.mark.parametrize(("what", "body"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_edge_values_that_are_accepted(make_app: Any, what: str, body: Any) -> None:
    c = make_app(controllers=False)
    r = c.post("/v1/deployments", json=body)
    assert r.status_code == 202, r.text
    dep = r.json()["deployments"][0]["id"]
    assert c.get(f"/v1/deployments/{dep}").status_code == 200
    assert c.get("/v1/deployments").status_code == 200

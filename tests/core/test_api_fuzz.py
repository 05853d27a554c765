"""Hostile input to the control plane: "bad input gets a clear error that names the field and
the value, and changes nothing". Every case must be a 4xx (never a 500) in the API's error
shape, name the field by its JSON path (`models[1].name`), quote the value (cut if long, never
a credential), and leave the store as it was."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse

from a3s_core.api.app import create_app
from a3s_core.plugins import Plugins
from a3s_core.settings import Settings
from a3s_core.store import ApiKeyRow, DeploymentRow, EventRow
from a3s_core.testing import ADMIN_TOKEN, FakeRuntimePlugin

OK = {"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}
SECRET = "sk-live-0123456789abcdef-do-not-echo"
ANY = object()  # do not check the detail's value
LONG = "a" * 10_000
CEILING = 16  # Settings.max_replicas (default)
ENDPOINTS = ["/v1/deployments", "/v1/deployments?dryRun=true", "/v1/deployments:plan"]


def model(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = dict(OK)
    for k, v in kw.items():
        if v is ...:
            m.pop(k, None)
        else:
            m[k] = v
    return m


def one(**kw: Any) -> dict[str, Any]:
    return {"models": [model(**kw)]}


def _counts(client: Any) -> tuple[int, int, int]:
    store = client.app.state.platform.store
    return store.count(DeploymentRow), store.count(ApiKeyRow), store.count(EventRow)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One platform for the module (nothing is meant to be written; each case checks)."""
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("fuzz")) / "a3s",
        admin_token=ADMIN_TOKEN,
        runtime="fake",
        controllers=False,
        port=18080,
    )
    plugins = Plugins()
    plugins.register(FakeRuntimePlugin(), name="a3s-testing-fake-runtime")
    with TestClient(create_app(settings, plugins)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield c


def assert_refused(
    r: Any, field: str, value: Any = ANY, status: int = 422, code: str = "invalid_request"
) -> dict[str, Any]:
    """The API's error shape, naming `field` (in details and in the message) and the value."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert len(err["message"]) < 1000, "an error message must not echo a long value in full"
    fields = [d["field"] for d in err["details"]]
    assert field in fields, (field, err)
    assert field in err["message"], (field, err["message"])
    detail = next(d for d in err["details"] if d["field"] == field)
    assert len(json.dumps(detail["value"])) < 2000, "a long value must be cut"
    if value is not ANY:
        assert detail["value"] == value, (value, detail)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            shown = (str(value), repr(value))  # control characters are quoted escaped
            assert any(s in err["message"] for s in shown), (value, err["message"])
    assert SECRET not in r.text
    return err


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


# --------------------------------------------------------------- scale


@pytest.fixture(scope="module")
def deployed(client: TestClient) -> dict[str, str]:
    """A live deployment, one with autoscaling bounds 2..3, and a deleted (deleting) one."""
    body = {
        "namespace": "scale-fuzz",
        "models": [
            model(name="live", replicas=2),
            model(name="bounded", replicas=2, autoscaling={"minReplicas": 2, "maxReplicas": 3}),
            model(name="gone"),
        ],
    }
    r = client.post("/v1/deployments", json=body)
    assert r.status_code == 202, r.text
    ids = {d["name"]: d["id"] for d in r.json()["deployments"]}
    assert client.delete(f"/v1/deployments/{ids['gone']}").status_code == 202
    return ids


SCALE: list[tuple[str, Any, str, Any]] = [
    ("negative", {"replicas": -1}, "replicas", -1),
    ("zero", {"replicas": 0}, "replicas", 0),
    ("float", {"replicas": 1.5}, "replicas", 1.5),
    ("whole float", {"replicas": 3.0}, "replicas", 3.0),
    ("string", {"replicas": "3"}, "replicas", "3"),
    ("true", {"replicas": True}, "replicas", True),
    ("false", {"replicas": False}, "replicas", False),
    ("null", {"replicas": None}, "replicas", None),
    ("list", {"replicas": [3]}, "replicas", ANY),
    ("above the ceiling", {"replicas": CEILING + 1}, "replicas", CEILING + 1),
    ("huge", {"replicas": 10**30}, "replicas", ANY),
    ("1e308", {"replicas": 1e308}, "replicas", 1e308),
    ("missing", {}, "replicas", ANY),
    ("unknown field", {"replicas": 3, "force": True}, "force", True),
    ("camelCase alias", {"desiredReplicas": 3}, "replicas", ANY),
    ("credential", {"replicas": 3, "token": SECRET}, "token", ANY),
    ("body a list", [3], "body", ANY),
    ("body a number", 3, "body", 3),
]
SCALE_RAW: list[tuple[str, bytes, str, Any]] = [
    ("NaN", b'{"replicas":NaN}', "replicas", "NaN"),
    ("Infinity", b'{"replicas":Infinity}', "replicas", "Infinity"),
    ("5000 digits", b'{"replicas":' + b"9" * 5000 + b"}", "body", None),
    ("not UTF-8", b'{"replicas":"\xff"}', "body", None),
    ("not JSON", b'{"replicas":', "body", None),
]


def _desired(client: TestClient, dep: str) -> int:
    return int(client.get(f"/v1/deployments/{dep}").json()["desiredReplicas"])


@pytest.mark.parametrize(("what", "body", "field", "value"), SCALE, ids=[c[0] for c in SCALE])
def test_bad_scale_is_refused(
    client: TestClient, deployed: dict[str, str], what: str, body: Any, field: str, value: Any
) -> None:
    dep = deployed["live"]
    before = _counts(client), _desired(client, dep)
    assert_refused(client.post(f"/v1/deployments/{dep}/scale", json=body), field, value)
    assert (_counts(client), _desired(client, dep)) == before


@pytest.mark.parametrize(
    ("what", "raw", "field", "value"), SCALE_RAW, ids=[c[0] for c in SCALE_RAW]
)
def test_unencodable_scale_is_refused(
    client: TestClient, deployed: dict[str, str], what: str, raw: bytes, field: str, value: Any
) -> None:
    dep = deployed["live"]
    before = _counts(client), _desired(client, dep)
    r = client.post(
        f"/v1/deployments/{dep}/scale", content=raw, headers={"content-type": "application/json"}
    )
    assert_refused(r, field, value)
    assert (_counts(client), _desired(client, dep)) == before


@pytest.mark.parametrize(("replicas", "bound"), [(4, "maximum of 3"), (1, "minimum of 2")])
def test_scale_outside_autoscaling_bounds(
    client: TestClient, deployed: dict[str, str], replicas: int, bound: str
) -> None:
    dep = deployed["bounded"]
    before = _counts(client), _desired(client, dep)
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": replicas})
    err = assert_refused(r, "replicas", replicas)
    assert bound in err["message"]
    assert (_counts(client), _desired(client, dep)) == before


@pytest.mark.parametrize("dep", ["dep-000000000000", "nope", "x" * 5000, "%00", "..%2f..%2fetc"])
def test_scale_unknown_deployment_is_404(client: TestClient, dep: str) -> None:
    before = _counts(client)
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == "not_found" and len(err["message"]) < 3000
    assert _counts(client) == before


def test_scale_deleted_deployment_is_409(client: TestClient, deployed: dict[str, str]) -> None:
    dep = deployed["gone"]
    before = _counts(client), _desired(client, dep)
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
    assert r.status_code == 409, r.text
    assert "gone" in r.json()["error"]["message"]
    assert (_counts(client), _desired(client, dep)) == before


# --------------------------------------------------------------- GET /v1/deployments


@pytest.mark.parametrize(
    ("query", "field"),
    [
        *[(f"namespace={v}", "namespace") for v in ("Team", "team_ai", "team.ai", "-team", "%00",
                                                   "a" * 64, "x" * 10_000, "%ff", "%EF%BD%81")],
        ("includeDeleted=maybe", "query.includeDeleted"),
        ("includeDeleted=2", "query.includeDeleted"),
    ],
    ids=lambda q: str(q)[:40],
)
def test_bad_list_query_is_refused(client: TestClient, query: str, field: str) -> None:
    r = client.get("/v1/deployments?" + query)
    assert_refused(r, field)


def test_empty_namespace_query_means_all(client: TestClient) -> None:
    r = client.get("/v1/deployments?namespace=")
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert client.get("/v1/deployments?namespace=team-ai").status_code == 200


# --------------------------------------------------------------- WS /v1/events


def _ws_refusal(client: TestClient, path: str) -> Any:
    with pytest.raises(WebSocketDenialResponse) as info, client.websocket_connect(path):
        pass
    return info.value


WS_BAD: list[tuple[str, str]] = [
    ("since=-1", "since"),
    ("since=abc", "since"),
    ("since=1.5", "since"),
    ("since=1e3", "since"),
    ("since=NaN", "since"),
    (f"since={2**63}", "since"),
    ("since=%00", "since"),
    ("heartbeat=0", "heartbeat"),
    ("heartbeat=-1", "heartbeat"),
    ("heartbeat=nan", "heartbeat"),
    ("heartbeat=inf", "heartbeat"),
    ("heartbeat=1e308", "heartbeat"),
    ("heartbeat=abc", "heartbeat"),
    ("follow=maybe", "follow"),
    ("batch=2", "batch"),
]


@pytest.mark.parametrize(("query", "field"), WS_BAD, ids=[q for q, _ in WS_BAD])
def test_bad_event_stream_parameter_is_refused(client: TestClient, query: str, field: str) -> None:
    before = _counts(client)
    assert_refused(_ws_refusal(client, "/v1/events?" + query), field)
    assert _counts(client) == before


@pytest.mark.parametrize("query", ["tail=-1", "tail=abc", "tail=100001", "follow=2", "heartbeat=0"])
def test_bad_log_stream_parameter_is_refused(
    client: TestClient, deployed: dict[str, str], query: str
) -> None:
    path = f"/v1/deployments/{deployed['live']}/logs?{query}"
    assert_refused(_ws_refusal(client, path), query.split("=")[0])


# Found by this file, fixed in a3s_core/api/events_ws.py.
WS_KNOWN: list[tuple[str, str]] = [
    ("namespace=Team_AI", "namespace"),  # a namespace that cannot exist streams nothing, forever
    ("namespace=" + "x" * 10_000, "namespace"),
    ("since=%201", "since"),  # int() accepts surrounding spaces,
    ("since=1_000", "since"),  # underscores
    ("since=%EF%BC%91", "since"),  # and full-width digits
    ("since=" + "9" * 5000, "since"),  # refused, but the 5000 digits are echoed twice
]


@pytest.mark.parametrize(("query", "field"), WS_KNOWN, ids=[q[:30] for q, _ in WS_KNOWN])
def test_event_stream_parameters_once_accepted_are_refused(
    client: TestClient, query: str, field: str
) -> None:
    assert_refused(_ws_refusal(client, "/v1/events?" + query), field)


def test_event_stream_for_an_unknown_deployment_is_404(client: TestClient) -> None:
    # Once accepted, streaming nothing forever; refused as on /v1/deployments/{id}/events.
    r = _ws_refusal(client, "/v1/events?deployment=dep-000000000000")
    assert r.status_code == 404, r.text
    assert "dep-000000000000" in r.json()["error"]["message"]

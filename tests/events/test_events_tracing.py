"""OpenTelemetry: one trace per deployment request, a span per pipeline step, exported
through the configured exporter; the event stream carries the same trace and span ids."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from events_testkit import BROKEN_MODEL, TO_RUNNING, TinySizing, deploy, read_until, wait_status
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from a3s_core.api.app import create_app
from a3s_core.errors import A3SError
from a3s_core.events.tracing import exporters_from_env
from a3s_core.testing import ADMIN_TOKEN


@pytest.fixture
def traced(
    a3s_settings: Any, a3s_plugins: Any, register_plugin: Any
) -> Iterator[tuple[TestClient, InMemorySpanExporter]]:
    register_plugin(a3s_plugins, TinySizing(), "events-tiny-sizing")
    exporter = InMemorySpanExporter()
    app = create_app(a3s_settings, a3s_plugins, span_exporter=exporter)
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client, exporter


def _hex(n: int, width: int) -> str:
    return f"{n:0{width}x}"


def spans_of(client: TestClient, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    assert client.app.state.platform.tracer_provider.force_flush()  # type: ignore[attr-defined]
    return list(exporter.get_finished_spans())


def test_span_tree_and_events_share_trace_ids(
    traced: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    out = deploy(client, "chat")
    dep = out["deployments"][0]["id"]
    wait_status(client, dep, "running")
    with client.websocket_connect(f"/v1/deployments/{dep}/events?heartbeat=0.2") as ws:
        events = read_until(ws, "deployment.running")
    assert [e["type"] for e in events] == TO_RUNNING

    spans = spans_of(client, exporter)
    roots = [s for s in spans if s.name == "deployment.request"]
    assert len(roots) == 1
    root = roots[0]
    trace_id = _hex(root.context.trace_id, 32)
    assert out["traceId"] == trace_id  # POST /v1/deployments hands the trace id back
    assert root.parent is None
    assert client.get(f"/v1/deployments/{dep}").json()["traceId"] == trace_id

    steps = {s.name: s for s in spans if s.context.trace_id == root.context.trace_id}
    assert {"deployment.request", "sizing", "scheduling"} <= set(steps)
    for name in ("sizing", "scheduling"):
        span = steps[name]
        assert span.parent is not None and span.parent.span_id == root.context.span_id, name
        assert span.attributes is not None and span.attributes["a3s.deployment_id"] == dep
    assert steps["scheduling"].attributes["a3s.data.node"] == "gpu-a100-0"  # type: ignore[index]

    # The stream and the exported spans tell the same story under the same ids.
    span_ids = {_hex(s.context.span_id, 16): s.name for s in spans}
    for e in events:
        assert e["traceId"] == trace_id, e["type"]
        assert e["spanId"] in span_ids, e["type"]
    by_type = {e["type"]: e for e in events}
    assert span_ids[by_type["sizing.started"]["spanId"]] == "sizing"
    assert span_ids[by_type["sizing.completed"]["spanId"]] == "sizing"
    assert span_ids[by_type["scheduling.completed"]["spanId"]] == "scheduling"
    assert span_ids[by_type["deployment.accepted"]["spanId"]] == "deployment.request"
    # The completed event carries the step's message and duration; the span its status.
    assert by_type["sizing.completed"]["data"]["durationSeconds"] >= 0
    # A point event inside a span is also a span event (what an OTLP backend shows).
    assert "deployment.accepted" in [ev.name for ev in root.events]


def test_each_request_is_its_own_trace_and_failures_mark_the_span(
    traced: tuple[TestClient, InMemorySpanExporter],
) -> None:
    client, exporter = traced
    ok = deploy(client, "chat")
    bad = client.post(
        "/v1/deployments",
        json={"models": [{"name": "nope", "model": BROKEN_MODEL}]},
    ).json()
    assert ok["traceId"] != bad["traceId"]
    dep = bad["deployments"][0]["id"]
    wait_status(client, dep, "failed")
    with client.websocket_connect(f"/v1/deployments/{dep}/events?heartbeat=0.2") as ws:
        events = read_until(ws, "sizing.failed")
    failed = events[-1]
    assert failed["level"] == "error" and failed["traceId"] == bad["traceId"]
    spans = {_hex(s.context.span_id, 16): s for s in spans_of(client, exporter)}
    span = spans[failed["spanId"]]
    assert span.name == "sizing" and not span.status.is_ok
    assert span.status.description == failed["message"]


@pytest.mark.parametrize(
    ("env", "kinds"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ["OTLPSpanExporter"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["OTLPSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["ConsoleSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["OTLPSpanExporter", "ConsoleSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_exporters_follow_the_standard_otel_variables(
    env: dict[str, str], kinds: list[str]
) -> None:
    assert [type(e).__name__ for e in exporters_from_env(env)] == kinds


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER: 'zipkin' is not supported"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported",
        ),
    ],
)
def test_unsupported_otel_settings_say_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(A3SError, match=message):
        exporters_from_env(env)

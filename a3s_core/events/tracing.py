"""OpenTelemetry for the deployment pipeline.

One trace per deployment request; a span per pipeline step. `EnvelopeSpanProcessor` turns
step spans into envelope events (`<step>.started`, `<step>.completed` / `<step>.failed`),
so the WebSocket stream and any OTLP backend (configured with the standard `OTEL_*`
variables) tell the same story under the same trace id. Point events inside a step go
through `EventBus.emit`, which also records them as span events.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from a3s_core.errors import A3SError
from a3s_core.events.bus import EventBus

STEP = "a3s.step"  # attribute marking a span as a pipeline step that becomes events
MESSAGE = "a3s.message"
DATA_PREFIX = "a3s.data."


class EnvelopeSpanProcessor(SpanProcessor):
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attrs = span.attributes or {}
        if not attrs.get(STEP) or not attrs.get("a3s.emit_start", True):
            return
        self._emit(span, f"{span.name}.started", str(attrs.get("a3s.start_message", "")), attrs)

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        if not attrs.get(STEP):
            return
        failed = span.status.status_code is StatusCode.ERROR
        kind = "failed" if failed else "completed"
        message = str(attrs.get(MESSAGE) or span.status.description or f"{span.name} {kind}")
        duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
        self._emit(span, f"{span.name}.{kind}", message, attrs, failed, duration)

    def _emit(
        self,
        span: ReadableSpan,
        type_: str,
        message: str,
        attrs: Any,
        failed: bool = False,
        duration: float | None = None,
    ) -> None:
        ctx = span.get_span_context()
        data = {
            k[len(DATA_PREFIX) :]: _plain(v) for k, v in attrs.items() if k.startswith(DATA_PREFIX)
        }
        if duration is not None:
            data["durationSeconds"] = round(duration, 6)
        self.bus.emit(
            type_,
            message or type_,
            deployment_id=attrs.get("a3s.deployment_id"),
            name=attrs.get("a3s.name"),
            namespace=attrs.get("a3s.namespace"),
            level="error" if failed else "info",
            data=data,
            trace_id=f"{ctx.trace_id:032x}" if ctx else None,
            span_id=f"{ctx.span_id:016x}" if ctx else None,
        )

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def make_tracer_provider(bus: EventBus, exporter: SpanExporter | None = None) -> TracerProvider:
    """A provider of our own (not the global one), so several apps can live in one process
    (tests). The envelope processor is always on; span export follows `exporter` when given,
    else the standard variables (see `exporters_from_env`)."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "a3s")})
    )
    provider.add_span_processor(EnvelopeSpanProcessor(bus))
    for exp in [exporter] if exporter is not None else exporters_from_env(os.environ):
        provider.add_span_processor(BatchSpanProcessor(exp))
    return provider


def exporters_from_env(env: Mapping[str, str]) -> list[SpanExporter]:
    """Span exporters from the standard OpenTelemetry variables:
    `OTEL_SDK_DISABLED=true` → none; `OTEL_TRACES_EXPORTER` = comma list of `otlp`,
    `console`, `none` (default: `otlp` when an OTLP endpoint is set, else none);
    `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` = `http/protobuf` (default) or `grpc` (needs
    opentelemetry-exporter-otlp-proto-grpc). Endpoint, headers, timeout, compression and
    batching (`OTEL_BSP_*`) are read by the exporter and processor themselves."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
    names = [n.strip().lower() for n in raw.split(",") if n.strip()] or (
        ["otlp"] if endpoint else []
    )
    out: list[SpanExporter] = []
    for name in names:
        if name == "none":
            return []
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            out.append(ConsoleSpanExporter())
        elif name == "otlp":
            out.append(_otlp(env))
        else:
            raise A3SError(
                f"OTEL_TRACES_EXPORTER: {name!r} is not supported; use otlp, console or none"
            )
    return out


def _otlp(env: Mapping[str, str]) -> SpanExporter:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise A3SError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc "
                "(pip install it), or use http/protobuf"
            ) from exc
        return GrpcExporter()  # type: ignore[no-any-return]
    if protocol != "http/protobuf":
        raise A3SError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported; use http/protobuf or grpc"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def parent_context(trace_id: str | None, span_id: str | None) -> Context | None:
    """Continue a deployment's trace in a later process or tick from the stored ids."""
    if not trace_id or not span_id:
        return None
    sc = SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(sc))


class Step:
    """Handle to a running step span: set the message and data its end event carries."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def done(self, message: str, **data: Any) -> None:
        self.span.set_attribute(MESSAGE, message)
        for k, v in data.items():
            if v is not None:
                self.span.set_attribute(DATA_PREFIX + k, _attr(v))

    def fail(self, message: str, **data: Any) -> None:
        self.done(message, **data)
        self.span.set_status(Status(StatusCode.ERROR, message))


def _attr(v: Any) -> Any:
    if isinstance(v, str | bool | int | float):
        return v
    if isinstance(v, list | tuple) and all(isinstance(x, str | bool | int | float) for x in v):
        return list(v)
    import json

    return json.dumps(v, default=str)


@contextmanager
def step(
    tracer: trace.Tracer,
    name: str,
    *,
    deployment_id: str,
    deployment_name: str,
    namespace: str,
    parent: Context | None = None,
    start_message: str = "",
    emit_start: bool = True,
) -> Iterator[Step]:
    """A pipeline step: a span that becomes `<name>.started` and `<name>.completed|failed`
    events. An exception marks the span failed (its message becomes the event's) and is
    re-raised."""
    attrs: dict[str, AttributeValue] = {
        STEP: True,
        "a3s.deployment_id": deployment_id,
        "a3s.name": deployment_name,
        "a3s.namespace": namespace,
        "a3s.start_message": start_message,
        "a3s.emit_start": emit_start,
    }
    with tracer.start_as_current_span(
        name, context=parent, attributes=attrs, record_exception=True, set_status_on_exception=False
    ) as span:
        handle = Step(span)
        try:
            yield handle
        except Exception as exc:
            if (span.attributes or {}).get(MESSAGE) is None:  # type: ignore[attr-defined]
                handle.fail(getattr(exc, "message", None) or str(exc))
            else:
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise

"""OpenTelemetry tracing for every process.

The gateway opens one span per turn with a child per stage call; each service opens one span per RPC, joined to
the caller's by W3C trace context in the gRPC metadata, and tagged with the session and turn ids of the request's
`RequestMeta`. Spans are always recorded (the gateway builds its per-turn latency report from them) and exported
by `OTEL_TRACES_EXPORTER`: `none` (default), `console` (one JSON line per span on stdout) or `otlp`
(OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`, e.g. a Jaeger or an OpenTelemetry collector).
"""

import sys
from collections.abc import Iterable
from typing import Literal

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from pydantic_settings import BaseSettings, SettingsConfigDict


class TracingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OTEL_", env_file=".env", extra="ignore")

    traces_exporter: Literal["none", "console", "otlp"] = "none"
    exporter_otlp_endpoint: str = "http://127.0.0.1:4318"


def setup_tracing(service: str, settings: TracingSettings | None = None) -> None:
    settings = settings or TracingSettings()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if settings.traces_exporter == "console":
        exporter = ConsoleSpanExporter(out=sys.stdout, formatter=lambda span: span.to_json(indent=None) + "\n")
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    elif settings.traces_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        endpoint = settings.exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    """Exports what is still buffered."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def new_trace() -> dict:
    """Arguments for `start_span` that make the span the root of its own trace, linked to the span current
    here (e.g. the WebSocket connection's), so that each turn is one trace rather than a session being one."""
    current = trace.get_current_span().get_span_context()
    return {"context": Context(), "links": [trace.Link(current)] if current.is_valid else []}


def start_turn_span(meta, speculated: bool, start_time: int | None = None) -> trace.Span:
    """The root span of one reply (a turn), tagged with its RequestMeta's session and turn ids."""
    span = trace.get_tracer("avatar.gateway").start_span(
        "turn", start_time=start_time, **new_trace(), attributes={"avatar.speculated": speculated})
    _set_meta(span, meta)
    return span


def start_child_span(parent: trace.Span, name: str) -> trace.Span:
    """A client span under `parent` for one call to another process (see `outgoing_metadata`)."""
    return trace.get_tracer("avatar.gateway").start_span(
        name, context=trace.set_span_in_context(parent), kind=trace.SpanKind.CLIENT)


def outgoing_metadata(span: trace.Span) -> tuple[tuple[str, str], ...]:
    """gRPC metadata that makes the callee's span a child of `span`."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return tuple(carrier.items())


def incoming_context(metadata: Iterable | None) -> Context:
    """The caller's trace context from gRPC invocation metadata."""
    return propagate.extract({key: value for key, value in metadata or ()})


def tag_meta(span: trace.Span, message) -> None:
    """Session and turn ids of a request's RequestMeta, as span attributes."""
    if message is not None and hasattr(message, "HasField") and "meta" in message.DESCRIPTOR.fields_by_name \
            and message.HasField("meta"):
        _set_meta(span, message.meta)


def _set_meta(span: trace.Span, meta) -> None:
    span.set_attribute("avatar.session_id", meta.session_id)
    span.set_attribute("avatar.turn_id", meta.turn_id)

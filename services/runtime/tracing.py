"""One task's path through the services as one trace: W3C trace context (``traceparent``,
``tracestate``) travels in the Kafka headers of every event, and each service records
spans (a decision, an execution, a judgement, a backup) under the context of the record
that caused them, exported by OTLP/HTTP.

Off unless an endpoint is configured (AGENSBUS_OTEL_ENDPOINT, or the standard
OTEL_EXPORTER_OTLP_ENDPOINT). Off, OpenTelemetry is never imported (the ``tracing`` extra
is optional) and every call returns a shared empty value.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import TYPE_CHECKING

from services.runtime.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, Tracer

#: Kafka headers as aiokafka hands them over (FastStream too, on the raw record).
KafkaHeaders = Sequence[tuple[str, bytes]]
#: The standard variable the OTLP exporter reads by itself.
STANDARD_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_NO_SPAN = contextlib.nullcontext()


class TracingUnavailable(RuntimeError):
    """Tracing is configured but the ``tracing`` extra is not installed."""


class Tracing:
    """Spans of one process. ``Tracing()`` is tracing off."""

    def __init__(self, provider: "TracerProvider | None" = None) -> None:
        self._provider = provider
        self._tracer: Tracer | None = None if provider is None else provider.get_tracer("agensbus")

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def span(
        self,
        name: str,
        parent: KafkaHeaders | None = None,
        *,
        links: Sequence[KafkaHeaders] = (),
        start_ns: int | None = None,
        **attributes: str | int | float | bool,
    ) -> AbstractContextManager[object]:
        """A span made current for the ``with`` block: a child of the trace context in the
        ``parent`` headers (none there: of the current span, or a new trace), linked to the
        contexts in ``links``, starting at ``start_ns`` (``time.time_ns()``) or now."""
        if self._tracer is None:
            return _NO_SPAN
        return self._traced(self._tracer, name, parent, links, start_ns, attributes)

    def headers(self) -> Mapping[str, str]:
        """The current span's context as W3C headers, for the events published now."""
        if self._tracer is None:
            return _NO_HEADERS
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        return carrier

    def shutdown(self) -> None:
        """Export what is still buffered; call once, when the process ends."""
        if self._provider is not None:
            self._provider.shutdown()

    @contextlib.contextmanager
    def _traced(
        self,
        tracer: "Tracer",
        name: str,
        parent: KafkaHeaders | None,
        links: Sequence[KafkaHeaders],
        start_ns: int | None,
        attributes: Mapping[str, str | int | float | bool],
    ) -> Iterator[object]:
        context = None if parent is None else _extract(parent)
        linked = [link for headers in links if (link := _link(headers)) is not None]
        with tracer.start_as_current_span(
            name, context=context, links=linked, start_time=start_ns, attributes=attributes
        ) as span:
            yield span


def _carrier(headers: KafkaHeaders) -> dict[str, str]:
    return {
        name: value.decode("latin-1")
        for name, value in headers
        if name in ("traceparent", "tracestate") and value is not None
    }


def _extract(headers: KafkaHeaders) -> "Context | None":
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = _carrier(headers)
    return TraceContextTextMapPropagator().extract(carrier) if carrier else None


def _link(headers: KafkaHeaders) -> "Link | None":
    from opentelemetry import trace

    context = _extract(headers)
    if context is None:
        return None
    span_context = trace.get_current_span(context).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


def endpoint_of(settings: Settings) -> str | None:
    """Where spans go: the setting, else the standard variable, else nowhere (off)."""
    return settings.otel_endpoint or os.environ.get(STANDARD_ENDPOINT) or None


def start_tracing(settings: Settings, service: str) -> Tracing:
    """Tracing for the process named ``service``: off when no endpoint is configured; raises
    :class:`TracingUnavailable` when one is but OpenTelemetry is not installed."""
    endpoint = endpoint_of(settings)
    if endpoint is None:
        return Tracing()
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise TracingUnavailable(
            f"tracing to {endpoint} needs the tracing extra (opentelemetry is not "
            "installed): pip install 'agensbus[tracing]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": f"agensbus-{service}"}))
    # The setting is a base URL as the standard variable is; the exporter reads that one
    # (and its path rules) by itself.
    traces = f"{settings.otel_endpoint.rstrip('/')}/v1/traces" if settings.otel_endpoint else None
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
    return Tracing(provider)

"""OpenTelemetry tracing: vendor request -> published unit -> ``ce_traceparent`` on each record.

Rules:

1. Optional and off by default: on with ``tracing.enabled: true`` or when ``OTEL_TRACES_EXPORTER``
   is set to an exporter (``otlp``, ``console``); never when ``OTEL_SDK_DISABLED=true``. Needs the
   ``otel`` extra. Off, nothing here is imported by the daemon and the pipeline is unchanged.
2. Export is configured by the standard variables only: ``OTEL_TRACES_EXPORTER`` (``otlp``, the
   default, over HTTP/protobuf; ``console``), ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` /
   ``_HEADERS`` / ``_TIMEOUT`` / ``_CERTIFICATE``, ``OTEL_SERVICE_NAME`` (default ``streamd``),
   ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``, ``OTEL_BSP_*``.
3. Spans: one CLIENT span per vendor HTTP request (:func:`streamd.sources.http.trace_vendor_requests`);
   one PRODUCER span per published unit and trace, child of the request whose answer the events
   came from (the last request answered in the task that emitted them), a root span when there
   was none (a websocket push). It ends when Kafka acknowledged the unit or it was spooled
   (attribute ``streamd.outcome``).
4. Every record of a traced unit carries the CloudEvents distributed-tracing extension in Kafka
   binary mode: ``ce_traceparent`` (W3C ``00-{trace id}-{span id}-{flags}`` of its publish span)
   and ``ce_tracestate`` when the trace has one. A record spooled during an outage keeps them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from streamd.config_core import TracingConfig
from streamd.errors import FatalError
from streamd.publish.encoding import Record
from streamd.publish.units import Batch, SourceEmit, Unit
from streamd.sources.http import last_vendor_request, trace_vendor_requests

if TYPE_CHECKING:
    from streamd.config import Config
    from streamd.publish.write_ahead import WriteAhead

log = logging.getLogger("streamd.tracing")

EXPORTERS = ("otlp", "console", "none")


def enabled(config: TracingConfig, environ: Mapping[str, str] | None = None) -> bool:
    """Whether tracing is on (rule 1)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    return config.enabled or exporter not in ("", "none")


def traceparent(span_context: Any) -> bytes:
    """The W3C ``traceparent`` of a span context (version 00)."""
    return b"00-%032x-%016x-%02x" % (
        span_context.trace_id,
        span_context.span_id,
        int(span_context.trace_flags),
    )


class Tracing:
    """Starts and ends the publish spans and writes the headers (rules 3-4); made by :func:`setup`."""

    def __init__(self, tracer: Any, provider: Any = None) -> None:
        self.tracer = tracer
        self.provider = provider
        self.parents: dict[int, Any] = {}  # id(batch) -> the SpanContext it was emitted under
        self.units: dict[int, list[Any]] = {}  # id(unit) -> its open publish spans
        self._undo = trace_vendor_requests(tracer)

    def emitter(
        self, source: str, stream: MemoryObjectSendStream[Batch], ahead: WriteAhead | None = None
    ) -> SourceEmit:
        """A :class:`SourceEmit` that remembers the trace each batch was emitted in."""
        return _TracedEmit(self, source, stream, ahead)

    def start_unit(self, unit: Unit) -> None:
        """Open the unit's publish span(s), one per trace, and put the trace headers on its records."""
        from opentelemetry import context, trace
        from opentelemetry.trace import NonRecordingSpan, SpanKind

        groups: dict[tuple[int, int], tuple[Any, list[Batch]]] = {}
        for batch in unit.batches:
            parent = self.parents.pop(id(batch), None)
            key = (parent.trace_id, parent.span_id) if parent is not None else (0, 0)
            groups.setdefault(key, (parent, []))[1].append(batch)
        spans = []
        for parent, batches in groups.values():
            ctx = (
                trace.set_span_in_context(NonRecordingSpan(parent))
                if parent is not None
                else context.Context()
            )
            records = [r for b in batches for r in b.records]
            span = self.tracer.start_span(
                "streamd publish",
                context=ctx,
                kind=SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "send",
                    "messaging.batch.message_count": len(records),
                    "messaging.destination.name": sorted({r.topic for r in records}),
                    "streamd.source": sorted({b.source for b in batches}),
                },
            )
            span_context = span.get_span_context()
            if span_context.is_valid:
                headers: tuple[tuple[str, bytes], ...] = (("ce_traceparent", traceparent(span_context)),)
                if span_context.trace_state:
                    headers += (("ce_tracestate", span_context.trace_state.to_header().encode()),)
                for batch in batches:  # records are immutable (encoding rule 8): new ones, in place
                    batch.records[:] = [
                        Record(r.topic, r.key, r.value, r.headers + headers) for r in batch.records
                    ]
            spans.append(span)
        self.units[id(unit)] = spans

    def end_unit(self, unit: Unit, outcome: str) -> None:
        """End the unit's publish spans: ``outcome`` is ``acknowledged`` or ``spooled``."""
        for span in self.units.pop(id(unit), ()):
            span.set_attribute("streamd.outcome", outcome)
            span.end()

    def end_all(self, outcome: str = "spooled") -> None:
        """End every open span (the pipeline stopped: what it held is spooled)."""
        for spans in self.units.values():
            for span in spans:
                span.set_attribute("streamd.outcome", outcome)
                span.end()
        self.units.clear()
        self.parents.clear()

    async def aclose(self) -> None:
        """Stop tracing httpx and flush the exporter (in a thread: it blocks)."""
        self._undo()
        if self.provider is not None:
            await anyio.to_thread.run_sync(self.provider.shutdown)


class _TracedEmit(SourceEmit):
    def __init__(
        self,
        tracing: Tracing,
        source: str,
        stream: MemoryObjectSendStream[Batch],
        ahead: WriteAhead | None = None,
    ) -> None:
        super().__init__(source, stream, ahead)
        self._tracing = tracing

    async def _send(self, batch: Batch) -> None:
        parent = _current_parent()
        if parent is not None:
            self._tracing.parents[id(batch)] = parent
        try:
            await super()._send(batch)
        except BaseException:
            self._tracing.parents.pop(id(batch), None)
            raise


def _current_parent() -> Any:
    """The active span's context if any (a source's own span), else the last vendor request's."""
    from opentelemetry import trace

    current = trace.get_current_span().get_span_context()
    return current if current.is_valid else last_vendor_request()


def setup(config: Config, environ: Mapping[str, str] | None = None) -> Tracing | None:
    """The daemon's :class:`Tracing` (rules 1-2), or None when tracing is off.

    Raises:
        FatalError: tracing is on but the ``otel`` extra is not installed, or
            ``OTEL_TRACES_EXPORTER`` names an exporter streamd does not ship.
    """
    env = os.environ if environ is None else environ
    if not enabled(config.tracing, env):
        return None
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter_name not in EXPORTERS:
        raise FatalError(
            f"OTEL_TRACES_EXPORTER={exporter_name}: streamd ships otlp (HTTP/protobuf), console or none"
        )
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError as exc:
        raise FatalError(f"tracing needs the otel extra (pip install 'streamd[otel]'): {exc}") from None
    resource = Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME") or "streamd"})
    provider = TracerProvider(resource=resource)  # sampler from OTEL_TRACES_SAMPLER
    exporter: SpanExporter | None = None
    if exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise FatalError(f"tracing needs the otel extra (pip install 'streamd[otel]'): {exc}") from None
        exporter = OTLPSpanExporter()  # endpoint, headers, timeout, certificate: OTEL_EXPORTER_OTLP_*
    elif exporter_name == "console":
        exporter = ConsoleSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing on: spans exported with %s (OTEL_* variables)", exporter_name)
    return Tracing(provider.get_tracer("streamd"), provider)


__all__: Sequence[str] = ["Tracing", "enabled", "setup", "traceparent"]

"""OpenTelemetry tracing (issue 23 item 2): the Alvaria simulator -> the Alvaria source -> the
pipeline -> the embedded broker, with the in-memory span exporter: one trace links the vendor
request to the Kafka record (its ``ce_traceparent``)."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from streamd import tracing
from streamd.config import Config
from streamd.config_core import TracingConfig
from streamd.embedded import EmbeddedBroker
from streamd.http.app import Webhooks
from streamd.publish.encoding import header_dict
from streamd.publish.pipeline import Pipeline
from streamd.publish.spool import Spool
from streamd.runtime import Supervisor
from streamd.sim.alvaria import AlvariaSimulator
from streamd.sources.base import SourceDeps
from streamd.telemetry import Health
from tests.harness import kafka_publisher
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.anyio


def test_tracing_is_off_by_default_and_follows_the_otel_variables() -> None:
    off = TracingConfig()
    assert not tracing.enabled(off, {})
    assert tracing.setup(Config(), {}) is None
    assert tracing.enabled(TracingConfig(enabled=True), {})
    assert tracing.enabled(off, {"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.enabled(off, {"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.enabled(TracingConfig(enabled=True), {"OTEL_SDK_DISABLED": "true"})
    with pytest.raises(Exception, match="OTEL_TRACES_EXPORTER=zipkin"):
        tracing.setup(Config(), {"OTEL_TRACES_EXPORTER": "zipkin"})


async def test_setup_exports_with_otlp_and_undoes_the_httpx_wrapper() -> None:
    send = httpx.AsyncClient.send
    traced = tracing.setup(Config(), {"OTEL_TRACES_EXPORTER": "otlp"})
    assert traced is not None
    assert httpx.AsyncClient.send is not send
    await traced.aclose()
    assert httpx.AsyncClient.send is send


@pytest.mark.kafka
async def test_one_trace_links_the_vendor_request_to_the_kafka_record(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = tracing.Tracing(provider.get_tracer("test"))
    try:
        async with AlvariaSimulator(agents=2, auto_advance=False) as sim, EmbeddedBroker() as bootstrap:
            config = Config.model_validate(
                {"sources": [sim.source_config("cloud1", queries=["userActivity"], interval="100ms")]}
            )
            spool = Spool(tmp_path / "spool.db")
            supervisor = Supervisor(Health())
            source = config.sources[0].build(SourceDeps(supervisor.jobs("cloud1"), spool, Webhooks()))
            async with kafka_publisher(bootstrap, linger="1ms") as publisher:
                pipeline = Pipeline(publisher, spool, "streamd.", tracing=traced)
                emit = pipeline.emitter("cloud1")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(pipeline.run)
                    async with anyio.create_task_group() as sources:
                        await sources.start(source.run, emit)
                        records = await read_topic(
                            bootstrap, "streamd.alvaria.userActivity", lambda rs: len(rs) >= 2
                        )
                        sources.cancel_scope.cancel()
                    await emit.aclose()
    finally:
        await traced.aclose()

    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    headers = header_dict(records[0].headers)
    version, trace_id, span_id, flags = headers["ce_traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    publish = by_id[int(span_id, 16)]
    assert publish.kind is SpanKind.PRODUCER
    assert publish.context.trace_id == int(trace_id, 16)
    assert publish.attributes is not None
    assert publish.attributes["streamd.outcome"] == "acknowledged"
    assert "streamd.alvaria.userActivity" in publish.attributes["messaging.destination.name"]  # type: ignore[operator]
    assert publish.parent is not None
    request = by_id[publish.parent.span_id]  # the vendor request whose answer held the rows
    assert request.kind is SpanKind.CLIENT
    assert request.context.trace_id == publish.context.trace_id
    assert request.attributes is not None
    assert str(request.attributes["url.full"]).startswith(sim.url)
    assert request.attributes["http.response.status_code"] == 200
    assert all("ce_traceparent" in header_dict(r.headers) for r in records)

"""Pipeline overhead: typed events through streamd's pipeline (encode, bounded queue, send,
acknowledgement tracking, metrics) next to a raw aiokafka producer sending the same records to
the same embedded broker in the same run, and the CPU time this process spends per event on
either side (``time.process_time``).

Usage: python -m bench.pipeline_throughput [N]
"""

from __future__ import annotations

import sys
import time

import anyio

from bench.raw import raw_produce, raw_produce_timed
from bench.report import record
from streamd.app import tune_gc
from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.events import AgentState, Event, State
from streamd.publish.encoding import encode
from streamd.publish.kafka import KafkaPublisher
from streamd.publish.pipeline import Pipeline
from streamd.publish.spool import Spool


def make_events(n: int) -> list[Event]:
    states = list(State)
    return [
        AgentState(
            vendor="o2g",
            source="pbx1",
            agent_id=str(4000 + i % 500),
            state=states[i % len(states)],
            vendor_state="X",
        ).to_event()
        for i in range(n)
    ]


async def streamd_produce(bootstrap: str, events: list[Event], batch: int = 100) -> tuple[float, float]:
    """Push ``events`` through a pipeline, ``batch`` at a time, until every one is acknowledged:
    events per second, and the CPU seconds this process spent meanwhile."""
    pub = KafkaPublisher(KafkaConfig(bootstrap_servers=bootstrap), bootstrap, embedded=True)
    await pub.start()
    try:
        pipeline = Pipeline(pub, Spool(":memory:"), "bench.streamd.")
        emit = pipeline.emitter("pbx1")
        started, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            for i in range(0, len(events), batch):
                await emit.push(events[i : i + batch])
            await emit.aclose()
        return len(events) / (time.perf_counter() - started), time.process_time() - cpu
    finally:
        await pub.stop()


async def main(n: int) -> None:
    tune_gc()  # the daemon's GC settings, for both sides: the ratio measures code, not GC
    events = make_events(n)
    records = [encode(e, "bench.raw.") for e in events]
    async with EmbeddedBroker() as bootstrap:
        await raw_produce(bootstrap, records[:1000])  # warm up: topic creation, connections
        raw, raw_cpu = await raw_produce_timed(bootstrap, records)
        ours, cpu = await streamd_produce(bootstrap, events)
    print(f"events: {n}")
    print(f"raw aiokafka producer : {raw:10.0f} events/s")
    print(f"streamd pipeline      : {ours:10.0f} events/s")
    print(f"ratio                 : {ours / raw:10.2f}  (target >= 0.8)")
    ours_us, raw_us = cpu / n * 1e6, raw_cpu / n * 1e6
    print(
        f"CPU per event         : {ours_us:10.1f} us streamd (encode included), {raw_us:.1f} us raw producer"
    )
    record(
        "pipeline -> Kafka, events/s (anchor: raw producer)",
        ours,
        raw,
        unit="ev/s",
        target="ratio >= 0.8",
        ok=ours / raw >= 0.8,
    )
    record(
        "pipeline -> Kafka, CPU per event vs raw producer",
        ours_us,
        raw_us,
        unit="us",
        target="ratio <= 1.3",
        ok=ours_us / raw_us <= 1.3,
    )


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)

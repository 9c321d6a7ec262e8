"""The pipeline against the embedded Kafka-protocol broker, read back by an independent consumer."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import anyio
import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.events import Event
from streamd.publish.pipeline import Pipeline
from streamd.publish.spool import Spool
from streamd.telemetry import (
    EVENTS_DEADLETTERED,
    EVENTS_PUBLISHED,
    EVENTS_SPOOLED,
    ComponentState,
    Health,
)
from tests.harness import kafka_publisher
from tests.kafka_helpers import read_back

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


def _events(n: int, source: str = "s1", keys: int = 50, topic: str = "bulk") -> list[Event]:
    return [
        Event(topic=topic, type="test.bulk.Item", source=source, key=f"{source}:{i % keys}", data={"i": i})
        for i in range(n)
    ]


async def test_ten_thousand_events_all_present_in_order_with_headers() -> None:
    events = _events(10_000)
    before = EVENTS_PUBLISHED.labels("s1", "bulk")._value.get()
    async with EmbeddedBroker() as bootstrap, kafka_publisher(bootstrap) as pub:
        pipeline = Pipeline(pub, Spool(":memory:"), "it.")
        emit = pipeline.emitter("s1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            for i in range(0, len(events) - 100, 100):
                await emit.push(events[i : i + 100])
            await emit(events[-100:])  # returns only after the acknowledgement
            await emit.aclose()
        got = await anyio.to_thread.run_sync(read_back, bootstrap, "it.bulk", len(events))
    assert len(got) == len(events)
    assert EVENTS_PUBLISHED.labels("s1", "bulk")._value.get() - before == len(events)
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for record in got:
        value = orjson.loads(record.value or b"")
        assert record.key == f"s1:{value['i'] % 50}".encode()
        assert record.headers["ce_subject"] == record.key.decode()
        assert record.headers["ce_type"] == "test.bulk.Item"
        assert record.headers["ce_source"] == "streamd/s1"
        assert record.headers["ce_specversion"] == "1.0"
        assert record.headers["content-type"] == "application/json"
        per_key[record.key].append(value["i"])
    assert sorted(i for seq in per_key.values() for i in seq) == list(range(len(events)))
    for seq in per_key.values():
        assert seq == sorted(seq), "per-key order must be kept"


async def test_a_small_room_bounds_what_is_held_and_loses_nothing() -> None:
    """Pipeline rule 1: however fast a source pushes, the pipeline holds about ``max_buffered``
    events (plus one batch); the source waits for Kafka's answers, and every event arrives in order."""
    events = _events(5_000)
    held: list[int] = []
    async with EmbeddedBroker() as bootstrap, kafka_publisher(bootstrap) as pub:
        pipeline = Pipeline(pub, Spool(":memory:"), "it.", max_buffered=500)
        emit = pipeline.emitter("s1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            for i in range(0, len(events), 100):
                await emit.push(events[i : i + 100])
                held.append(pipeline.room.used)
            await emit.aclose()
        got = await anyio.to_thread.run_sync(read_back, bootstrap, "it.bulk", len(events))
    assert max(held) <= 500 + 100
    assert pipeline.room.used == 0
    per_key: dict[bytes | None, list[int]] = defaultdict(list)
    for record in got:
        per_key[record.key].append(orjson.loads(record.value or b"")["i"])
    assert sorted(i for seq in per_key.values() for i in seq) == list(range(len(events)))
    assert all(seq == sorted(seq) for seq in per_key.values())


async def test_outage_spools_and_drains_in_order(tmp_path: Path) -> None:
    broker = EmbeddedBroker()
    spool = Spool(tmp_path / "spool.db")
    # The embedded broker keeps topics in memory, so the outage topic must be new to the
    # restarted broker (a real Kafka keeps its topics across a restart).
    first, during = _events(100, topic="warmup"), _events(50, topic="outage", keys=5)
    during = [
        Event(topic=e.topic, type=e.type, source=e.source, key=e.key, data={"i": 1000 + i})
        for i, e in enumerate(during)
    ]
    async with broker as bootstrap, kafka_publisher(bootstrap, delivery_timeout=1.0, linger="1ms") as pub:
        health = Health()
        publisher = health.add("kafka", "publisher")
        publisher.set(ComponentState.RUNNING)
        pipeline = Pipeline(pub, spool, "it.", component=publisher)
        emit = pipeline.emitter("s1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            await emit(first)
            await broker._stop()  # Kafka goes away
            spooled_before = EVENTS_SPOOLED.labels("it.outage")._value.get()
            await emit(during)  # durable: returns once spooled
            assert spool.count == len(during)
            assert EVENTS_SPOOLED.labels("it.outage")._value.get() - spooled_before == len(during)
            assert publisher.state is ComponentState.RETRYING  # one transition, not a line per unit
            assert "spooling to disk" in publisher.detail
            assert health.ready()  # events are durable: webhooks keep being accepted
            async with EmbeddedBroker(port=broker.port):  # Kafka is back (empty: memory storage)
                with anyio.fail_after(30):
                    while spool.count:
                        await anyio.sleep(0.1)
                assert publisher.state is ComponentState.RUNNING
                await emit.aclose()
                got = await anyio.to_thread.run_sync(read_back, bootstrap, "it.outage", len(during))
    values = [orjson.loads(r.value or b"")["i"] for r in got]
    assert sorted(values) == [1000 + i for i in range(len(during))]
    by_key: dict[bytes | None, list[int]] = defaultdict(list)
    for r in got:
        by_key[r.key].append(orjson.loads(r.value or b"")["i"])
    assert all(seq == sorted(seq) for seq in by_key.values())
    spool.close()


async def test_oversized_record_is_dead_lettered_and_blocks_nothing() -> None:
    """A record Kafka would refuse for good never reaches the spool (where it would block the
    records behind it): it becomes a dead letter, and the events around it flow."""
    big = Event(topic="poison", type="test.big.Item", source="s1", key="s1:big", data={"blob": "x" * 200_000})
    dead_before = EVENTS_DEADLETTERED.labels("s1", "publish", "record_too_large")._value.get()
    small = _events(5, topic="poison")
    async with EmbeddedBroker() as bootstrap, kafka_publisher(bootstrap) as pub:
        spool = Spool(":memory:")
        pipeline = Pipeline(pub, spool, "it.", max_record_bytes=100_000)
        emit = pipeline.emitter("s1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            await emit([small[0], big, *small[1:]])
            assert spool.count == 0
            await emit.aclose()
        got = await anyio.to_thread.run_sync(read_back, bootstrap, "it.poison", 5)
        letters = await anyio.to_thread.run_sync(read_back, bootstrap, "it.deadletter", 1)
    assert sorted(orjson.loads(r.value or b"")["i"] for r in got) == list(range(5))
    [letter] = letters
    value = orjson.loads(letter.value or b"")
    assert value["error_type"] == "record_too_large"
    assert value["stage"] == "publish"
    assert "test.big.Item" in value["error"]
    assert letter.key == b"s1"
    assert EVENTS_DEADLETTERED.labels("s1", "publish", "record_too_large")._value.get() - dead_before == 1


async def test_cancelled_pipeline_spools_what_it_holds(tmp_path: Path) -> None:
    """Shutdown with Kafka down (grace over): everything accepted is spooled for the next start."""
    broker = EmbeddedBroker()
    spool = Spool(tmp_path / "spool.db")
    async with broker as bootstrap, kafka_publisher(bootstrap, delivery_timeout=30.0) as pub:
        pipeline = Pipeline(pub, spool, "it.", queue_size=4)
        emit = pipeline.emitter("s1")
        await broker._stop()  # Kafka goes away; sends now hang until the (long) delivery timeout
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            for i in range(6):
                await emit.push(_events(10, topic=f"leftover{i}"))
            await anyio.sleep(0.3)
            tg.cancel_scope.cancel()  # what app.py does when the shutdown grace is over
        await emit.aclose()
    assert spool.count == 60
    spool.close()
    reopened = Spool(tmp_path / "spool.db")
    assert reopened.count == 60  # durable: the next start drains them
    reopened.close()


async def test_a_durable_emit_does_not_wait_for_the_linger_a_push_batch_does() -> None:
    """``await emit`` (a webhook answering once durable) is sent at once; with a 60 s linger it
    would wait until ``spool_after`` took Kafka for silent and spooled it. A push batch queued
    before it rides along in the same send."""
    async with (
        EmbeddedBroker() as bootstrap,
        kafka_publisher(bootstrap, linger="60s", idempotence=False) as pub,
    ):
        await pub.ensure_topics(["it.urgent"])
        spool = Spool(":memory:")
        pipeline = Pipeline(pub, spool, "it.")
        emit = pipeline.emitter("s1")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            with anyio.fail_after(20):
                await emit.push(_events(3, topic="urgent"))
                await emit(_events(2, topic="urgent", source="s2"))
            assert spool.count == 0  # acknowledged by Kafka, not spooled for want of an answer
            await emit.aclose()
        got = await anyio.to_thread.run_sync(read_back, bootstrap, "it.urgent", 5)
    assert len(got) == 5

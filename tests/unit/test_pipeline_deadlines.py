"""Pipeline behaviour that needs a Kafka we cannot run here, with a stand-in producer.

An idempotent aiokafka producer (what streamd uses against real Kafka) retries a batch forever
while the cluster is down, so its delivery futures never resolve; the embedded broker does not
support idempotence. The stand-in reproduces exactly that: futures that never complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
import orjson
import pytest

from streamd.events import Event
from streamd.publish.encoding import Record
from streamd.publish.pipeline import Delivery, Pipeline
from streamd.publish.spool import Spool
from streamd.telemetry import REGISTRY

pytestmark = pytest.mark.anyio


class StuckKafka:
    """Accepts records and never acknowledges them (an idempotent producer during an outage)."""

    def __init__(self) -> None:
        self.sent: list[Record] = []

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        return None

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        self.sent.extend(records)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        return [(future, list(records))]


class AckingKafka(StuckKafka):
    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        self.sent.extend(records)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return [(future, list(records))]


def _events(n: int, **data: Any) -> list[Event]:
    return [Event(topic="t", type="x.t.E", source="s", key=f"s:{i}", data={"i": i, **data}) for i in range(n)]


async def test_durable_emit_returns_spooled_soon_after_kafka_stops_acknowledging() -> None:
    spool = Spool(":memory:")
    pipeline = Pipeline(StuckKafka(), spool, "p.", delivery_timeout=30, spool_after=0.2)
    emit = pipeline.emitter("s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(3):  # not "for as long as the outage lasts"
            await emit(_events(3))
        assert spool.count == 3
        with anyio.fail_after(3):
            await emit(_events(2))  # behind the spool now, straight into it
        assert spool.count == 5
        tg.cancel_scope.cancel()
    await emit.aclose()


async def test_an_unencodable_event_is_dead_lettered_and_the_rest_flows() -> None:
    kafka = AckingKafka()
    pipeline = Pipeline(kafka, Spool(":memory:"), "p.")
    emit = pipeline.emitter("s")
    bad = Event(topic="t", type="x.t.Bad", source="s", key="s:bad", data={"n": 2**70})  # beyond JSON ints
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(3):
            await emit([*_events(1), bad, *_events(1)])
        await emit.aclose()
    assert [r.topic for r in kafka.sent] == ["p.t", "p.deadletter", "p.t"]
    letter = orjson.loads(kafka.sent[1].value)
    assert letter["stage"] == "encode"
    assert "x.t.Bad" in letter["error"]
    assert "1180591620717411303424" in letter["raw"]


class ScriptedKafka(StuckKafka):
    """Each ``send_many`` call gets the next future from ``futures`` (created by the test), or an
    acknowledged one; ``log`` keeps every call's records (what reached Kafka, in send order)."""

    def __init__(self, futures: list[asyncio.Future[Any]]) -> None:
        super().__init__()
        self.futures = futures
        self.log: list[tuple[asyncio.Future[Any], list[Record]]] = []

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        if self.futures:
            future = self.futures.pop(0)
        else:
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
        self.log.append((future, list(records)))
        return [(future, list(records))]


async def test_a_unit_sent_before_an_earlier_one_failed_is_resent_after_it() -> None:
    """U1 fails after U2 was sent; the drain re-sends U1 and empties the spool before U2 is
    acknowledged. U2 must still be re-sent after U1, or the older value of the key lands last."""
    from aiokafka.errors import KafkaConnectionError

    loop = asyncio.get_running_loop()
    f1, f2 = loop.create_future(), loop.create_future()
    kafka = ScriptedKafka([f1, f2])
    spool = Spool(":memory:")
    pipeline = Pipeline(kafka, spool, "p.")
    emit = pipeline.emitter("s")
    old = Event(topic="t", type="x.t.E", source="s", key="s:agent", data={"v": "old"})
    new = Event(topic="t", type="x.t.E", source="s", key="s:agent", data={"v": "new"})
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await emit.push([old])
        await emit.push([new])
        with anyio.fail_after(3):
            while len(kafka.log) < 2:
                await anyio.sleep(0.01)
        f1.set_exception(KafkaConnectionError("broker gone"))  # U1 spooled, then drained
        with anyio.fail_after(3):
            while len(kafka.log) < 3 or spool.count:
                await anyio.sleep(0.01)
        f2.set_result(None)  # U2's original send is acknowledged only now
        with anyio.fail_after(3):
            while len(kafka.log) < 4 or spool.count:
                await anyio.sleep(0.01)
        await emit.aclose()
    delivered = [
        orjson.loads(r.value)["v"] for f, records in kafka.log if f.exception() is None for r in records
    ]
    assert delivered[-1] == "new"
    assert delivered == ["new", "old", "new"]


def _queue_depth() -> float:
    return float(REGISTRY.get_sample_value("streamd_queue_depth_events") or 0.0)


async def test_queue_depth_counts_the_events_waiting_not_the_batches() -> None:
    pipeline = Pipeline(AckingKafka(), Spool(":memory:"), "p.")
    emit = pipeline.emitter("s")
    before = _queue_depth()
    await emit.push(_events(3))
    await emit.push(_events(2))
    assert _queue_depth() == before + 5  # two batches, five events
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await emit.aclose()  # the publish loop takes both batches, then ends
    assert _queue_depth() == before


async def test_units_in_flight_when_kafka_goes_silent_are_spooled_together() -> None:
    """Kafka silent: the units behind the first do not each wait spool_after again in turn."""
    spool = Spool(":memory:")
    pipeline = Pipeline(StuckKafka(), spool, "p.", delivery_timeout=30, spool_after=0.2, coalesce=1)
    emit = pipeline.emitter("s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        for i in range(40):
            await emit.push(_events(1, unit=i))  # 40 units in flight
        with anyio.fail_after(4):  # ~0.2 s; one after the other it would take 40 x 0.2 s
            while spool.count < 40:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    await emit.aclose()


async def test_a_record_over_the_limit_only_with_its_headers_is_dead_lettered() -> None:
    """The size check counts the key twice (it is ``ce_subject`` too) and every header: a value
    under ``max_record_bytes`` whose record is not goes to the dead-letter topic."""
    kafka = AckingKafka()
    pipeline = Pipeline(kafka, Spool(":memory:"), "p.", max_record_bytes=10_000)
    long_key = "s:" + "k" * 700
    fits = Event(topic="t", type="x.t.E", source="s", key="s:1", data={"v": "x" * 8_000})
    over = Event(topic="t", type="x.t.E", source="s", key=long_key, data={"v": "x" * 8_500})
    deviating = Event(topic="t", type="x.t.E", source="s", key="s:2", data={"v": "x" * 9_000},
                      deviations=("$." + "d" * 500,) * 2)  # fmt: skip
    emit = pipeline.emitter("s")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await emit([fits, over, deviating])
        await emit.aclose()
    assert len(orjson.loads(kafka.sent[0].value)["v"]) == 8_000
    assert [r.topic for r in kafka.sent] == ["p.t", "p.deadletter", "p.deadletter"]
    assert [orjson.loads(r.value)["error_type"] for r in kafka.sent[1:]] == ["record_too_large"] * 2

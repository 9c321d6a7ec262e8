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


async def test_durable_emit_returns_spooled_after_the_delivery_timeout() -> None:
    spool = Spool(":memory:")
    pipeline = Pipeline(StuckKafka(), spool, "p.", delivery_timeout=0.2)
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

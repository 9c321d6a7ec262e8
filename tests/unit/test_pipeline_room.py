"""The pipeline's room (pipeline rule 1): the events it holds in memory, queued or taken and not yet
acknowledged or spooled, are bounded; a source waits for room, and gets it back as units finish."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

from streamd.errors import PublishError
from streamd.events import Event
from streamd.publish.encoding import Record
from streamd.publish.pipeline import Delivery, Pipeline
from streamd.publish.spool import Spool
from streamd.publish.units import Room
from streamd.telemetry import QUEUE_DEPTH

pytestmark = pytest.mark.anyio


class HeldKafka:
    """Takes every record and answers only when told to (``acknowledge``), or refuses (``down``)."""

    def __init__(self) -> None:
        self.futures: list[asyncio.Future[Any]] = []
        self.sent: list[Record] = []
        self.down = False

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        return None

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        if self.down:
            raise PublishError("kafka is down")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        self.sent.extend(records)
        return [(future, list(records))]

    def acknowledge(self) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(None)


def orjson_i(record: Record) -> int:
    return int(orjson.loads(record.value)["i"])


def _events(n: int, start: int = 0) -> list[Event]:
    return [
        Event(topic="o2g.agent", type="o2g.agent.X", source="src-room", key=f"src-room:{i}", data={"i": i})
        for i in range(start, start + n)
    ]


async def _settle() -> None:
    for _ in range(20):
        await anyio.lowlevel.checkpoint()


async def test_a_source_waits_for_room_and_gets_it_once_kafka_answers() -> None:
    kafka = HeldKafka()
    pipeline = Pipeline(kafka, Spool(":memory:"), "p.", max_buffered=100)
    emit = pipeline.emitter("src-room")
    pushed: list[int] = []

    async def push_all() -> None:
        for i in range(4):
            await emit.push(_events(40, 40 * i))
            pushed.append(i)

    depth_before = QUEUE_DEPTH._value.get()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        tg.start_soon(push_all)
        with anyio.fail_after(5):
            while len(pushed) < 3:
                await anyio.sleep(0.01)
        await _settle()
        # 80 events held: the third batch was let in (room is checked before a batch, not after),
        # the fourth waits, counted in the queue depth meanwhile
        assert pushed == [0, 1, 2]
        assert pipeline.room.used == 120
        assert QUEUE_DEPTH._value.get() - depth_before == 40
        kafka.acknowledge()
        with anyio.fail_after(5):
            while len(pushed) < 4:
                await anyio.sleep(0.01)
            while pipeline.room.used:
                kafka.acknowledge()
                await anyio.sleep(0.01)
        await emit.aclose()
    assert [orjson_i(r) for r in kafka.sent] == list(range(160))
    assert QUEUE_DEPTH._value.get() == depth_before


async def test_a_batch_larger_than_the_room_is_let_in_when_nothing_is_held() -> None:
    kafka = HeldKafka()
    pipeline = Pipeline(kafka, Spool(":memory:"), "p.", max_buffered=10)
    emit = pipeline.emitter("src-room")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            await emit.push(_events(50))  # never waits forever for room it can never have
        assert pipeline.room.used == 50
        with anyio.fail_after(5):
            while pipeline.room.used:
                kafka.acknowledge()  # what has been sent so far
                await anyio.sleep(0.01)
        await emit.aclose()
    assert len(kafka.sent) == 50


async def test_units_spooled_in_an_outage_give_their_room_back() -> None:
    """Kafka down: units go to the spool, and a source pushing far more than the room goes on."""
    kafka = HeldKafka()
    kafka.down = True
    spool = Spool(":memory:")
    pipeline = Pipeline(kafka, spool, "p.", max_buffered=20)
    emit = pipeline.emitter("src-room")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(10):
            for i in range(10):
                await emit.push(_events(15, 15 * i))
            await emit(_events(1, 150))  # durable: once everything before it is spooled too
        assert spool.count == 151
        assert pipeline.room.used == 0
        await emit.aclose()
        tg.cancel_scope.cancel()
    spool.close()


async def test_a_later_task_never_overtakes_one_waiting_for_room() -> None:
    """Room rule 3: the chunk pusher waits with an older state of an agent; another task of the
    same source (a directory refresh) emits a newer one later: Kafka gets the older one first."""
    kafka = HeldKafka()
    woken = anyio.Event()
    pipeline = Pipeline(kafka, Spool(":memory:"), "p.", max_buffered=1, listeners=[lambda _: woken.set()])
    emit = pipeline.emitter("src-room")

    def state(v: int) -> list[Event]:
        return [
            Event(topic="o2g.agent", type="o2g.agent.X", source="src-room", key="src-room:a", data={"i": v})
        ]

    async def older() -> None:
        await emit.push(state(1))

    async def newer() -> None:
        await woken.wait()  # woken when the room is given back, before the waiting push runs
        await emit(state(2))

    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await emit.push(state(0))  # fills the room
        tg.start_soon(older)
        await _settle()
        tg.start_soon(newer)
        await _settle()
        with anyio.fail_after(5):
            while len(kafka.sent) < 3:
                kafka.acknowledge()
                await anyio.sleep(0.01)
            while pipeline.room.used:
                kafka.acknowledge()
                await anyio.sleep(0.01)
        await emit.aclose()
    assert [orjson_i(r) for r in kafka.sent] == [0, 1, 2]


async def test_a_push_cancelled_while_waiting_for_room_takes_none() -> None:
    kafka = HeldKafka()
    pipeline = Pipeline(kafka, Spool(":memory:"), "p.", max_buffered=10)
    emit = pipeline.emitter("src-room")
    depth_before = QUEUE_DEPTH._value.get()
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        await emit.push(_events(10))
        with anyio.move_on_after(0.2) as waited:
            await emit.push(_events(5, 10))
        assert waited.cancelled_caught
        assert pipeline.room.used == 10
        await _settle()
        assert QUEUE_DEPTH._value.get() == depth_before  # the first batch was taken, the second undone
        with anyio.fail_after(5):
            while pipeline.room.used:
                kafka.acknowledge()
                await anyio.sleep(0.01)
        await emit.push(_events(5, 20))  # room again
        with anyio.fail_after(5):
            while pipeline.room.used:
                kafka.acknowledge()
                await anyio.sleep(0.01)
        await emit.aclose()
    assert [orjson_i(r) for r in kafka.sent] == [*range(10), *range(20, 25)]


async def test_a_closed_room_stops_no_one() -> None:
    room = Room(1)
    sent: list[int] = []

    async def send(n: int) -> None:
        sent.append(n)

    await room.queue(5, partial(send, 5))
    async with anyio.create_task_group() as tg:
        tg.start_soon(room.queue, 1, partial(send, 1))
        await _settle()
        assert sent == [5]
        room.close()  # the pipeline stopped: queueing fails on the closed stream instead
    assert sent == [5, 1]
    assert room.used == 6


def test_a_room_holds_at_least_one_event() -> None:
    with pytest.raises(ValueError, match="at least one event, not 0"):
        Room(0)

"""The pipeline lets events go once they are records, unless a listener needs them (emit rule 6)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from streamd.events import Event
from streamd.publish.encoding import Record, encode
from streamd.publish.pipeline import Batch, Delivery, Pipeline, SourceEmit, WriteAhead
from streamd.publish.spool import Spool
from streamd.publish.units import Unit
from streamd.telemetry import EVENTS_PUBLISHED, QUEUE_DEPTH

pytestmark = pytest.mark.anyio


class WatchingKafka:
    """Acknowledges every record at once; notes what the pipeline's open batches hold when sent."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.sent: list[Record] = []
        self.events_when_sent: list[Sequence[Event]] = []

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        return None

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        assert self.pipeline is not None
        self.events_when_sent += [b.events for u in self.pipeline._open for b in u.batches]
        self.sent.extend(records)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return [(future, list(records))]


def _events(source: str, n: int) -> list[Event]:
    return [
        Event(topic="o2g.agent", type="o2g.agent.X", source=source, key=f"{source}:{i}", data={"i": i})
        for i in range(n)
    ]


async def _publish(source: str, events: list[Event], listeners: Sequence[Any] = ()) -> WatchingKafka:
    kafka = WatchingKafka()
    pipeline = Pipeline(kafka, Spool(":memory:"), "p.", listeners=listeners)
    kafka.pipeline = pipeline
    emit = pipeline.emitter(source)
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(5):
            await emit(events)
        await emit.aclose()
    return kafka


async def test_without_listeners_events_are_let_go_once_encoded_and_still_counted() -> None:
    published = EVENTS_PUBLISHED.labels("src-release", "o2g.agent")
    before = published._value.get()
    kafka = await _publish("src-release", _events("src-release", 3))
    assert kafka.events_when_sent == [()]  # released before the records went to Kafka
    assert [r.key for r in kafka.sent] == [b"src-release:0", b"src-release:1", b"src-release:2"]
    assert published._value.get() - before == 3  # counted per topic before the events went


async def test_a_listener_gets_every_acknowledged_event() -> None:
    heard: list[Event] = []
    events = _events("src-listen", 3)
    kafka = await _publish("src-listen", events, listeners=[heard.extend])
    assert heard == events
    assert [len(e) for e in kafka.events_when_sent] == [3]


def test_release_counts_topics_first() -> None:
    batch = Batch("s", _events("s", 2), 0.0)
    batch.release()
    assert batch.events == ()
    assert batch.per_topic() == {"o2g.agent": 2}


async def _push_written_ahead(listeners: Sequence[Any] | None) -> Batch:
    """Push 3 events through a SourceEmit with a write-ahead; the batch as it sits in the queue."""
    send, receive = anyio.create_memory_object_stream[Batch](10)
    ahead = WriteAhead(Spool(":memory:"), lambda event, source: encode(event, "p."), 0.01)
    emit = SourceEmit("src-ahead", send, ahead)
    if listeners is not None:
        emit.listeners = listeners
    depth = QUEUE_DEPTH._value.get()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ahead.run)
        with anyio.fail_after(5):
            await emit.push(_events("src-ahead", 3))
        tg.cancel_scope.cancel()
    async with receive:
        batch = receive.receive_nowait()
    await emit.aclose()
    assert QUEUE_DEPTH._value.get() - depth == 3  # queued, counted as events
    assert len(batch.records) == batch.count == 3
    assert batch.per_topic() == {"o2g.agent": 3}
    return batch


async def test_a_push_written_ahead_lets_its_events_go_once_queued_without_listeners() -> None:
    batch = await _push_written_ahead([])
    assert batch.events == ()
    QUEUE_DEPTH.dec(3)


@pytest.mark.parametrize("listeners", [None, [print]], ids=["unknown", "a listener"])
async def test_a_push_keeps_its_events_for_listeners_or_when_they_are_unknown(listeners: Any) -> None:
    batch = await _push_written_ahead(listeners)
    assert len(batch.events) == 3
    QUEUE_DEPTH.dec(3)


async def test_a_batch_already_acknowledged_or_spooled_is_never_spooled_again() -> None:
    """Cancelled part-way through spooling a unit (the shutdown grace ran out), or after its
    acknowledgement but before it was marked finished: the leftovers spool only what is still
    unsettled, so nothing lands in the spool twice."""
    spool = Spool(":memory:")
    pipeline = Pipeline(WatchingKafka(), spool, "p.")
    pushes = [Batch("pbx", events, 0.0) for events in (_events("pbx", 3), _events("pbx", 2))]
    for batch in pushes:
        batch.records = [encode(e, "p.") for e in batch.events]
    await pipeline._spool_unit(Unit([pushes[0]]))  # spooled; then the second unit is acknowledged
    pipeline._acked(pushes[1])
    await pipeline._spool_unit(Unit(pushes))  # what _spool_leftovers does with unfinished units
    assert spool.count == 3
    for stream in (pipeline._send, pipeline._receive, pipeline._inflight_send, pipeline._inflight_receive):
        stream.close()  # never run: its streams closed here
    spool.close()

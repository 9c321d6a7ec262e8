"""What travels through the pipeline: batches of events, units sent together, and the emitter
each source gets (see :mod:`streamd.publish.pipeline` for the rules)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from streamd import telemetry as t
from streamd.errors import PublishError
from streamd.events import DEADLETTER_TOPIC, DeadLetter, Event
from streamd.publish.encoding import Record

if TYPE_CHECKING:
    from streamd.publish.write_ahead import WriteAhead

Delivery = tuple["asyncio.Future[Any]", list[Record]]
"""One per-partition batch handed to the producer: its future and the records it carries."""


class Sender(Protocol):
    """What the pipeline needs from a producer (:class:`~streamd.publish.kafka.KafkaPublisher`)."""

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]: ...

    async def ensure_topics(self, topics: Sequence[str]) -> None: ...


@dataclass(slots=True)
class Batch:
    """Events from one ``emit`` call; ``done`` is set once they are durable."""

    source: str
    events: Sequence[Event]
    created: float
    done: anyio.Event | None = None
    error: PublishError | None = None
    records: list[Record] = field(default_factory=list)
    held: anyio.Event | None = None
    """Push batches only: set once the batch is written ahead, acknowledged or spooled."""
    settled: bool = False
    """Acknowledged by Kafka or in the spool: the write-ahead copy is no longer needed."""
    written: int | None = None
    """The write-ahead row of this batch (:meth:`~streamd.publish.spool.Spool.write_ahead`),
    numbered by the commit that takes it, before it is written (a batch being spooled keeps its
    number, unwritten, until its append ends); None if no commit took it, or the commit failed."""
    spooling: bool = False
    """Being spooled (:meth:`~streamd.publish.write_ahead.WriteAhead.spooling`): no commit writes it."""
    topics: Counter[str] | None = None
    """Events per topic (:meth:`per_topic`)."""
    count: int = field(init=False)
    """How many events (also once :meth:`release` let them go)."""

    def __post_init__(self) -> None:
        self.count = len(self.events)

    def per_topic(self) -> Counter[str]:
        """Events per topic, counted once for the received, published and failed metrics."""
        if self.topics is None:
            self.topics = Counter(map(topic_of, self.events))
        return self.topics

    def release(self) -> None:
        """Let the events go once they are records (:mod:`~streamd.publish.emit` rule 6): the
        records are what is sent, spooled and counted (per topic, counted first) from here on."""
        self.per_topic()
        self.events = ()


topic_of = attrgetter("topic")
"""The ``topic`` of an event or a record (``map`` runs it in C)."""


@dataclass(slots=True)
class Unit:
    """Batches published together; ``deliveries`` is None when they must go to the spool."""

    batches: list[Batch]
    deliveries: list[Delivery] | None = None
    deadline: float = float("inf")
    sent: float = 0.0  # when it was handed to the producer (see ``delivery.settle``'s ``quiet``)
    spooled_before: int = 0  # units spooled before this one was sent (see ``_finish``)
    finished: bool = False

    @property
    def records(self) -> list[Record]:
        return list(chain.from_iterable(b.records for b in self.batches))


Listener = Callable[[Sequence[Event]], None]


class Room:
    """How many events the pipeline holds in memory: queued by the sources, or taken by the publish
    loop and not yet acknowledged or spooled (:mod:`~streamd.publish.pipeline` rule 1).

    Rules:

    1. A source takes room for each batch before queueing it and waits while the pipeline holds
       ``limit`` events or more; the ack loop gives the room back once the batch's unit is
       finished (acknowledged or spooled). A stopped pipeline closes its room instead.
    2. A batch is let in whenever the pipeline holds fewer than ``limit`` (however large it is),
       so one batch bigger than ``limit`` never waits forever: what is queued or in flight is at
       most ``limit`` plus one batch. Not counted: the batch each waiting task holds (a push
       written ahead is encoded before it waits), and a batch the write-ahead still lists after
       its unit gave its room back (until the next group commit forgets it).
    3. Batches are queued in the order their sources asked (:meth:`queue`, a fair lock around the
       wait for room and the queueing): a task that comes later never overtakes a waiting one,
       as a blocked send on the bounded stream never did. Two tasks of one source may publish the
       same key (an O2G chunk push and a directory refresh of the same agent): the older state
       must stay first.
    """

    __slots__ = ("_freed", "_order", "closed", "limit", "used")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the pipeline's room must hold at least one event, not {limit}")
        self.limit = limit
        self.used = 0
        self.closed = False
        self._freed: anyio.Event | None = None
        self._order = anyio.Lock(fast_acquire=True)

    async def queue(self, n: int, send: Callable[[], Awaitable[None]]) -> None:
        """Wait for room for ``n`` events, then ``send()`` (queue the batch), in arrival order
        (rule 3); a failed or cancelled ``send`` gives the room back."""
        async with self._order:
            await self._take(n)
            try:
                await send()
            except BaseException:
                self.give(n)
                raise

    async def _take(self, n: int) -> None:
        while self.used >= self.limit and not self.closed:
            if self._freed is None:
                self._freed = anyio.Event()
            await self._freed.wait()
        self.used += n

    def give(self, n: int) -> None:
        """``n`` events left the pipeline's memory: wake the source waiting for room."""
        self.used -= n
        if self.used < self.limit:
            self._wake()

    def close(self) -> None:
        """The pipeline stopped: nothing waits for room any more (queueing then fails as it does on
        a closed stream)."""
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._freed is not None:
            self._freed.set()
            self._freed = None


class SourceEmit:
    """The :class:`~streamd.sources.base.Emit` handed to one source (owns a send clone)."""

    listeners: Sequence[Listener] | None = None
    """The pipeline's listeners (:meth:`~streamd.publish.pipeline.Pipeline.emitter` shares its
    list); when it is empty, a push batch written ahead lets its events go once queued (they are
    records already). None (unknown): events are kept until acknowledged."""
    room: Room | None = None
    """The pipeline's :class:`Room` (:meth:`~streamd.publish.pipeline.Pipeline.emitter` sets it):
    a batch waits for room before it is queued. None: only the queue's bound in batches applies."""

    def __init__(
        self, source: str, stream: MemoryObjectSendStream[Batch], ahead: WriteAhead | None = None
    ) -> None:
        self.source = source
        self._stream = stream
        self._ahead = ahead

    async def __call__(self, events: Sequence[Event]) -> None:
        """Queue and wait until durable.

        Raises:
            PublishError: neither Kafka nor the spool took the events.
        """
        if not events:
            return
        batch = Batch(self.source, events, anyio.current_time(), anyio.Event())
        await self._send(batch)
        assert batch.done is not None
        await batch.done.wait()
        if batch.error is not None:
            raise batch.error

    async def push(self, events: Sequence[Event]) -> None:
        """Queue without waiting for Kafka; with a write-ahead, return once the events are
        written ahead (group commit), acknowledged or spooled, whichever comes first."""
        if not events:
            return
        if self._ahead is None:
            await self._send(Batch(self.source, events, anyio.current_time()))
            return
        batch = Batch(self.source, events, anyio.current_time(), held=anyio.Event())
        del events  # only the batch holds them from here: released below, not kept while held
        batch.records = self._ahead.encode(batch)
        await self._send(batch)
        if self.listeners is not None and not self.listeners:
            batch.release()  # emit rule 6, sooner: the queue holds records only
        await self._ahead.hold(batch)

    async def _send(self, batch: Batch) -> None:
        counts = batch.per_topic()
        for topic, n in counts.items():
            t.EVENTS_RECEIVED.labels(self.source, topic).inc(n)
        if DEADLETTER_TOPIC in counts:  # every source's dead letters are counted here, once
            for e in batch.events:
                if isinstance(e.data, DeadLetter):
                    t.EVENTS_DEADLETTERED.labels(self.source, e.data.stage, e.data.error_type).inc()
        t.QUEUE_DEPTH.inc(batch.count)  # until the publish loop takes them (also while blocked)
        try:
            if self.room is None:
                await self._stream.send(batch)
            else:
                await self.room.queue(batch.count, partial(self._stream.send, batch))
        except BaseException:
            t.QUEUE_DEPTH.dec(batch.count)
            raise

    async def aclose(self) -> None:
        """Close this source's clone of the stream."""
        await self._stream.aclose()

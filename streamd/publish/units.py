"""What travels through the pipeline: batches of events, units sent together, and the emitter
each source gets (see :mod:`streamd.publish.pipeline` for the rules)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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


class SourceEmit:
    """The :class:`~streamd.sources.base.Emit` handed to one source (owns a send clone)."""

    listeners: Sequence[Listener] | None = None
    """The pipeline's listeners (:meth:`~streamd.publish.pipeline.Pipeline.emitter` shares its
    list); when it is empty, a push batch written ahead lets its events go once queued (they are
    records already). None (unknown): events are kept until acknowledged."""

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
            await self._stream.send(batch)
        except BaseException:
            t.QUEUE_DEPTH.dec(batch.count)
            raise

    async def aclose(self) -> None:
        """Close this source's clone of the stream."""
        await self._stream.aclose()

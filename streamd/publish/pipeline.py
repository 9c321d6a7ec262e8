"""The pipeline between sources and Kafka: bounded queue, publisher, acknowledgements, spool.

::

    source --emit--> [bounded stream of Batch] --publisher--> producer.send --> [in-flight] --acker
                                                   |  spool not empty / send failed        |  failed
                                                   +--------------> Spool <----------------+
                                                                      +--drainer--> producer.send

Rules:

1. ``await emit(events)`` returns once every event is acknowledged by Kafka or written to the
   spool (durable); ``await emit.push(events)`` returns once queued. A full queue blocks the
   source: that is the backpressure.
2. While the spool holds anything, new records go behind it, so per-key order is kept.
3. The publisher ends when every source's send clone is closed; then the in-flight records are
   acknowledged, and the caller flushes/stops the producer within the shutdown grace.
4. Metrics are counted per batch, not per event (the hot path).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.abc import ObjectReceiveStream, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from streamd import telemetry as t
from streamd.errors import PublishError
from streamd.events import Event
from streamd.publish.encoding import Record, encode
from streamd.publish.spool import Spool

log = logging.getLogger("streamd.pipeline")


class Sender(Protocol):
    """What the pipeline needs from a producer (:class:`~streamd.publish.kafka.KafkaPublisher`)."""

    async def send_many(self, records: Sequence[Record]) -> list[asyncio.Future[Any]]: ...

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


Listener = Callable[[Sequence[Event]], None]
Unit = tuple[list["Batch"], list[asyncio.Future[Any]]]
"""Batches sent together, and the delivery futures that cover all of their records."""


class SourceEmit:
    """The :class:`~streamd.sources.base.Emit` handed to one source (owns a send clone)."""

    def __init__(self, source: str, stream: MemoryObjectSendStream[Batch]) -> None:
        self.source = source
        self._stream = stream

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
        """Queue without waiting for the acknowledgement."""
        if events:
            await self._send(Batch(self.source, events, anyio.current_time()))

    async def _send(self, batch: Batch) -> None:
        counts = Counter(e.topic for e in batch.events)
        for topic, n in counts.items():
            t.EVENTS_RECEIVED.labels(self.source, topic).inc(n)
        await self._stream.send(batch)

    async def aclose(self) -> None:
        """Close this source's clone of the stream."""
        await self._stream.aclose()


class Pipeline:
    """Owns the bounded stream, the publisher loop, the acker and the spool drainer."""

    def __init__(
        self,
        sender: Sender,
        spool: Spool,
        prefix: str,
        *,
        queue_size: int = 1024,
        listeners: Sequence[Listener] = (),
        coalesce: int = 10_000,
    ) -> None:
        self.sender = sender
        self.spool = spool
        self.prefix = prefix
        self.listeners = list(listeners)
        self.coalesce = coalesce
        self._send, self._receive = anyio.create_memory_object_stream[Batch](queue_size)
        self._inflight_send, self._inflight_receive = anyio.create_memory_object_stream[Unit](queue_size)
        self._spool_wakeup = anyio.Event()
        t.SPOOL_DEPTH.set(spool.count)

    def emitter(self, source: str) -> SourceEmit:
        """A new :class:`SourceEmit` for ``source`` (call before :meth:`run` closes the original)."""
        return SourceEmit(source, self._send.clone())

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish until every emitter is closed and everything queued is durable."""
        await self._send.aclose()  # only the clones remain: the loop ends when sources are done
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._ack_loop, self._inflight_receive)
            drain_scope = anyio.CancelScope()
            tg.start_soon(self._drain_loop, drain_scope)
            task_status.started()
            await self._publish_loop(self._receive, self._inflight_send)
            drain_scope.cancel()

    # -- publisher ------------------------------------------------------------------------------

    async def _publish_loop(
        self, receive: MemoryObjectReceiveStream[Batch], inflight: MemoryObjectSendStream[Unit]
    ) -> None:
        async with receive, inflight:
            async for first in receive:
                batches = self._coalesce(first, receive)
                t.QUEUE_DEPTH.set(receive.statistics().current_buffer_used)
                records: list[Record] = []
                for batch in batches:
                    batch.records = [encode(e, self.prefix) for e in batch.events]
                    records.extend(batch.records)
                if self.spool.count:
                    await self._spool_all(batches)
                    continue
                futures = await self._send_records(records)
                if futures is None:
                    await self._spool_all(batches)
                else:
                    await inflight.send((batches, futures))

    def _coalesce(self, first: Batch, receive: MemoryObjectReceiveStream[Batch]) -> list[Batch]:
        """The first batch plus whatever else is already queued, up to ``coalesce`` events: under
        load, sends grow into large per-partition batches; when idle, nothing waits."""
        batches, count = [first], len(first.events)
        while count < self.coalesce:
            try:
                batch = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            batches.append(batch)
            count += len(batch.events)
        return batches

    async def _send_records(self, records: Sequence[Record]) -> list[asyncio.Future[Any]] | None:
        try:
            await self.sender.ensure_topics(sorted({r.topic for r in records}))
            return await self.sender.send_many(records)
        except PublishError as exc:
            log.warning("kafka send failed, spooling: %s", exc)
            return None

    async def _ack_loop(self, inflight: ObjectReceiveStream[Unit]) -> None:
        async with inflight:
            async for batches, futures in inflight:
                failed = await _wait_all(futures)
                if failed is None:
                    for batch in batches:
                        self._acked(batch)
                    continue
                count = sum(len(b.records) for b in batches)
                log.warning("kafka did not acknowledge %d events (%s); spooling", count, failed)
                for batch in batches:
                    for topic, n in Counter(e.topic for e in batch.events).items():
                        t.EVENTS_FAILED.labels(batch.source, topic).inc(n)
                await self._spool_all(batches)

    def _acked(self, batch: Batch) -> None:
        counts = Counter(e.topic for e in batch.events)
        for topic, n in counts.items():
            t.EVENTS_PUBLISHED.labels(batch.source, topic).inc(n)
        t.PUBLISH_LATENCY.observe(anyio.current_time() - batch.created)
        for listener in self.listeners:
            listener(batch.events)
        if batch.done is not None:
            batch.done.set()

    # -- spool ----------------------------------------------------------------------------------

    async def _spool_all(self, batches: Sequence[Batch]) -> None:
        for batch in batches:
            await self._to_spool(batch)

    async def _to_spool(self, batch: Batch) -> None:
        try:
            await anyio.to_thread.run_sync(self.spool.append, batch.records)
        except PublishError as exc:
            log.error("events lost: %s", exc)
            t.count_error(batch.source, "publish", "spool_full", len(batch.events))
            batch.error = exc
        else:
            for topic, n in Counter(r.topic for r in batch.records).items():
                t.EVENTS_SPOOLED.labels(topic).inc(n)
            t.SPOOL_DEPTH.set(self.spool.count)
            self._spool_wakeup.set()
        if batch.done is not None:
            batch.done.set()

    async def _drain_loop(self, scope: anyio.CancelScope, retry_every: float = 1.0) -> None:
        with scope:
            while True:
                if not self.spool.count:
                    await self._spool_wakeup.wait()
                    self._spool_wakeup = anyio.Event()
                    continue
                if not await self.drain_once():
                    await anyio.sleep(retry_every)

    async def drain_once(self, limit: int = 500) -> bool:
        """Send the oldest spooled records; True when they were all acknowledged."""
        rows = await anyio.to_thread.run_sync(self.spool.peek, limit)
        if not rows:
            return True
        records = [r for _, r in rows]
        futures = await self._send_records(records)
        if futures is None or await _wait_all(futures) is not None:
            return False
        await anyio.to_thread.run_sync(self.spool.delete_through, rows[-1][0], records)
        t.SPOOL_DEPTH.set(self.spool.count)
        if not self.spool.count:
            log.info("outage spool drained; publishing directly again")
        return True


async def _wait_all(futures: Sequence[asyncio.Future[Any]]) -> str | None:
    """Wait for every delivery future; the first failure's description, or None."""
    failure: str | None = None
    for future in futures:
        try:
            await future
        except Exception as exc:  # aiokafka delivery errors arrive here; each is reported
            failure = failure or f"{type(exc).__name__}: {exc}"
    return failure

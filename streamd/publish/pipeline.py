"""The pipeline between sources and Kafka: bounded queue, publisher, acknowledgements, spool.

::

    source --emit--> [bounded stream of Batch] --publish loop--> send_many (per-partition batches)
                                                      |                      |
                                                      v                      v
                                              [in-flight Units, in order] --ack loop--> acked
                                                                             |  failed / spool busy
                                                                             v
                                                    Kafka <--drain loop-- SQLite spool

Rules:

1. ``await emit(events)`` returns once every event is acknowledged by Kafka or written to the
   spool (durable); ``await emit.push(events)`` returns once queued. A full queue blocks the
   source: that is the backpressure.
2. The ack loop is the only writer to the spool and handles units in the order they were
   published. While the spool holds anything, every later unit is spooled too, even one Kafka
   acknowledged (a harmless duplicate), so the newest value of a key is always written last and
   compacted topics end right after an outage.
3. A record Kafka refuses for good (too large, not authorised, invalid topic) is never retried:
   it goes to the dead-letter topic, so one poisoned record cannot block the spool.
4. When the pipeline is cancelled (shutdown grace over, fatal error) everything it has taken
   but not finished is spooled, shielded: an accepted event is in Kafka or in the spool.
5. Metrics are counted per batch, not per event (the hot path).
6. Records are made by ``encode`` (:func:`~streamd.publish.encoding.encode`, or Confluent's wire
   format: :mod:`streamd.publish.registry`). With ``tracing`` (:mod:`streamd.tracing`) each unit
   gets its publish span(s) and trace headers when it is taken, ended when it is finished.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream

from streamd import telemetry as t
from streamd.errors import PublishError
from streamd.events import DEADLETTER_TOPIC, DeadLetter, Event
from streamd.publish.delivery import settle, source_of
from streamd.publish.encoding import Encode, Record, encode
from streamd.publish.spool import Spool
from streamd.publish.units import Batch, Delivery, Listener, Sender, SourceEmit, Unit
from streamd.publish.write_ahead import WriteAhead
from streamd.runtime import Connected, Job, Policy, run_job
from streamd.telemetry import Component, ComponentState

if TYPE_CHECKING:
    from streamd.tracing import Tracing

log = logging.getLogger("streamd.pipeline")

__all__ = ["Batch", "Delivery", "Listener", "Pipeline", "Sender", "SourceEmit", "Unit", "WriteAhead"]


class Pipeline:
    """Owns the bounded stream, the publish loop, the ack loop and the spool drain loop."""

    def __init__(
        self,
        sender: Sender,
        spool: Spool,
        prefix: str,
        *,
        queue_size: int = 1024,
        listeners: Sequence[Listener] = (),
        coalesce: int = 10_000,
        max_record_bytes: int = 1_000_000,
        delivery_timeout: float = 30.0,
        spool_after: float = 2.0,
        write_ahead: float | None = None,
        component: Component | None = None,
        encode: Encode = encode,
        tracing: Tracing | None = None,
    ) -> None:
        self.sender = sender
        self.encode = encode
        self.tracing = tracing
        self.spool = spool
        self.prefix = prefix
        self.listeners = list(listeners)
        self.coalesce = coalesce
        self.max_record_bytes = max_record_bytes
        self.delivery_timeout = delivery_timeout
        self.spool_after = spool_after
        self.last_ack = anyio.current_time() if _in_loop() else 0.0  # when Kafka last acknowledged anything
        self.component = component
        self._outage_logged = False
        self._refused: list[int] | None = None  # while the spool refuses: [refused, lost] events
        self._send, self._receive = anyio.create_memory_object_stream[Batch](queue_size)
        self._inflight_send, self._inflight_receive = anyio.create_memory_object_stream[Unit](queue_size)
        self._open: list[Unit] = []
        self._spooled_units = 0
        self._spool_wakeup = anyio.Event()
        self.ahead = WriteAhead(spool, self._encode, write_ahead) if write_ahead is not None else None
        t.SPOOL_DEPTH.set(spool.count)
        t.SPOOL_BYTES.set(spool.disk_bytes())

    def emitter(self, source: str) -> SourceEmit:
        """A new :class:`SourceEmit` for ``source`` (call before :meth:`run` closes the original)."""
        if self.tracing is not None:
            return self.tracing.emitter(source, self._send.clone(), self.ahead)
        return SourceEmit(source, self._send.clone(), self.ahead)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish until every emitter is closed and everything queued is durable."""
        await self._send.aclose()  # only the clones remain: the loop ends when sources are done
        try:
            async with anyio.create_task_group() as tg:
                drain_scope, ahead_scope = anyio.CancelScope(), anyio.CancelScope()
                tg.start_soon(self._drain, drain_scope)
                if self.ahead is not None:
                    tg.start_soon(self._write_ahead_loop, ahead_scope)
                async with anyio.create_task_group() as publishing:
                    publishing.start_soon(self._ack_loop)
                    task_status.started()
                    await self._publish_loop()
                    await self._inflight_send.aclose()  # the ack loop ends once all is finished
                drain_scope.cancel()
                ahead_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._spool_leftovers()
                if self.ahead is not None:
                    await self.ahead.commit()  # forget what is now acknowledged or spooled
            self._inflight_send.close()
            self._inflight_receive.close()
            if self.tracing is not None:
                self.tracing.end_all()

    # -- publish loop ----------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        receive = self._receive
        while True:
            try:
                first = await receive.receive()
            except anyio.EndOfStream:
                return
            unit = Unit(self._coalesce(first, receive))
            self._open.append(unit)
            t.QUEUE_DEPTH.dec(sum(len(b.events) for b in unit.batches))
            for batch in unit.batches:
                if not batch.records:
                    batch.records = [self._encode(e, batch.source) for e in batch.events]
            if self.tracing is not None:
                self.tracing.start_unit(unit)
            if not self.spool.count:
                unit.sent = anyio.current_time()
                unit.deadline = unit.sent + self.delivery_timeout
                unit.spooled_before = self._spooled_units
                unit.deliveries = await self._send_records(unit.records)
            await self._inflight_send.send(unit)

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

    def _encode(self, event: Event, source: str) -> Record:
        try:
            record = self.encode(event, self.prefix)
        except (TypeError, ValueError, UnicodeError) as exc:  # orjson.JSONEncodeError is a TypeError
            error = f"{event.type} cannot be encoded: {exc}"
            return self._dead_letter(source, "encode", "unencodable", error, repr(event.data))
        size = len(record.value) + len(record.key) + sum(len(k) + len(v) for k, v in record.headers)
        if size <= self.max_record_bytes:
            return record
        error = f"{event.type} of {size} bytes exceeds kafka.max_request_size ({self.max_record_bytes})"
        return self._dead_letter(source, "publish", "record_too_large", error, record.value)

    def _dead_letter(self, source: str, stage: str, error_type: str, error: str, raw: bytes | str) -> Record:
        """A counted, logged dead letter in place of what could not be published (raw cut to 64 KiB)."""
        log.error("%s: dead-lettered: %s", source, error)
        t.count_error(source, stage, error_type)
        t.EVENTS_DEADLETTERED.labels(source, stage, error_type).inc()
        letter = DeadLetter.of(
            source=source, stage=stage, error_type=error_type, error=error, raw=raw[:65536]
        )
        return self.encode(letter.to_event(), self.prefix)

    async def _send_records(self, records: Sequence[Record]) -> list[Delivery] | None:
        try:
            await self.sender.ensure_topics(sorted({r.topic for r in records}))
            deliveries = await self.sender.send_many(records)
        except PublishError as exc:
            self._outage(f"send failed: {exc}")
            return None
        for future, _ in deliveries:
            future.add_done_callback(self._acknowledged)
        return deliveries

    def _last_ack(self) -> float:
        return self.last_ack

    def _acknowledged(self, future: asyncio.Future[Any]) -> None:
        """Kafka answered a delivery: it is not down (see ``settle``'s ``quiet``)."""
        if not future.cancelled() and future.exception() is None:
            self.last_ack = future.get_loop().time()

    # -- ack loop: the only writer to the spool, in publish order --------------------------------

    async def _ack_loop(self) -> None:
        async with self._inflight_receive as inflight:
            async for unit in inflight:
                await self._finish(unit)

    async def _finish(self, unit: Unit) -> None:
        outcome = "spooled"
        if unit.deliveries is None:
            await self._spool_unit(unit)
        else:
            retry, rejected = await settle(
                unit.deliveries,
                unit.deadline,
                quiet=self.spool_after,
                last_ack=self._last_ack,
                sent=unit.sent,
            )
            # Spool it too when an earlier unit was spooled after this one was sent: even if the
            # drain has emptied the spool meanwhile, this unit's values must land after that one's.
            behind = self.spool.count or self._spooled_units != unit.spooled_before
            if retry is not None or behind:
                if retry is not None:
                    self._outage(f"not acknowledged: {retry}")
                    for batch in unit.batches:
                        for topic, n in Counter(e.topic for e in batch.events).items():
                            t.EVENTS_FAILED.labels(batch.source, topic).inc(n)
                await self._spool_unit(unit, skip={id(r) for r, _ in rejected})
            else:
                outcome = "acknowledged"
                for batch in unit.batches:
                    self._acked(batch)
            await self._reject(rejected)
        if self.tracing is not None:
            self.tracing.end_unit(unit, outcome)
        unit.finished = True
        self._open.remove(unit)

    def _acked(self, batch: Batch) -> None:
        counts = Counter(e.topic for e in batch.events)
        for topic, n in counts.items():
            t.EVENTS_PUBLISHED.labels(batch.source, topic).inc(n)
        t.PUBLISH_LATENCY.observe(anyio.current_time() - batch.created)
        for listener in self.listeners:
            listener(batch.events)
        if batch.done is not None:
            batch.done.set()
        if self.ahead is not None and batch.held is not None:
            self.ahead.settled(batch)

    def _outage(self, detail: str) -> None:
        """Kafka is not taking events: one log line and one state change per outage, not per unit."""
        log.debug("kafka: %s; spooling", detail)
        if self.component is not None:
            if self.component.state is ComponentState.RUNNING:
                self.component.set(ComponentState.RETRYING, f"Kafka {detail.split(':')[0]}: spooling to disk")
        elif not self._outage_logged:
            log.warning("kafka %s; spooling to disk until it is back", detail)
        self._outage_logged = True

    async def _spool_unit(self, unit: Unit, skip: set[int] | frozenset[int] = frozenset()) -> None:
        for batch in unit.batches:
            if batch.done is not None and batch.done.is_set():
                continue
            records = [r for r in batch.records if id(r) not in skip]
            try:
                await anyio.to_thread.run_sync(self.spool.append, records)
                self._spooled_units += 1
            except PublishError as exc:
                self._spool_refuses(batch, len(records), exc)
                batch.error = exc
            else:
                self._spool_has_room()
                for topic, n in Counter(r.topic for r in records).items():
                    t.EVENTS_SPOOLED.labels(topic).inc(n)
                t.SPOOL_DEPTH.set(self.spool.count)
                t.SPOOL_BYTES.set(self.spool.disk_bytes())
                self._spool_wakeup.set()
                if self.ahead is not None and batch.held is not None:
                    self.ahead.settled(batch)
            if batch.done is not None:
                batch.done.set()

    def _spool_refuses(self, batch: Batch, n: int, exc: PublishError) -> None:
        """Count what the spool refused; log once when it starts refusing, once at the first loss.

        A durable caller (``await emit``: webhooks, pollers) gets the error and retries, so it
        loses nothing (``spool_refused``); a push batch that cannot be spooled is lost
        (``spool_failed``).
        """
        lost = batch.done is None
        t.count_error(batch.source, "publish", "spool_failed" if lost else "spool_refused", n)
        if self._refused is None:
            self._refused = [0, 0]
            log.error(
                "outage spool refuses events: %s; webhooks answer 503 and pollers retry (nothing lost),"
                " push sources' events that cannot be spooled are lost",
                exc,
            )
        if lost and not self._refused[1]:
            log.error("%s: events lost: the outage spool refuses them", batch.source)
        self._refused[int(lost)] += n

    def _spool_has_room(self) -> None:
        """The spool took events or gave space back: one line if it was refusing."""
        if self._refused is not None:
            refused, lost = self._refused
            self._refused = None
            log.info(
                "outage spool has room again: %d events were refused meanwhile (durable callers retry),"
                " %d events of push sources lost",
                refused,
                lost,
            )

    async def _reject(self, rejected: Sequence[tuple[Record, BaseException]]) -> None:
        """Records Kafka refuses for good become dead letters (spooled, so they are sent in order)."""
        letters: list[Record] = []
        for record, exc in rejected:
            source, error_type = source_of(record), type(exc).__name__
            error = f"kafka refused a record for {record.topic}: {exc}"
            letter = self._dead_letter(source, "publish", error_type, error, record.value)
            if record.topic != self.prefix + DEADLETTER_TOPIC:  # else: logged and counted, no more
                letters.append(letter)
        if letters:
            try:
                await anyio.to_thread.run_sync(self.spool.append, letters)
            except PublishError as exc:
                log.error("%d dead letters lost: %s", len(letters), exc)
            self._spool_wakeup.set()

    async def _spool_leftovers(self) -> None:
        """Spool what was taken but not finished, and what is still queued (on cancellation)."""
        units = [u for u in self._open if not u.finished]
        while True:
            try:
                batch = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            batch.records = [self._encode(e, batch.source) for e in batch.events]
            t.QUEUE_DEPTH.dec(len(batch.events))
            units.append(Unit([batch]))
        self._receive.close()
        for unit in units:
            for batch in unit.batches:
                if not batch.records:
                    batch.records = [self._encode(e, batch.source) for e in batch.events]
            await self._spool_unit(unit)
        if units:
            log.warning("stopped with %d unfinished batches: spooled for the next start", len(units))

    # -- write-ahead -----------------------------------------------------------------------------

    async def _write_ahead_loop(self, scope: anyio.CancelScope) -> None:
        assert self.ahead is not None
        with scope:
            await self.ahead.run()

    # -- drain loop ------------------------------------------------------------------------------

    async def _drain(self, scope: anyio.CancelScope, retry_every: float = 1.0) -> None:
        """The drain as a supervised job: an attempt Kafka does not take is retried every second."""
        job = Job("drain", self._drain_session, stage=None, delays=lambda: itertools.repeat(retry_every))
        with scope:
            await run_job(job, policy=Policy(), owner="spool")

    async def _drain_session(self, connected: Connected) -> None:
        """Send spooled records (oldest first) whenever the spool holds any; raise when Kafka did
        not take them (the supervisor tries again)."""
        while True:
            if not self.spool.count:
                await self._spool_wakeup.wait()
                self._spool_wakeup = anyio.Event()
                continue
            try:
                drained = await self.drain_once()
            except PublishError as exc:  # the spool database failed: try again, never crash
                log.error("outage spool: %s", exc)
                t.count_error("spool", "publish", "spool_failed")
                raise
            if not drained:
                raise PublishError("spooled events not acknowledged by Kafka yet")
            connected()

    async def drain_once(self, limit: int = 500) -> bool:
        """Send the oldest spooled records; True when none is left to retry among them."""
        rows = await anyio.to_thread.run_sync(self.spool.peek, limit)
        if not rows:
            await anyio.to_thread.run_sync(self.spool.recount)
            return True
        records = [r for _, r in rows]
        deadline = anyio.current_time() + self.delivery_timeout
        deliveries = await self._send_records(records)
        if deliveries is None:
            return False
        retry, rejected = await settle(deliveries, deadline)
        if retry is not None:
            return False
        await self._reject(rejected)
        await anyio.to_thread.run_sync(self.spool.delete_through, rows[-1][0], records)
        self._spool_has_room()
        refused = {id(r) for r, _ in rejected}
        for (source, topic), n in Counter(
            (source_of(r), r.topic.removeprefix(self.prefix)) for r in records if id(r) not in refused
        ).items():
            t.EVENTS_PUBLISHED.labels(source, topic).inc(n)
        t.SPOOL_DEPTH.set(self.spool.count)
        if not self.spool.count:
            await anyio.to_thread.run_sync(self.spool.compact)  # give the disk back
        t.SPOOL_BYTES.set(self.spool.disk_bytes())
        if not self.spool.count:
            self._outage_logged = False
            if self.component is not None:
                self.component.set(ComponentState.RUNNING)  # logs the recovery once
            else:
                log.info("outage spool drained; publishing directly again")
        return True


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True

"""The ack loop: wait for Kafka's answers to each unit (:func:`settle`), then acknowledge it to
its sources or spool it; the only writer to the spool, in publish order.

Rules (see :mod:`streamd.publish.pipeline` for the whole pipeline):

1. Units are finished in the order they were published. While the spool holds anything (or a
   unit was spooled after this one was sent), a unit is spooled even if Kafka acknowledged it.
2. Records Kafka refuses for good become dead letters, spooled so they are sent in order, before
   their unit is acknowledged or spooled: until then a push batch's write-ahead row holds them
   (after a crash in between they are sent again, refused and dead-lettered again).
3. A spool that refuses events is logged once when it starts and once when it has room again;
   durable callers get the error; push batches are counted (``spool_failed``) and, with the
   write-ahead, kept there until the next start (without it, lost).
4. On cancellation everything taken but not finished, and everything still queued, is spooled.
5. Spooling a batch (push or not) deletes its write-ahead row, and every row queued for deletion,
   in the same transaction (:meth:`~streamd.publish.write_ahead.WriteAhead.spooling`, spool rule
   5); so does spooling dead letters. No commit writes a batch while it is being spooled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from streamd import telemetry as t
from streamd.errors import PublishError
from streamd.events import DEADLETTER_TOPIC
from streamd.publish.emit import Publishing
from streamd.publish.encoding import Record
from streamd.publish.units import Batch, Delivery, Unit

log = logging.getLogger("streamd.pipeline")


async def settle(
    deliveries: Sequence[Delivery],
    deadline: float,
    *,
    quiet: float | None = None,
    last_ack: Callable[[], float] | None = None,
    sent: float = 0.0,
) -> tuple[str | None, list[tuple[Record, BaseException]]]:
    """Wait for every delivery until ``deadline``: the first retriable failure (or None), and
    the records refused for good with their error.

    The deadline is streamd's own: an idempotent aiokafka producer retries a batch forever while
    Kafka is down, so its futures alone would hold durable callers for the whole outage. With
    ``quiet`` (``kafka.spool_after``), waiting also ends once Kafka has acknowledged nothing at
    all (``last_ack()``, the time of the last acknowledgement of any delivery) for ``quiet``
    seconds since the later of that and ``sent``: Kafka has stopped acknowledging, so the caller
    spools at once, and every unit behind it that was sent before the silence began ends its wait
    at once too (not ``quiet`` each, one after the other); a Kafka that is merely busy
    (acknowledging other deliveries) gets until ``deadline``. A record delivered after its wait
    ended was spooled as well: a duplicate, never a loss.
    """
    retry: str | None = None
    rejected: list[tuple[Record, BaseException]] = []
    for future, records in deliveries:
        while not future.done():
            now = anyio.current_time()
            if now >= deadline:
                break
            until = deadline
            if quiet is not None and last_ack is not None:
                silent_until = max(last_ack(), sent) + quiet
                if now >= silent_until:
                    break  # nothing acknowledged for `quiet` seconds: Kafka stopped answering
                until = min(until, silent_until)
            with anyio.move_on_after(until - now):
                await asyncio.wait([future])  # never cancels the future itself
        if not future.done():
            future.add_done_callback(consume_late)
            retry = retry or "not acknowledged in time"
            continue
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is None:
            if future.cancelled():
                retry = retry or "delivery cancelled"
            continue
        if getattr(exc, "retriable", True) or isinstance(exc, TimeoutError | OSError):
            retry = retry or f"{type(exc).__name__}: {exc}"
        else:
            rejected.extend((r, exc) for r in records)
    return retry, rejected


def source_of(record: Record) -> str:
    """The source name a record's ``ce_source`` header names."""
    return dict(record.headers).get("ce_source", b"streamd/unknown").decode().removeprefix("streamd/")


def consume_late(future: asyncio.Future[Any]) -> None:
    """Retrieve a late future's outcome (it was spooled already), so asyncio does not warn."""
    if not future.cancelled():
        future.exception()


class Delivering(Publishing):
    """The ack loop and the spool writes (rules above)."""

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
            await self._reject(rejected)  # first: until then the unit's write-ahead rows hold them
            if retry is not None or behind:
                if retry is not None:
                    self._outage(f"not acknowledged: {retry}")
                    for batch in unit.batches:
                        for topic, n in batch.per_topic().items():
                            t.EVENTS_FAILED.labels(batch.source, topic).inc(n)
                await self._spool_unit(unit, skip={id(r) for r, _ in rejected})
            else:
                outcome = "acknowledged"
                for batch in unit.batches:
                    self._acked(batch)
        if self.tracing is not None:
            self.tracing.end_unit(unit, outcome)
        unit.finished = True
        self._open.remove(unit)
        self.room.give(sum(b.count for b in unit.batches))

    def _acked(self, batch: Batch) -> None:
        batch.settled = True
        for topic, n in batch.per_topic().items():
            t.EVENTS_PUBLISHED.labels(batch.source, topic).inc(n)
        t.PUBLISH_LATENCY.observe(anyio.current_time() - batch.created)
        for listener in self.listeners:
            listener(batch.events)
        if batch.done is not None:
            batch.done.set()
        if self.ahead is not None and batch.held is not None:
            self.ahead.settled(batch)

    async def _spool_unit(self, unit: Unit, skip: set[int] | frozenset[int] = frozenset()) -> None:
        for batch in unit.batches:
            if batch.settled or (batch.done is not None and batch.done.is_set()):
                continue  # already acknowledged or spooled: never twice (a unit cut short by a cancel)
            records = [r for r in batch.records if id(r) not in skip]
            ahead = self.ahead
            forget = ahead.spooling(batch) if ahead is not None else []  # any batch: rule 5
            try:
                disk = await self.spool.run(self._append, records, forget)
                self._spooled_units += 1
            except PublishError as exc:
                self._spool_refuses(batch, len(records), exc)
                batch.error = exc
            else:
                batch.settled = True
                self._spool_has_room()
                for topic, n in Counter(r.topic for r in records).items():
                    t.EVENTS_SPOOLED.labels(topic).inc(n)
                t.SPOOL_DEPTH.set(self.spool.count)
                t.SPOOL_BYTES.set(disk)
                self._spool_wakeup.set()
                if ahead is not None:
                    ahead.settled(batch, forget)  # those rows went with the records (spool rule 5)
            finally:
                if ahead is not None and not batch.settled:
                    ahead.refused(batch)  # refused or cancelled: a commit may write it again
            if batch.done is not None:
                batch.done.set()

    def _append(self, records: list[Record], forget: list[tuple[int, int]]) -> int:
        """Spool ``records`` and delete the ``forget`` write-ahead rows in one transaction; the
        spool's size on disk after (in a worker thread: both take the spool's lock, which the
        write-ahead may hold for a whole transaction)."""
        self.spool.append(records, forget)
        return self.spool.disk_bytes()

    def _spool_refuses(self, batch: Batch, n: int, exc: PublishError) -> None:
        """Count what the spool refused; log once when it starts refusing, once at the first loss.

        A durable caller (``await emit``: webhooks, pollers) gets the error and retries, so it
        loses nothing (``spool_refused``); a push batch that cannot be spooled (``spool_failed``)
        stays in the write-ahead until the next start, or is lost without one.
        """
        lost = batch.done is None
        t.count_error(batch.source, "publish", "spool_failed" if lost else "spool_refused", n)
        if self._refused is None:
            self._refused = [0, 0]
            log.error(
                "outage spool refuses events: %s; webhooks answer 503 and pollers retry (nothing lost),"
                " push sources' events that cannot be spooled are %s",
                exc,
                "kept in the write-ahead until the next start" if self.ahead is not None else "lost",
            )
        if lost and not self._refused[1]:
            if self.ahead is not None:
                log.error(
                    "%s: events not spooled (the spool refuses them): kept until the next start", batch.source
                )
            else:
                log.error("%s: events lost: the outage spool refuses them", batch.source)
        self._refused[int(lost)] += n

    def _spool_has_room(self) -> None:
        """The spool took events or gave space back: one line if it was refusing."""
        if self._refused is not None:
            refused, lost = self._refused
            self._refused = None
            log.info(
                "outage spool has room again: %d events were refused meanwhile (durable callers retry),"
                " %d events of push sources %s",
                refused,
                lost,
                "kept in the write-ahead until the next start" if self.ahead is not None else "lost",
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
            forget = self.ahead.forgetting() if self.ahead is not None else []  # rule 5
            try:
                await self.spool.run(self.spool.append, letters, forget)
            except PublishError as exc:
                log.error("%d dead letters lost: %s", len(letters), exc)
            else:
                if self.ahead is not None:
                    self.ahead.forgot(forget)
            self._spool_wakeup.set()

    async def _spool_leftovers(self) -> None:
        """Spool what was taken but not finished, and what is still queued (on cancellation)."""
        units = [u for u in self._open if not u.finished]
        while True:
            try:
                batch = self._receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            if not batch.records:  # a push batch written ahead has its records (and may have no events)
                batch.records = [self._encode(e, batch.source) for e in batch.events]
            t.QUEUE_DEPTH.dec(batch.count)
            units.append(Unit([batch]))
        self._receive.close()
        for unit in units:
            for batch in unit.batches:
                if not batch.records:
                    batch.records = [self._encode(e, batch.source) for e in batch.events]
            await self._spool_unit(unit)
        if units:
            log.warning("stopped with %d unfinished batches: spooled for the next start", len(units))

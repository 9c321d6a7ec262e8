"""The publish loop: take what sources queued, coalesce it into units, encode, hand to Kafka.

Rules (see :mod:`streamd.publish.pipeline` for the whole pipeline):

1. A unit is the first queued batch plus whatever else is already queued, up to ``coalesce``
   events: under load sends grow into large per-partition batches; when idle nothing waits.
2. While the spool holds anything, a unit is not sent (the ack loop spools it, in order).
3. An event that cannot be encoded, or whose record exceeds ``max_record_bytes``, becomes a
   dead letter in its place (counted and logged), never an exception in the loop.
4. Any acknowledgement from Kafka updates ``last_ack`` (how ``settle`` tells a silent Kafka).
5. A unit someone waits for (``await emit``: webhooks answer only once it is durable) is sent at
   once (:meth:`~streamd.publish.kafka.KafkaPublisher.expedite`), not after ``kafka.linger``:
   the linger batches push traffic, but a webhook's answer would wait for it (at 32 concurrent
   POSTs, 5 ms of linger took the rate from ~1,500 to ~1,100 POST/s).
6. Without listeners (the daemon has none), a unit's batches let their events go once encoded
   (:meth:`~streamd.publish.units.Batch.release`), push batches written ahead as soon as they
   are queued (their records are made before): only the records wait for Kafka's answer, so the
   events and their data are freed by reference counting instead of being scanned by the cyclic
   garbage collector while they are queued and in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from streamd import telemetry as t
from streamd.errors import PublishError
from streamd.events import DeadLetter, Event
from streamd.publish.encoding import Encode, Record
from streamd.publish.spool import Spool
from streamd.publish.units import Batch, Delivery, Listener, Room, Sender, Unit, topic_of
from streamd.publish.write_ahead import WriteAhead
from streamd.telemetry import Component, ComponentState

if TYPE_CHECKING:
    from streamd.tracing import Tracing

log = logging.getLogger("streamd.pipeline")

HEADER_ROOM = 4096
"""More than the CloudEvents headers other than ``ce_subject`` (the key again) and
``streamd_deviations`` take: names, ids, source and type names, times, trace context."""


class Publishing:
    """The pipeline's state and its publish loop (:class:`~streamd.publish.pipeline.Pipeline`
    sets every attribute in its ``__init__``)."""

    sender: Sender
    encode: Encode
    tracing: Tracing | None
    spool: Spool
    prefix: str
    listeners: list[Listener]
    coalesce: int
    max_record_bytes: int
    delivery_timeout: float
    spool_after: float
    last_ack: float
    component: Component | None
    ahead: WriteAhead | None
    room: Room
    _outage_logged: bool
    _refused: list[int] | None
    _send: MemoryObjectSendStream[Batch]
    _receive: MemoryObjectReceiveStream[Batch]
    _inflight_send: MemoryObjectSendStream[Unit]
    _inflight_receive: MemoryObjectReceiveStream[Unit]
    _open: list[Unit]
    _spooled_units: int
    _spool_wakeup: anyio.Event

    async def _publish_loop(self) -> None:
        receive = self._receive
        while True:
            try:
                first = await receive.receive()
            except anyio.EndOfStream:
                return
            unit = Unit(self._coalesce(first, receive))
            self._open.append(unit)
            t.QUEUE_DEPTH.dec(sum(b.count for b in unit.batches))
            encoded = 0
            for batch in unit.batches:
                if not batch.records:
                    batch.records = [self._encode(e, batch.source) for e in batch.events]
                    if (encoded := encoded + len(batch.records)) >= 1000:  # ~4 ms: let the loop run
                        encoded = 0
                        await anyio.lowlevel.checkpoint()
            if not self.listeners:  # rule 6
                for batch in unit.batches:
                    batch.release()
            if self.tracing is not None:
                self.tracing.start_unit(unit)
            if not self.spool.count:
                unit.sent = anyio.current_time()
                unit.deadline = unit.sent + self.delivery_timeout
                unit.spooled_before = self._spooled_units
                unit.deliveries = await self._send_records(unit.records)
                if unit.deliveries and any(b.done is not None for b in unit.batches):
                    expedite = getattr(self.sender, "expedite", None)  # rule 5
                    if expedite is not None:
                        expedite()
            await self._inflight_send.send(unit)

    def _coalesce(self, first: Batch, receive: MemoryObjectReceiveStream[Batch]) -> list[Batch]:
        """The first batch plus whatever else is already queued, up to ``coalesce`` events: under
        load, sends grow into large per-partition batches; when idle, nothing waits."""
        batches, count = [first], first.count
        while count < self.coalesce:
            try:
                batch = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            batches.append(batch)
            count += batch.count
        return batches

    def _encode(self, event: Event, source: str) -> Record:
        try:
            record = self.encode(event, self.prefix)
        except (TypeError, ValueError, UnicodeError) as exc:  # orjson.JSONEncodeError is a TypeError
            error = f"{event.type} cannot be encoded: {exc}"
            return self._dead_letter(source, "encode", "unencodable", error, repr(event.data))
        if (
            len(record.value) + 2 * len(record.key) + HEADER_ROOM <= self.max_record_bytes
            and not event.deviations
        ):
            return record  # the usual case: far below the limit, headers not counted one by one
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
            await self.sender.ensure_topics(sorted(set(map(topic_of, records))))
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

    def _outage(self, detail: str) -> None:
        """Kafka is not taking events: one log line and one state change per outage, not per unit."""
        log.debug("kafka: %s; spooling", detail)
        if self.component is not None:
            if self.component.state is ComponentState.RUNNING:
                self.component.set(ComponentState.RETRYING, f"Kafka {detail.split(':')[0]}: spooling to disk")
        elif not self._outage_logged:
            log.warning("kafka %s; spooling to disk until it is back", detail)
        self._outage_logged = True

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
   source: that is the backpressure. The queue is bounded in batches (``queue_size``) and, with
   the units taken from it, in events (``max_buffered``, :class:`~streamd.publish.units.Room`):
   the pipeline holds at most ``max_buffered`` events plus one batch, however large the batches,
   sources queue in the order they asked, and a vendor's backlog (O2G hands over a minute of
   queued events at once) waits in its socket, not in the heap.
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
7. The event loop never calls a spool method that takes the spool's lock (every one does but
   ``count``): another thread may hold it for a whole transaction, fsync included. They run in
   the spool's own thread (:meth:`~streamd.publish.spool.Spool.run`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from streamd import telemetry as t
from streamd.publish.drain import Draining
from streamd.publish.encoding import Encode, encode
from streamd.publish.spool import Spool
from streamd.publish.units import Batch, Delivery, Listener, Room, Sender, SourceEmit, Unit
from streamd.publish.write_ahead import WriteAhead
from streamd.telemetry import Component

if TYPE_CHECKING:
    from streamd.tracing import Tracing

__all__ = ["Batch", "Delivery", "Listener", "Pipeline", "Room", "Sender", "SourceEmit", "Unit", "WriteAhead"]

MAX_BUFFERED = 20_000
"""Default bound of the events the pipeline holds in memory (rule 1): two full units (``coalesce``)."""


class Pipeline(Draining):
    """Owns the bounded stream, the publish loop (:mod:`~streamd.publish.emit`), the ack loop
    (:mod:`~streamd.publish.delivery`) and the spool drain loop (:mod:`~streamd.publish.drain`)."""

    def __init__(
        self,
        sender: Sender,
        spool: Spool,
        prefix: str,
        *,
        queue_size: int = 1024,
        max_buffered: int = MAX_BUFFERED,
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
        self.room = Room(max_buffered)
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
            emitter = self.tracing.emitter(source, self._send.clone(), self.ahead)
        else:
            emitter = SourceEmit(source, self._send.clone(), self.ahead)
        emitter.listeners = self.listeners  # the same list: listeners added later count too
        emitter.room = self.room
        return emitter

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
            self.room.close()
            self._inflight_send.close()
            self._inflight_receive.close()
            if self.tracing is not None:
                self.tracing.end_all()

    # -- write-ahead -----------------------------------------------------------------------------

    async def _write_ahead_loop(self, scope: anyio.CancelScope) -> None:
        assert self.ahead is not None
        with scope:
            await self.ahead.run()


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True

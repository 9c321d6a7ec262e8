"""One open O2G chunk channel: the pump between the socket and the sans-IO decoder.

Keeping the subscription's channel open (reopening it) is :mod:`.chunk`'s.

Rules:

1. The pump is ``async for chunk in response.aiter_bytes(): decoder.feed(chunk)``; the decoder
   (:class:`~streamd.sources.o2g.protocol.O2GEventDecoder`) does the framing, this module the I/O.
2. At most one ``emit.push`` per received chunk (all its events at once), never one per event;
   chunks that arrive while a push is in progress are coalesced into the next push. A stop
   (cancellation) ends the reading first, then pushes what was already decoded, shielded, within
   ``STOP_GRACE``: O2G removed those events from its queue and the teardown unsubscribes.
3. Keepalives (``OnChannelInformation``) are liveness only: they reset the idle timer (the httpx
   read timeout is the idle timeout: no byte for ``idle_timeout`` raises) and are never published.
4. A malformed object, or a complete one larger than ``max_event_size``, becomes a dead letter
   (``malformed_json`` / ``oversize_event``, and a counted error); the stream goes on.
5. A channel that fails (idle timeout, broken connection, an event still incomplete beyond
   ``max_event_size``, cut mid-event) is a :class:`ChannelEnded` carrying the bytes it
   delivered; :mod:`.chunk` decides what follows. The events completed before the failure,
   those of the failing read too, are pushed first, then the oversize event's dead letter (its
   first 64 KiB). What O2G wrote behind that event on the connection is lost with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import httpx
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from streamd.errors import NormalizationError, SourceError, StreamdError, TransientError, VendorProtocolError
from streamd.events import DeadLetter, Event, utcnow
from streamd.runtime import task_group
from streamd.sources.base import Emit
from streamd.sources.http import httpx_errors
from streamd.sources.o2g.continuity import SYSTEM_EVENTS
from streamd.sources.o2g.normalize import normalize
from streamd.sources.o2g.protocol import MalformedEvent, O2GEventDecoder, StreamLimitError
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

PUSH_QUEUE = 16
"""Decoded chunks waiting for the pusher; a full queue stops reading the socket (backpressure)."""
STOP_GRACE = 1.0
"""Seconds a stop waits for the events already read to be pushed (then the teardown's 2 s follow)."""


class ChannelEnded(TransientError):
    """The chunk channel failed, or closed without data: reopen it on the same subscription.

    Attributes:
        received: bytes the channel delivered before it ended (0: an empty channel).
    """

    def __init__(self, message: str, error_type: str, received: int = 0) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.received = received


def dead_letter(source: str, stage: str, error_type: str, error: str, raw: bytes | str) -> Event:
    """A counted dead-letter event for input that could not be decoded or normalized."""
    count_error(source, stage, error_type)
    return DeadLetter.of(source=source, stage=stage, error_type=error_type, error=error, raw=raw).to_event()


React = Callable[[dict[str, Any]], list[Event]]
"""What a source does about a system event (:meth:`~streamd.sources.o2g.continuity.O2GContinuity.react`)."""


def to_events(
    source: str,
    items: Iterable[dict[str, Any] | MalformedEvent],
    *,
    snapshot: bool = False,
    react: React | None = None,
) -> list[Event]:
    """Normalize decoded items; channel information is dropped, bad input dead-lettered.

    Args:
        source: the source name.
        items: what the decoder returned.
        snapshot: mark the events as snapshot records.
        react: called with each system event (after its own events); what it returns follows.

    Returns:
        The events to publish, in input order.
    """
    events: list[Event] = []
    now = utcnow()  # one reading time per chunk: its events were read at once
    for item in items:
        if isinstance(item, MalformedEvent):
            events.append(dead_letter(source, "decode", item.error_type, item.error, item.raw))
            continue
        try:  # channel information normalizes to []
            events += normalize(source, item, snapshot=snapshot, now=now)
        except NormalizationError as exc:
            events.append(dead_letter(source, "processing", exc.error_type, str(exc), orjson.dumps(item)))
            continue
        if react is not None and item.get("eventName") in SYSTEM_EVENTS:
            events += react(item)
    return events


async def pump(
    response: httpx.Response,
    emit: Emit,
    *,
    source: str,
    max_event_size: int,
    stop_grace: float = STOP_GRACE,
    react: React | None = None,
) -> int:
    """Read one open channel until it ends cleanly; return the number of bytes received.

    The events of each chunk go, in order, through a small bounded queue to one pusher task that
    sends whatever has piled up in a single ``emit.push``: one push per chunk when the pipeline
    keeps up, fewer (coalesced) when it does not, so a server writing one event per HTTP chunk
    does not cost one pipeline batch per event. Events decoded before a failure are still pushed.

    On cancellation (stop) reading stops first; the pusher is shielded from the stop and gets
    ``stop_grace`` seconds to push what was already decoded (O2G has removed those events from its
    queue, and the teardown unsubscribes), then it is cancelled.

    Raises:
        ChannelEnded: the read timed out (idle), the connection broke, an event still incomplete
            beyond ``max_event_size`` (its start dead-lettered), or the stream ended inside an
            event; it says how many bytes came before.
    """
    send, receive = anyio.create_memory_object_stream[list[Event]](max_buffer_size=PUSH_QUEUE)
    failure: StreamdError | None = None
    received = [0]
    pushed = anyio.Event()
    pusher = anyio.CancelScope(shield=True)  # only a stop's grace (below) cancels it
    async with task_group() as tg:  # a failed push surfaces as itself
        tg.start_soon(_push_coalesced, receive, emit, pusher, pushed)
        try:
            try:
                async with send:
                    await _read(response, send, source, max_event_size, received, react)
            except (TransientError, VendorProtocolError) as exc:
                failure = ChannelEnded(
                    f"o2g {source}: chunk channel ended ({exc})", _reason(exc), received[0]
                )
                failure.__cause__ = exc
            await pushed.wait()  # the channel ended: push everything read (backpressure applies)
        except anyio.get_cancelled_exc_class():
            with anyio.move_on_after(stop_grace, shield=True):
                await pushed.wait()
            if not pushed.is_set():
                count_error(source, "chunk", "stop_grace")
                log.warning("o2g %s: events read before the stop not pushed within %.1fs", source, stop_grace)
            pusher.cancel()
            raise
    if failure is not None:
        raise failure
    return received[0]


async def _read(
    response: httpx.Response,
    send: MemoryObjectSendStream[list[Event]],
    source: str,
    max_event_size: int,
    received: list[int],
    react: React | None,
) -> None:
    decoder = O2GEventDecoder(max_event_size)
    with httpx_errors():
        async for chunk in response.aiter_bytes():
            received[0] += len(chunk)
            try:
                items = decoder.feed(chunk)
            except StreamLimitError as exc:  # rule 5: what came before it in this read is pushed
                oversize = MalformedEvent(exc.raw, str(exc), "oversize_event")  # its dead letter last
                await _send(send, to_events(source, [*exc.decoded, oversize], react=react))
                raise
            if items:
                events = to_events(source, items, react=react)
                del items
                await _send(send, events)
                del events  # the pusher's now: not kept here until the next chunk (Emit.push)
    decoder.feed_eof()


async def _send(send: MemoryObjectSendStream[list[Event]], events: list[Event]) -> None:
    if events:
        await send.send(events)


async def _push_coalesced(
    receive: MemoryObjectReceiveStream[list[Event]],
    emit: Emit,
    pusher: anyio.CancelScope,
    pushed: anyio.Event,
) -> None:
    try:
        with pusher, receive:
            async for events in receive:
                batch = list(events)
                while True:
                    try:
                        batch.extend(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                push = emit.push(batch)
                del events, batch  # the push holds the events now, and lets them go (Emit.push)
                await push
    finally:
        pushed.set()


def _reason(exc: SourceError) -> str:
    text = str(exc)
    if isinstance(exc, VendorProtocolError):
        return "protocol_error"
    if "Timeout" in text:
        return "idle_timeout"
    return "connection_lost"

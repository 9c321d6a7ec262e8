"""The O2G HTTP chunk channel: the pump between the socket and the sans-IO decoder.

Rules:

1. The pump is ``async for chunk in response.aiter_bytes(): decoder.feed(chunk)``; the decoder
   (:class:`~streamd.sources.o2g.protocol.O2GEventDecoder`) does the framing, this module the I/O.
2. At most one ``emit.push`` per received chunk (all its events at once), never one per event;
   chunks that arrive while a push is in progress are coalesced into the next push. A stop
   (cancellation) ends the reading first, then pushes what was already decoded, shielded, within
   ``STOP_GRACE``: O2G removed those events from its queue and the teardown unsubscribes.
3. Keepalives (``OnChannelInformation``) are liveness only: they reset the idle timer (the httpx
   read timeout is the idle timeout: no byte for ``idle_timeout`` raises) and are never published.
4. A malformed object becomes a dead letter (and a counted error); the stream goes on.
5. The channel ending (clean close, cut mid-event, idle timeout, oversize event) is reopened on
   the *same* subscription at once: O2G queues its events meanwhile (004 L2138-2145). A channel
   that closes cleanly after delivering data is simply the long poll going on; one that fails is
   a :class:`ChannelEnded` (with the bytes it delivered), which the supervisor's job
   (:func:`streamd.runtime.run_job`, decided by :class:`Reopening`) reopens at once. Only channels
   that deliver *nothing* count towards ``MAX_EMPTY_CHANNELS`` in a row (then the session is
   given up); an error after data is an ordinary network error.
6. A reopen that fails for a reason that may pass (5xx, a refused connection, a timeout: a
   :class:`ChannelNotOpened`) is retried with backoff for ``reopen_window`` seconds since the
   channel closed: O2G keeps the subscription and its queued events for one minute
   (004 L2142, L2145). Past it, the subscription is gone anyway: :class:`ChannelLost` gives the
   session up and makes the other server of an HA pair the first choice. Only O2G saying the
   subscription is gone (:class:`~streamd.sources.o2g.client.SubscriptionGone`) or the session is
   (:class:`~streamd.sources.o2g.protocol.SessionExpired`) ends it sooner, and so does an error
   retrying cannot fix (a certificate, a refusal): they go to the subscription's job unchanged.
7. ``on_open`` is awaited after the subscription's first channel opened, ``on_reopen`` after
   every later one (the re-snapshot, issue 17), both before the channel is read: O2G queues what
   happens meanwhile. ``react`` sees every decoded object of a system event
   (:data:`~streamd.sources.o2g.continuity.SYSTEM_EVENTS`) and adds its events to the same push.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import anyio
import httpx
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from streamd.errors import (
    BackOff,
    FatalError,
    NormalizationError,
    SourceError,
    StreamdError,
    TransientError,
    VendorProtocolError,
)
from streamd.events import DeadLetter, Event, utcnow
from streamd.retry import Decision, Fatal, Retry, Wait
from streamd.runtime import Connected, Job, Policy, run_job, task_group
from streamd.sources.base import Emit
from streamd.sources.http import httpx_errors
from streamd.sources.o2g.client import O2GClient, SubscriptionGone
from streamd.sources.o2g.continuity import SYSTEM_EVENTS
from streamd.sources.o2g.normalize import normalize
from streamd.sources.o2g.protocol import MalformedEvent, O2GEventDecoder, SessionExpired
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

PUSH_QUEUE = 16
"""Decoded chunks waiting for the pusher; a full queue stops reading the socket (backpressure)."""
STOP_GRACE = 1.0
"""Seconds a stop waits for the events already read to be pushed (then the teardown's 2 s follow)."""
MAX_EMPTY_CHANNELS = 3
"""Consecutive channels that end without a single byte before the session is given up."""


class ChannelEnded(TransientError):
    """The chunk channel failed, or closed without data: reopen it on the same subscription.

    Attributes:
        received: bytes the channel delivered before it ended (0: an empty channel).
    """

    def __init__(self, message: str, error_type: str, received: int = 0) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.received = received


class ChannelNotOpened(TransientError):
    """Reopening the channel failed for a reason that may pass (rule 6); ``delay``: O2G's, if any."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ChannelLost(TransientError):
    """The channel could not be reopened within the window: the subscription is gone (rule 6).

    Attributes:
        since: when the channel closed (the events since then are lost), if known.
    """

    since: datetime | None = None


@dataclass(slots=True)
class Reopening:
    """The state of one subscription's channel between reopens, and the job's decisions (rules 5, 6).

    Attributes:
        window: seconds a channel that cannot be reopened is retried.
        clock: monotonic seconds.
        closed_since: when the channel was last found closed (None while it is open).
        empty: channels in a row that delivered nothing.
        expired: the window passed without a reopen.
    """

    window: float
    clock: Callable[[], float] = anyio.current_time
    closed_since: float | None = None
    empty: int = 0
    expired: bool = False

    def opened(self) -> None:
        """The channel is open again: O2G keeps the subscription."""
        self.closed_since = None

    def delivered(self) -> None:
        """A channel delivered data: it was not empty."""
        self.empty = 0

    def decide(self, exc: BaseException) -> Decision:
        """Reopen at once after a channel ended, with backoff within the window after a failed
        reopen; anything else (and too many empty channels, or the window passed) is the
        subscription's job's to handle."""
        if not isinstance(exc, ChannelEnded | ChannelNotOpened):
            return Fatal()
        now = self.clock()
        if self.closed_since is None:
            self.closed_since = now
        if isinstance(exc, ChannelEnded):
            if exc.received:
                self.delivered()
                return Wait(0.0)
            self.empty += 1
            return Fatal() if self.empty >= MAX_EMPTY_CHANNELS else Wait(0.0)
        left = self.window - (now - self.closed_since)
        if left <= 0:
            self.expired = True
            return Fatal()
        return Retry() if exc.delay is None else Wait(min(exc.delay, left))


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
            events.append(dead_letter(source, "decode", "malformed_json", item.error, item.raw))
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
        ChannelEnded: the read timed out (idle), the connection broke, an oversize event, or the
            stream ended inside an event; it says how many bytes came before.
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
            items = decoder.feed(chunk)
            if items:
                events = to_events(source, items, react=react)
                if events:
                    await send.send(events)
    decoder.feed_eof()


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
                await emit.push(batch)
    finally:
        pushed.set()


async def read_subscription(
    client: O2GClient,
    polling_url: str,
    emit: Emit,
    *,
    on_open: Callable[[], Awaitable[None]],
    on_reopen: Callable[[], Awaitable[None]] | None = None,
    react: React | None = None,
    policy: Policy | None = None,
) -> None:
    """Keep the subscription's chunk channel open, reopening it whenever it ends (rules 5-7).

    Args:
        client: the session's client.
        polling_url: the subscription's polling URL.
        emit: where events go (``emit.push``).
        on_open: awaited once, after the channel first opened (snapshot, readiness); a failure
            is the subscription's job's to handle.
        on_reopen: awaited after every later opening (the re-snapshot); a failure likewise.
        react: what the source does about system events (rule 7).
        policy: how reopens wait (its ``delays`` and ``sleep``; never ``failed_retry``).

    Raises:
        SubscriptionGone: opening the channel answered 4xx: subscribe again.
        SessionExpired: the session is gone: log in again.
        ChannelLost: the channel could not be reopened within ``reopen_window``.
        ChannelEnded: channels keep ending without data.
    """
    parent = policy or Policy()
    state = Reopening(client.config.reopen_window)
    first = [True]
    job = Job(
        "channel",
        partial(_channels, client, polling_url, emit, (on_open, on_reopen), react, first, state),
        decide=state.decide,
        stage="chunk",
    )
    try:
        await run_job(job, policy=Policy(delays=parent.delays, sleep=parent.sleep), owner=client.config.name)
    except ChannelNotOpened as exc:
        if not state.expired:
            raise
        client.servers.prefer_other()
        lost = ChannelLost(
            f"o2g {client.config.name}: chunk channel not reopened within {client.config.reopen_window:g}s"
            f" (O2G has closed the subscription): {exc}"
        )
        if state.closed_since is not None:  # when the stream stopped (the gap's start)
            lost.since = utcnow() - timedelta(seconds=max(0.0, state.clock() - state.closed_since))
        raise lost from exc


async def _channels(
    client: O2GClient,
    polling_url: str,
    emit: Emit,
    hooks: tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]] | None],
    react: React | None,
    first: list[bool],
    state: Reopening,
    connected: Connected,
) -> None:
    """Channels one after the other while each delivers data; :class:`ChannelEnded` or
    :class:`ChannelNotOpened` otherwise."""
    source = client.config.name
    while True:
        async with _opened(client, polling_url) as response:
            state.opened()
            connected()  # the backoff starts anew
            on_open, on_reopen = hooks
            if first[0]:
                await on_open()
                first[0] = False
            elif on_reopen is not None:
                await on_reopen()
            try:
                received = await pump(
                    response, emit, source=source, max_event_size=client.config.max_event_size, react=react
                )
            except ChannelEnded as exc:
                log.info("o2g %s: chunk channel ended (%s); reopening", source, exc.__cause__)
                raise
        if not received:
            raise ChannelEnded(f"o2g {source}: chunk channel closed without data", "closed")
        state.delivered()  # a channel that delivered: the long poll goes on


@asynccontextmanager
async def _opened(client: O2GClient, polling_url: str) -> AsyncIterator[httpx.Response]:
    """:meth:`O2GClient.open_channel`, a failure to open that may pass as :class:`ChannelNotOpened`."""
    opening = True
    try:
        async with client.open_channel(polling_url) as response:
            opening = False
            yield response
    except (SubscriptionGone, SessionExpired, FatalError):
        raise
    except (TransientError, BackOff) as exc:
        if not opening:
            raise
        delay = exc.delay if isinstance(exc, BackOff) else None
        log.info("o2g %s: chunk channel not reopened (%s)", client.config.name, exc)
        raise ChannelNotOpened(f"o2g {client.config.name}: chunk channel not opened: {exc}", delay) from exc


def _reason(exc: SourceError) -> str:
    text = str(exc)
    if isinstance(exc, VendorProtocolError):
        return "protocol_error"
    if "Timeout" in text:
        return "idle_timeout"
    return "connection_lost"

"""The O2G chunk channel of a subscription, kept open: reopen decisions and the channel job.

Reading one open channel (the pump, decoding, dead letters) is :mod:`.channel`'s; its names
(:func:`to_events`, :func:`dead_letter`, :func:`pump`, :class:`ChannelEnded`, ``React``) are
re-exported here.

Rules:

1. Every channel is read by :func:`~.channel.pump` (:mod:`.channel` rules: one push per chunk,
   keepalives never published, malformed objects dead-lettered, a stop pushes what was read).
2. The channel ending (clean close, cut mid-event, idle timeout, oversize event) is reopened on
   the *same* subscription at once: O2G queues its events meanwhile (004 L2138-2145). A channel
   that closes cleanly after delivering data is simply the long poll going on; one that fails is
   a :class:`ChannelEnded` (with the bytes it delivered), which the supervisor's job
   (:func:`streamd.runtime.run_job`, decided by :class:`Reopening`) reopens at once. Only channels
   that deliver *nothing* count towards ``MAX_EMPTY_CHANNELS`` in a row (then the session is
   given up); an error after data is an ordinary network error.
3. A reopen that fails for a reason that may pass (5xx, a refused connection, a timeout: a
   :class:`ChannelNotOpened`) is retried with backoff for ``reopen_window`` seconds since the
   channel closed: O2G keeps the subscription and its queued events for one minute
   (004 L2142, L2145). Past it, the subscription is gone anyway: :class:`ChannelLost` gives the
   session up and makes the other server of an HA pair the first choice. Only O2G saying the
   subscription is gone (:class:`~streamd.sources.o2g.client.SubscriptionGone`) or the session is
   (:class:`~streamd.sources.o2g.protocol.SessionExpired`) ends it sooner, and so does an error
   retrying cannot fix (a certificate, a refusal): they go to the subscription's job unchanged.
4. ``on_open`` is awaited after the subscription's first channel opened, ``on_reopen`` after
   every later one (the re-snapshot, issue 17), both before the channel is read: O2G queues what
   happens meanwhile. ``react`` sees every decoded object of a system event
   (:data:`~streamd.sources.o2g.continuity.SYSTEM_EVENTS`) and adds its events to the same push.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import anyio
import httpx

from streamd.errors import BackOff, FatalError, TransientError
from streamd.events import utcnow
from streamd.retry import Decision, Fatal, Retry, Wait
from streamd.runtime import Connected, Job, Policy, run_job
from streamd.sources.base import Emit
from streamd.sources.o2g.channel import (
    PUSH_QUEUE,
    STOP_GRACE,
    ChannelEnded,
    React,
    dead_letter,
    pump,
    to_events,
)
from streamd.sources.o2g.client import O2GClient, SubscriptionGone
from streamd.sources.o2g.protocol import SessionExpired

__all__ = [
    "MAX_EMPTY_CHANNELS",
    "PUSH_QUEUE",
    "STOP_GRACE",
    "ChannelEnded",
    "ChannelLost",
    "ChannelNotOpened",
    "React",
    "Reopening",
    "dead_letter",
    "pump",
    "read_subscription",
    "to_events",
]

log = logging.getLogger("streamd.sources.o2g")

MAX_EMPTY_CHANNELS = 3
"""Consecutive channels that end without a single byte before the session is given up."""


class ChannelNotOpened(TransientError):
    """Reopening the channel failed for a reason that may pass (rule 3); ``delay``: O2G's, if any."""

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class ChannelLost(TransientError):
    """The channel could not be reopened within the window: the subscription is gone (rule 3).

    Attributes:
        since: when the channel closed (the events since then are lost), if known.
    """

    since: datetime | None = None


@dataclass(slots=True)
class Reopening:
    """The state of one subscription's channel between reopens, and the job's decisions (rules 2, 3).

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
    """Keep the subscription's chunk channel open, reopening it whenever it ends (rules 2-4).

    Args:
        client: the session's client.
        polling_url: the subscription's polling URL.
        emit: where events go (``emit.push``).
        on_open: awaited once, after the channel first opened (snapshot, readiness); a failure
            is the subscription's job's to handle.
        on_reopen: awaited after every later opening (the re-snapshot); a failure likewise.
        react: what the source does about system events (rule 4).
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

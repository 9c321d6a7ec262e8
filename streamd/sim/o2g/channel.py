"""How queued events leave the simulated O2G: chunk channels and webhook POSTs.

Rules:

1. One reader per chunk subscription: a new channel ends the previous one. A channel writes at
   most ``events_per_chunk`` queued events per HTTP chunk, and an event leaves the queue only once
   written; an idle channel writes :data:`~streamd.sim.o2g.guide.KEEPALIVE` every
   ``keepalive_period`` seconds. A channel tells its subscription when it is read and when no
   longer (:class:`ChannelResponse`): unread for ``reopen_window`` seconds, the subscription goes.
2. A webhook subscription POSTs its queue's head until answered: 2xx or 4xx takes it off the
   queue (delivered, or refused for good), anything else is retried; ``sim.webhook_log`` has
   every answer.
3. The channel faults of :mod:`.faults` apply here: an empty channel, a cut mid-event (the
   connection is aborted), silence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
import httpx
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from streamd.sim.o2g.guide import KEEPALIVE
from streamd.sim.o2g.world import Subscription

if TYPE_CHECKING:
    from streamd.sim.o2g.simulator import O2GSimulator

EARLY_WAIT = 0.5
"""Seconds a webhook subscription's answer waits for its early POST to be answered (``post_early``)."""


class Cut(Exception):
    """Raised inside a channel body to abort the connection mid-event."""


class _QuietCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], Cut))


QUIET_CUT = _QuietCut()
"""A filter for uvicorn's error log: a scripted cut is no error."""


class ChannelResponse(StreamingResponse):
    """A chunk channel's response: it tells its subscription when it is read and when no longer."""

    def __init__(self, sub: Subscription, channel: int, body: AsyncIterator[bytes]) -> None:
        super().__init__(body, media_type="application/json")
        self.sub, self.channel = sub, channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.sub.reader, self.sub.unread_since = self.channel, None
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.sub.reader == self.channel:
                self.sub.reader, self.sub.unread_since = None, time.monotonic()


async def channel_body(sim: O2GSimulator, sub: Subscription, channel: int) -> AsyncIterator[bytes]:
    """What channel number ``channel`` of ``sub`` writes (rules 1, 3)."""

    def open_() -> bool:
        return not (sim.closing or sim.down or sub.closed or sub.channel != channel)

    if sim.empty_next:
        sim.empty_next -= 1
        return

    while open_():
        if sim.silent:
            await anyio.sleep(0.01)
            continue
        if sub.pending:
            if sim.cut_next is not None:
                whole = min(sim.cut_next, len(sub.pending) - 1)
                sim.cut_next = None
                if whole:
                    yield b"".join(sub.pending[i] for i in range(whole))
                    for _ in range(whole):
                        sub.pending.popleft()
                first = sub.pending[0]
                yield first[: len(first) // 2]
                raise Cut("cut mid-event")
            batch = [sub.pending[i] for i in range(min(sim.events_per_chunk, len(sub.pending)))]
            yield b"".join(batch)
            for _ in batch:  # only written events leave the queue
                sub.pending.popleft()
            continue
        sub.wake = anyio.Event()
        with anyio.move_on_after(sim.keepalive_period) as idle:
            await sub.wake.wait()
        if idle.cancelled_caught and open_() and not sim.silent:
            yield KEEPALIVE


async def deliver(sim: O2GSimulator, http: httpx.AsyncClient, sub: Subscription) -> None:
    """POST ``sub``'s queue to its webhook until the subscription ends (rule 2)."""
    cookie = sub.id if sim.webhook_cookie == "value" else f"subscriptionId={sub.id}"
    while not (sub.closed or sim.closing):
        if not sub.pending or sim.down:
            sub.wake = anyio.Event()
            with anyio.move_on_after(0.2):
                await sub.wake.wait()
            continue
        try:
            response = await http.post(
                str(sub.webhook_url),
                content=sub.pending[0].rstrip(b"\n"),
                headers={"Cookie": cookie, "Content-Type": "application/json"},
            )
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        sim.webhook_log.append((sub.id, status))
        sub.answered.set()
        if 200 <= status < 300 or 400 <= status < 500:
            sub.pending.popleft()  # delivered, or refused for good
        else:
            await anyio.sleep(0.05)

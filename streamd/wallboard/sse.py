"""The live feed's Server-Sent Events: ``GET /api/v1/stream`` (see :mod:`streamd.wallboard.api`).

Rules:

1. A ``snapshot`` event first, then one ``delta`` event per change, each with id
   ``{epoch}.{seq}``. A client resuming with ``Last-Event-ID`` gets exactly the deltas it missed
   while they are in the replay buffer (then ``resumed``), else a snapshot. The snapshot may be
   the hub's last encoding, up to ``snapshot_reuse`` changes old: the deltas since follow it at
   once, in the same write (so 20 clients reconnecting together cost one encoding, see
   :mod:`streamd.wallboard.hub` rule 7). A ``ping`` event every ``heartbeat`` keeps proxies open
   and lets the page notice a dead connection.
2. Each stream reads from its own bounded buffer (see :mod:`streamd.wallboard.hub`): a client that
   falls behind is dropped and its stream ends; it reconnects and resumes. A closed connection
   ends the stream at once; so does the daemon stopping (the hub is closed first).
3. A snapshot is written in slices of :data:`WRITE_SLICE` bytes (cut from the encoding's parts,
   :mod:`streamd.wallboard.snapshot` rule 2), each waiting for the server's flow control and
   then yielding to the event loop: a 10 MB board is never copied whole on the loop (once per
   client by the HTTP framing, once more into the socket buffer), a slow reader holds one slice,
   not all, and a fast one (whose writes never wait) does not hold the loop for the whole board.
4. The streams of one app share :class:`Turns`: at most :data:`SLICES_PER_TURN` snapshot slices
   are written per turn of the event loop, however many clients load a snapshot at once (20
   clients writing one slice each made 20-30 ms turns); the others wait for the next turn.
   Nothing is held across a write, so a slow reader never delays the others.
5. Deltas already queued when the stream wakes up are written together (up to
   :data:`DELTA_BATCH`), as the same events: a burst of changes (the feed catching up after an
   outage) costs each client one write per burst, not one per change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import anyio
import anyio.lowlevel
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from streamd.publish.encoding import dumps
from streamd.wallboard.hub import Filter, Frozen, StateHub, Subscription, snapshot_parts

SSE_RETRY_MS = 1000
DELTA_BATCH = 256
"""Most deltas written at once (rule 5)."""
WRITE_SLICE = 256 * 1024
"""Bytes of a snapshot handed to the server at once (rule 3). 64 KiB made shorter loop rounds
but served fewer snapshots with no less lag in ``bench/loop_lag.py`` (more steps per snapshot)."""


SLICES_PER_TURN = 4
"""Snapshot slices written per turn of the event loop, over every client (rule 4)."""


class Turns:
    """Paces the snapshot writes of many streams: at most ``per_turn`` slices per turn of the event
    loop (rule 4). The first writer to find the turn used up waits one turn (a checkpoint) and
    starts the next; the others wait for it. Nothing is held while a slice is written."""

    def __init__(self, per_turn: int = SLICES_PER_TURN) -> None:
        self.per_turn = per_turn
        self.used = 0
        self._next: anyio.Event | None = None

    async def take(self) -> None:
        """Wait until a slice may be written in this turn of the loop."""
        while self.used >= self.per_turn:
            if self._next is not None:
                await self._next.wait()
                continue
            self._next = anyio.Event()
            try:
                await anyio.lowlevel.checkpoint()  # everything else ready runs first
            finally:
                self.used, next_turn, self._next = 0, self._next, None
                next_turn.set()
        self.used += 1


def sse(event: str | None, data: bytes, event_id: str | None = None) -> bytes:
    """One Server-Sent Event (``data`` is single-line JSON)."""
    head = b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


class EventStream(Response):
    """An SSE response fed by a hub subscription; ends when the client leaves or is dropped."""

    media_type = "text/event-stream"

    def __init__(
        self,
        first: list[bytes | Frozen],
        sub: Subscription,
        hub: StateHub,
        heartbeat: float,
        turns: Turns | None = None,
    ) -> None:
        # Not Response.__init__: it would declare a Content-Length for an endless body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.first, self.sub, self.hub, self.epoch, self.heartbeat = first, sub, hub, hub.epoch, heartbeat
        self.ping = sse("ping", dumps({"heartbeat": heartbeat}))
        self.turns = turns or Turns()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            finished = False
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                await self._stream(send)
                finished = True
                tg.cancel_scope.cancel()
            if finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            pass
        finally:
            self.sub.release()

    async def _stream(self, send: Send) -> None:
        pending: list[bytes] = []
        for p in self.first:
            if not isinstance(p, Frozen):
                pending.append(p)
                continue
            pending.append(b"id: " + p.id.encode() + b"\nevent: snapshot\ndata: ")
            for body in _slices(pending, await snapshot_parts(p)):  # the hub's shared parts (rule 3)
                await self.turns.take()  # a send the socket takes at once does not yield (rule 4)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await anyio.lowlevel.checkpoint()
            pending = [b"\n\n"]
        pending.append(self.ping)
        await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
        receive = self.sub.receive
        while True:
            item: tuple[int, bytes] | None = None
            with anyio.move_on_after(self.heartbeat):  # only the wait: a write is never cut short
                try:
                    item = await receive.receive()
                except anyio.EndOfStream:
                    return  # dropped (too slow) or the daemon is stopping: the client reconnects
            if item is None:
                await send({"type": "http.response.body", "body": self.ping, "more_body": True})
                continue
            chunks = [sse("delta", item[1], f"{self.epoch}.{item[0]}")]
            ended = False
            while len(chunks) < DELTA_BATCH:  # what is queued already goes in the same write (rule 5)
                try:
                    seq, payload = receive.receive_nowait()
                except anyio.WouldBlock:
                    break
                except anyio.EndOfStream:
                    ended = True
                    break
                chunks.append(sse("delta", payload, f"{self.epoch}.{seq}"))
            await send({"type": "http.response.body", "body": b"".join(chunks), "more_body": True})
            if ended:
                return

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return


def _slices(pending: list[bytes], parts: Sequence[bytes]) -> Iterator[bytes]:
    """``pending`` then ``parts`` as bodies of :data:`WRITE_SLICE` bytes (the last one smaller)."""
    group: list[bytes | memoryview] = []
    size = 0
    for part in (*pending, *parts):
        view = memoryview(part)
        while view:
            take = view[: WRITE_SLICE - size]
            group.append(take)
            size += len(take)
            view = view[len(take) :]
            if size == WRITE_SLICE:
                yield b"".join(group)
                group, size = [], 0
    if group:
        yield b"".join(group)


def open_stream(
    hub: StateHub, flt: Filter, last_event_id: str | None, heartbeat: float, turns: Turns | None = None
) -> EventStream:
    """The stream of one client: the snapshot or the missed deltas, then live deltas (rule 1);
    ``turns``: shared by the app's streams (rule 4), else the stream's own."""
    # No await between reading the state and subscribing: nothing can slip in between.
    missed = hub.since(last_event_id)
    first: list[bytes | Frozen] = [f"retry: {SSE_RETRY_MS}\n".encode()]
    if missed is None:
        frozen = hub.freeze(flt, behind=hub.snapshot_reuse)  # encoded once the response starts
        first.append(frozen)
        for change in hub.since(frozen.id) or ():  # what changed since that encoding
            payload = change.for_filter(flt)
            if payload is not None:
                first.append(sse("delta", payload, f"{hub.epoch}.{change.seq}"))
    else:
        for change in missed:
            payload = change.for_filter(flt)
            if payload is not None:
                first.append(sse("delta", payload, f"{hub.epoch}.{change.seq}"))
        first.append(sse("resumed", dumps({"id": hub.event_id}), hub.event_id))
    return EventStream(first, hub.subscribe(flt), hub, heartbeat, turns)

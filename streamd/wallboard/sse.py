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
3. A snapshot is written in slices of :data:`WRITE_SLICE` bytes, each waiting for the server's
   flow control: a 10 MB board is never copied whole on the event loop (once per client by the
   HTTP framing, once more into the socket buffer), and a slow reader holds one slice, not all.
"""

from __future__ import annotations

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from streamd.publish.encoding import dumps
from streamd.wallboard.hub import Filter, Frozen, StateHub, Subscription, snapshot_parts

SSE_RETRY_MS = 1000
WRITE_SLICE = 256 * 1024
"""Bytes of a snapshot handed to the server at once (rule 3)."""


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
        self, first: list[bytes | Frozen], sub: Subscription, hub: StateHub, heartbeat: float
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
            head, comma, lists, tail = await snapshot_parts(p)
            pending += [b"id: " + p.id.encode() + b"\nevent: snapshot\ndata: ", head, comma]
            await send({"type": "http.response.body", "body": b"".join(pending), "more_body": True})
            pending = [tail, b"\n\n"]
            view = memoryview(lists)  # the hub's shared bytes, written in slices (rule 3)
            for start in range(0, len(view), WRITE_SLICE):
                body = bytes(view[start : start + WRITE_SLICE])
                await send({"type": "http.response.body", "body": body, "more_body": True})
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
            chunk = self.ping if item is None else sse("delta", item[1], f"{self.epoch}.{item[0]}")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return


def open_stream(hub: StateHub, flt: Filter, last_event_id: str | None, heartbeat: float) -> EventStream:
    """The stream of one client: the snapshot or the missed deltas, then live deltas (rule 1)."""
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
    return EventStream(first, hub.subscribe(flt), hub, heartbeat)

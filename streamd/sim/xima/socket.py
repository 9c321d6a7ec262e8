"""The websocket subscription of the Xima simulator (seed 000 L955-996).

Rules:

1. ``/rest/api/v1/realtime-metric-subscription?id=A&id=B&auth_token=KEY``: the upgrade is refused
   with the scripted status (``ws`` fault, then the connection's :class:`~.faults.WsPlan`), 404
   while the endpoint is disabled, 401 for a wrong key, 400 without ids and 403 for a metric that
   is rejected or unknown (the websocket says 403 where REST says 404, 000 L996 vs L953).
2. An accepted socket gets one ``{key, value}`` message per changed key of its metrics
   (:meth:`SocketHub.push`); it sends no snapshot. A plan may close it after N messages.
3. Never-answering pings is done by a uvicorn websocket protocol subclass that drops the
   automatic pong for connections marked silent (uvicorn exposes no public hook for it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import anyio
import orjson
from anyio.streams.memory import MemoryObjectSendStream
from starlette.responses import Response
from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from streamd.sim.xima.deviations import Deviator
from streamd.sim.xima.faults import WsPlan, XimaFaults
from streamd.sim.xima.world import Key, XimaWorld


class SocketHub:
    """Every open subscription socket, and what changed values are sent to them."""

    def __init__(
        self, world: XimaWorld, faults: XimaFaults, deviator: Deviator, key: Callable[[], str]
    ) -> None:
        self.world, self.faults, self.deviator = world, faults, deviator
        self._key = key
        self._subscribers: list[tuple[set[str], MemoryObjectSendStream[str]]] = []
        self._silent_ports: set[int] = set()
        self._scopes: set[anyio.CancelScope] = set()

    @property
    def subscribed(self) -> bool:
        """Whether any socket is subscribed right now."""
        return bool(self._subscribers)

    def push(self, changed: Iterable[Key]) -> None:
        """Send each changed key (once) to the sockets subscribed to its metric (rule 2)."""
        for key in dict.fromkeys(changed):
            if key in self.world.dropped or not any(key[0] in ids for ids, _ in self._subscribers):
                continue
            entry = self.deviator.entry("ws", key, self.world.entry(key, self.world.values[key]))
            self.send_raw(orjson.dumps(entry).decode(), metric_id=key[0])

    def send_raw(self, text: str, *, metric_id: str | None = None) -> None:
        """Send ``text`` as is to every socket (subscribed to ``metric_id``, if given)."""
        for ids, send in self._subscribers:
            if metric_id is None or metric_id in ids:
                with contextlib.suppress(
                    anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError
                ):
                    send.send_nowait(text)

    def close_all(self) -> None:
        """End every open socket (the simulator stops)."""
        for scope in list(self._scopes):
            scope.cancel()

    async def subscription(self, websocket: WebSocket) -> None:
        """One subscription socket, from the upgrade to its end."""
        plan = self.faults.next_plan()
        ids = websocket.query_params.getlist("id")
        status = self._status(plan, websocket, ids)
        if status != 101:
            await websocket.send_denial_response(Response(f"simulated HTTP {status}", status))
            return
        await websocket.accept()
        if plan.never_pong and websocket.client is not None:
            self._silent_ports.add(websocket.client.port)
        send, receive = anyio.create_memory_object_stream[str](1024)
        subscriber = (set(ids), send)
        self._subscribers.append(subscriber)
        try:
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_until_disconnect, websocket, tg.cancel_scope)
                    sent = 0
                    if plan.close_after == 0:
                        await websocket.close(1011)
                        tg.cancel_scope.cancel()
                    async for text in receive:
                        await websocket.send_text(text)
                        sent += 1
                        if plan.close_after is not None and sent >= plan.close_after:
                            await websocket.close(1011)
                            tg.cancel_scope.cancel()
        except (OSError, RuntimeError):
            pass  # the client went away mid-send
        finally:
            self._scopes.discard(scope)
            self._subscribers.remove(subscriber)
            send.close()
            receive.close()

    def _status(self, plan: WsPlan, websocket: WebSocket, ids: list[str]) -> int:
        fault = self.faults.take("ws")
        if fault is not None:
            return fault.status
        if plan.reject is not None:
            return plan.reject
        if not self.faults.websocket_enabled:
            return 404
        if websocket.query_params.get("auth_token") != self._key():
            return 401
        if not ids:
            return 400
        if any(i in self.faults.rejected or i not in self.world.metrics for i in ids):
            return 403
        return 101

    def protocol(self) -> type[WebSocketsSansIOProtocol]:
        """uvicorn's websocket protocol, except that connections marked silent never answer a ping."""
        silent = self._silent_ports

        class SimProtocol(WebSocketsSansIOProtocol):
            def handle_ping(self) -> None:
                if self.client is not None and self.client[1] in silent:
                    self.conn.data_to_send()  # drop the automatic pong
                    return
                super().handle_ping()

        return SimProtocol


async def _until_disconnect(websocket: WebSocket, scope: anyio.CancelScope) -> None:
    with contextlib.suppress(OSError, RuntimeError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    scope.cancel()

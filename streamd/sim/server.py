"""How every simulator serves its ASGI app: ``async with serving(app) as url``.

Rules:

1. One uvicorn runner for the whole code base: this wraps :func:`streamd.http.server.serve` (its own
   listening socket, no signal handlers, bounded graceful shutdown) in a task group of its own and
   yields the base URL once the server listens.
2. Idle HTTP keep-alive connections are held :data:`KEEP_ALIVE` seconds, far longer than any client
   keeps them (httpx: 5 s). The client therefore always closes an idle connection first and never
   reuses one the server is closing at that very moment (an ``httpx.ReadError`` and a needless
   source retry). Shutting down closes idle connections at once, so this costs nothing on exit.
3. Leaving the block stops the server: open requests get ``graceful`` seconds, then are cancelled;
   the port is released before the block returns. Simulators end their own long-lived responses
   (channels, websockets) before leaving, so an exit normally takes ~0.2 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
from uvicorn.config import WSProtocolType

from streamd.http.server import serve

KEEP_ALIVE = 75
"""Seconds an idle keep-alive connection stays open (nginx's default; httpx gives up after 5 s)."""


@asynccontextmanager
async def serving(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    ws: WSProtocolType | type[asyncio.Protocol] = "websockets-sansio",
    ws_ping_interval: float | None = 20.0,
    timeout_keep_alive: int = KEEP_ALIVE,
    graceful: float = 1.0,
) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on ``host:port`` while the block runs; yield its ``http://`` base URL.

    Args:
        app: the ASGI app.
        host: interface to bind.
        port: TCP port; 0 = ephemeral (the URL carries the bound one).
        ws: uvicorn's websocket implementation: a name or a protocol class (e.g. one that never pongs).
        ws_ping_interval: seconds between server pings on websockets (None: never ping).
        timeout_keep_alive: seconds an idle HTTP keep-alive connection is held open.
        graceful: seconds open requests get to finish when the block ends.
    """
    run = partial(
        serve,
        app,
        host,
        port,
        graceful=graceful,
        ws=ws,
        ws_ping_interval=ws_ping_interval,
        timeout_keep_alive=timeout_keep_alive,
    )
    async with anyio.create_task_group() as tg:
        bound: int = await tg.start(run)
        try:
            yield f"http://[{host}]:{bound}" if ":" in host else f"http://{host}:{bound}"
        finally:
            tg.cancel_scope.cancel()

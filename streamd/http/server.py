"""Running an ASGI app with uvicorn inside an anyio task group.

Rules:

1. uvicorn must not install signal handlers: streamd's own handler decides the shutdown order.
2. We bind the socket ourselves, so a busy port is an ``OSError`` here (uvicorn would
   ``sys.exit``), and ``task_status.started(port)`` reports the bound port (``listen`` may say 0).
3. Cancelling the task asks the server to exit and waits for it (shielded, bounded), so open
   responses finish and the port is released before the caller moves on.
4. The defaults are the daemon's; embedders (the simulators, via ``streamd.sim.server``) may pick
   another websocket protocol (a class too), ping interval and HTTP keep-alive timeout.
5. HTTP/1.1 is uvicorn's httptools implementation where httptools is installed (a dependency),
   else its h11 one (``parser`` picks one), bounded by :mod:`streamd.http.limits` either way:
   connections, request head size and read time, CL+TE requests.
6. No ``X-Forwarded-*`` rewriting (uvicorn's proxy-headers middleware, on by default for loopback
   peers): nothing in streamd reads the client address or scheme, and it cost every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import uvicorn
from anyio.abc import TaskStatus
from uvicorn.config import WSProtocolType

from streamd.http.limits import Limits, Parser, protocol


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when the host is an IPv6 address).

    The protocol is named (``IPPROTO_TCP``, not 0): asyncio sets ``TCP_NODELAY`` only on accepted
    sockets that say so, and without it a response body written after its headers waits for the
    client's delayed ACK (~40 ms per response on Linux).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def serve(
    app: Any,
    host: str,
    port: int,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    log_level: str = "warning",
    graceful: float = 2.0,
    ws: WSProtocolType | type[asyncio.Protocol] = "websockets-sansio",
    ws_ping_interval: float | None = 20.0,
    timeout_keep_alive: int = 5,
    limits: Limits | None = None,
    parser: Parser = "auto",
) -> None:
    """Serve ``app`` until cancelled; report the bound port through ``task_status``.

    Args:
        app: the ASGI app.
        host: interface to bind (an IPv6 address binds IPv6).
        port: TCP port; 0 = ephemeral (the bound one goes to ``task_status``).
        task_status: gets the bound port once uvicorn listens.
        log_level: level of the ``uvicorn.error`` logger.
        graceful: seconds open requests get to finish once cancelled.
        ws: uvicorn's websocket implementation: a name or an ``asyncio.Protocol`` class.
        ws_ping_interval: seconds between server pings on websockets (None: never ping).
        timeout_keep_alive: seconds an idle HTTP keep-alive connection is held open.
        limits: connection and request head bounds (default: those of a default ``http`` config).
        parser: the HTTP/1.1 parser (``auto``: httptools when installed, else h11).
    """
    limits = limits or Limits.of()
    sock = bind(host, port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level=log_level,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(graceful) or 1,
        ws=ws,
        ws_ping_interval=ws_ping_interval,
        timeout_keep_alive=timeout_keep_alive,
        proxy_headers=False,
        http=protocol(limits, parser),
        h11_max_incomplete_event_size=limits.max_header_bytes,
    )
    server = _QuietServer(config)
    logging.getLogger("uvicorn.error").setLevel(log_level.upper())
    done = anyio.Event()

    async def run() -> None:
        try:
            with anyio.CancelScope(shield=True):
                await server.serve(sockets=[sock])
        finally:
            sock.close()
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        while not server.started and not done.is_set():  # noqa: ASYNC110 (uvicorn has no started event)
            await anyio.sleep(0.005)
        task_status.started(int(sock.getsockname()[1]))
        try:
            await done.wait()
        finally:
            server.should_exit = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(graceful + 3):
                await done.wait()
            if not done.is_set():
                server.force_exit = True

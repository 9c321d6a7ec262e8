"""An ``https://`` front for the Calabrio simulator: TLS with the test certificate, bytes passed
through to the plain-HTTP simulator (the simulators serve HTTP only).

The certificate (tests/fixtures/calabrio, see its README) is signed by a test CA that no system
trusts: a client verifying against the system store refuses it, one given ``CA_FILE`` accepts it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSListener

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "calabrio"
CA_FILE = FIXTURES / "tls-ca.pem"
"""The CA that signed the front's certificate (for ``ca_file``)."""


class _QuietTLSListener(TLSListener):
    """A refused handshake is what the tests provoke: close the connection, log nothing."""

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: anyio.abc.AnyByteStream) -> None:
        await anyio.aclose_forcefully(stream)
        if not isinstance(exc, Exception):
            raise exc


async def _pump(source: ByteStream, sink: ByteStream, done: anyio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError, OSError):
        pass
    done.cancel()  # either side gone: close both


@asynccontextmanager
async def tls_front(url: str) -> AsyncIterator[str]:
    """Serve ``https://127.0.0.1:{port}`` in front of the simulator at ``url`` while the block runs."""
    target = httpx.URL(url)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(FIXTURES / "tls-server.pem", FIXTURES / "tls-server.key")
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    listener = _QuietTLSListener(tcp, context, standard_compatible=False, handshake_timeout=5)

    async def relay(client: ByteStream) -> None:
        async with client:
            upstream = await anyio.connect_tcp(target.host, target.port or 80)
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(_pump, client, upstream, tg.cancel_scope)
                tg.start_soon(_pump, upstream, client, tg.cancel_scope)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, relay)
        try:
            yield f"https://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()

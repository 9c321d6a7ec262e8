"""A Kafka TLS failure at start-up names its cause, not aiokafka's "Unable to bootstrap".

A TLS listener on loopback presents the test server certificate (signed by a CA no system
trusts); a plain TCP listener stands for a plaintext broker port that closes a TLS hello.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.tls import TLSListener

from streamd.config_core import KafkaConfig
from streamd.errors import FatalError
from streamd.publish.kafka import KafkaPublisher
from tests.sources.calabrio_tls import FIXTURES

pytestmark = pytest.mark.anyio


class _QuietTLSListener(TLSListener):
    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: anyio.abc.AnyByteStream) -> None:
        await anyio.aclose_forcefully(stream)
        if not isinstance(exc, Exception):
            raise exc


@asynccontextmanager
async def _listener(tls: bool) -> AsyncIterator[int]:
    """Serve on loopback while the block runs: TLS with the test certificate, or plain TCP that
    reads what comes and closes (as a Kafka broker does with a TLS hello)."""
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)
    listener: anyio.abc.Listener[ByteStream] = tcp  # type: ignore[assignment]
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(FIXTURES / "tls-server.pem", FIXTURES / "tls-server.key")
        listener = _QuietTLSListener(tcp, context, standard_compatible=False, handshake_timeout=5)

    async def serve(client: ByteStream) -> None:
        async with client:
            with suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                await client.receive()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield port
        tg.cancel_scope.cancel()


def _publisher(port: int) -> KafkaPublisher:
    bootstrap = f"127.0.0.1:{port}"
    cfg = KafkaConfig(bootstrap_servers=bootstrap, security={"protocol": "SSL"}, startup_timeout=1)
    return KafkaPublisher(cfg, bootstrap, embedded=True)


async def test_an_untrusted_broker_certificate_is_fatal_with_its_cause() -> None:
    async with _listener(tls=True) as port:
        with anyio.fail_after(30), pytest.raises(FatalError) as info:
            await _publisher(port).start()
    message = str(info.value)
    assert "certificate" in message
    assert "Unable to bootstrap" not in message
    assert "unable to get local issuer certificate" in message or "self-signed" in message, message


async def test_tls_to_a_plaintext_port_names_the_handshake() -> None:
    async with _listener(tls=False) as port:
        with anyio.fail_after(30), pytest.raises(FatalError) as info:
            await _publisher(port).start()
    message = str(info.value)
    assert "TLS handshake failed" in message, message
    assert "Unable to bootstrap" not in message

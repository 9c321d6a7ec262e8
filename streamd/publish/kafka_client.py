"""Kafka client settings and producer start-up: every aiokafka client's connection settings, the
producer's, and the TLS check that names why a handshake fails.

Rules:

1. Every Kafka client streamd makes (producer, admin, the sink's and wallboard's consumers) takes
   its connection settings from :func:`client_kwargs`, so SASL/TLS is configured in one place.
   TLS files that cannot be loaded are a :class:`FatalError` naming them.
2. Idempotence ``auto`` (:func:`producer_kwargs`): on for real Kafka with ``acks: all``, off for
   the embedded broker (no InitProducerId).
3. aiokafka reports a failed TLS handshake as "Unable to bootstrap": when a TLS connection fails,
   :func:`tls_check` repeats the handshake with the same context to name its cause. A
   certificate that does not verify is a :class:`FatalError` at once (retrying cannot change
   it); any other handshake failure (e.g. TLS to a plaintext port) stays retriable, its cause in
   the message and so in the start-up's fatal line.
4. A producer that did not start is closed (:func:`started_producer`), also when the start-up is
   cancelled.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError

from streamd.config_core import KafkaConfig
from streamd.errors import FatalError, PublishError

_TLS_CHECK_TIMEOUT = 5.0  # seconds for tls_check's handshake with one server

UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError)
"""Start-up failures that mean "not reached yet", never "reached and refused"."""


def reason(exc: BaseException) -> str:
    """``Type: message`` once (aiokafka's connection errors already start with their type)."""
    name, text = type(exc).__name__, str(exc)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


async def started_producer(kwargs: dict[str, Any]) -> AIOKafkaProducer:
    """A started producer, or the exception; a producer that did not start is closed."""
    producer = AIOKafkaProducer(**kwargs)
    try:
        await producer.start()
    except (KafkaError, OSError):
        await producer.stop()
        raise
    except BaseException:  # cancelled mid-connect (a stop during start-up): close it, quietly
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await producer.stop()
        raise
    return producer


def client_kwargs(cfg: KafkaConfig, bootstrap: str) -> dict[str, Any]:
    """Connection settings shared by every aiokafka client."""
    sec = cfg.security
    kwargs: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "client_id": cfg.client_id,
        "security_protocol": sec.protocol,
    }
    if sec.protocol in ("SSL", "SASL_SSL"):
        try:
            context = ssl.create_default_context(cafile=str(sec.ca_file) if sec.ca_file else None)
            if sec.cert_file:
                context.load_cert_chain(str(sec.cert_file), str(sec.key_file) if sec.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise FatalError(f"kafka.security: cannot load the TLS files: {exc}") from None
        context.check_hostname = sec.check_hostname
        kwargs["ssl_context"] = context
    if sec.protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = sec.sasl_mechanism
        kwargs["sasl_plain_username"] = sec.username
        kwargs["sasl_plain_password"] = sec.password.get_secret_value() if sec.password else None
    return kwargs


def producer_kwargs(cfg: KafkaConfig, bootstrap: str, *, embedded: bool) -> dict[str, Any]:
    """Producer settings: acks, compression, batching, idempotence."""
    # auto: on for real Kafka with acks=all (Kafka requires it), off for the embedded broker.
    idempotent = (not embedded and cfg.acks_all) if cfg.idempotence == "auto" else bool(cfg.idempotence)
    acks: Any = {"all": "all", "1": 1, "0": 0}.get(str(cfg.acks), cfg.acks)
    if acks == -1:
        acks = "all"
    return {
        **client_kwargs(cfg, bootstrap),
        "acks": acks,
        "compression_type": None if cfg.compression == "none" else cfg.compression,
        "linger_ms": int(cfg.linger * 1000),
        "max_batch_size": cfg.batch_size,
        "max_request_size": cfg.max_request_size,
        "request_timeout_ms": int(cfg.delivery_timeout * 1000),
        "enable_idempotence": idempotent,
    }


async def tls_check(context: ssl.SSLContext, bootstrap: str) -> None:
    """Repeat the TLS handshake with each bootstrap server to name why it fails (rule 3).

    Returns quietly when every handshake succeeds or a server does not accept TCP at all (then
    aiokafka's message is the right one).

    Raises:
        FatalError: a server's certificate did not verify.
        PublishError: a handshake failed otherwise, naming the server and the cause.
    """
    for server in (s.strip() for s in bootstrap.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        try:
            with anyio.fail_after(_TLS_CHECK_TIMEOUT):
                stream = await anyio.connect_tcp(host, int(port), ssl_context=context, tls_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            raise FatalError(
                f"Kafka at {server}: TLS certificate not trusted: {exc.verify_message}"
            ) from None
        except ssl.SSLError as exc:
            raise PublishError(f"Kafka at {server}: TLS handshake failed: {exc}") from None
        except (anyio.BrokenResourceError, anyio.EndOfStream, ConnectionResetError) as exc:
            why = type(exc).__name__
            raise PublishError(
                f"Kafka at {server}: TLS handshake failed: closed by the server ({why}); a plaintext port?"
            ) from None
        except (OSError, TimeoutError, ValueError):
            continue  # not reachable at all, or no answer to the handshake: aiokafka's message stands
        await stream.aclose()

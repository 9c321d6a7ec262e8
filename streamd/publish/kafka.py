"""The aiokafka side of publishing: client settings, start-up, topic creation, sending.

Rules:

1. Every Kafka client streamd makes (producer, admin, the sink's and wallboard's consumers) takes
   its connection settings from :func:`client_kwargs`, so SASL/TLS is configured in one place.
2. Idempotence is automatic: on for real Kafka, off for the embedded broker (no InitProducerId)
   and for a broker that refuses InitProducerId (one warning).
3. Start-up is one attempt (:meth:`KafkaPublisher.connect`), retried by the supervisor
   (:func:`streamd.runtime.retry_until`) until ``startup_timeout``, then one clear line.
4. Topics are created on first use with the configured partitions/replication; the canonical
   latest-state topics get ``cleanup.policy=compact``. A broker that refuses topic creation is
   left to auto-create, with one logged notice.
5. aiokafka exceptions do not leave this module: they become :class:`PublishError`.
6. aiokafka reports a failed TLS handshake as "Unable to bootstrap": when a TLS connection fails,
   :func:`tls_check` repeats the handshake with the same context to name its cause. A
   certificate that does not verify is a :class:`FatalError` at once (retrying cannot change
   it); any other handshake failure (e.g. TLS to a plaintext port) stays retriable, its cause in
   the message and so in the start-up's fatal line.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    TopicAlreadyExistsError,
    for_code,
)
from aiokafka.partitioner import murmur2

from streamd.config_core import KafkaConfig
from streamd.errors import FatalError, PublishError
from streamd.events import AGENT_STATE_TOPIC, DEADLETTER_TOPIC, QUEUE_METRICS_TOPIC
from streamd.publish.encoding import Record
from streamd.retry import backoff
from streamd.runtime import retry_until

log = logging.getLogger("streamd.kafka")

Delivery = tuple["asyncio.Future[Any]", list[Record]]

_TLS_CHECK_TIMEOUT = 5.0  # seconds for tls_check's handshake with one server


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    """A delivery that already failed (the pipeline dead-letters non-retriable failures)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def _send_one(producer: AIOKafkaProducer, topic: str, partition: int, r: Record) -> asyncio.Future[Any]:
    """``send()`` one record; a record Kafka refuses for good becomes a failed delivery."""
    try:
        future: asyncio.Future[Any] = await producer.send(
            topic, r.value, key=r.key, partition=partition, headers=r.headers
        )
    except KafkaError as exc:
        if exc.retriable:
            raise
        return _failed(exc)  # e.g. MessageSizeTooLargeError, checked before anything is sent
    return future


UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError)
"""Start-up failures that mean "not reached yet", never "reached and refused"."""


def _reason(exc: BaseException) -> str:
    """``Type: message`` once (aiokafka's connection errors already start with their type)."""
    name, text = type(exc).__name__, str(exc)
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


async def _started(kwargs: dict[str, Any]) -> AIOKafkaProducer:
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


BATCH_BUILDER_MIN = 64
"""Records for one partition in one unit from which a batch builder pays off over ``send()``."""

COMPACTED = (AGENT_STATE_TOPIC, QUEUE_METRICS_TOPIC)


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
    """Repeat the TLS handshake with each bootstrap server to name why it fails (rule 6).

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


class KafkaPublisher:
    """Owns the producer; ``send`` returns one delivery future per record."""

    def __init__(self, cfg: KafkaConfig, bootstrap: str, *, embedded: bool) -> None:
        self.cfg = cfg
        self.bootstrap = bootstrap
        self.embedded = embedded
        self._producer: AIOKafkaProducer | None = None
        self._known_topics: set[str] = set()
        self._create_refused = False
        self._partitions: dict[str, list[int]] = {}
        self._by_key: dict[tuple[str, bytes], int] = {}

    async def start(self) -> None:
        """Connect; the supervisor retries until ``startup_timeout`` (rule 3).

        Raises:
            FatalError: Kafka stayed unreachable (one clear line, with the time actually waited),
                or refused an idempotent producer with ``idempotence: true``.
        """
        what = f"Kafka at {self.bootstrap}"
        started = anyio.current_time()
        try:
            await retry_until(
                self.connect,
                within=self.cfg.startup_timeout,
                what=what,
                delays=lambda: backoff(0.2, 2.0, 5.0, rng=lambda: 1.0),  # 0.2, 0.4, ... 5 s: no jitter
            )
        except FatalError as exc:
            # retry_until gives up once the next wait would pass the deadline: say how long it was
            prefix = f"{what} unreachable for {self.cfg.startup_timeout:g}s: "
            text = str(exc)
            if not text.startswith(prefix):
                raise
            waited = anyio.current_time() - started
            raise FatalError(
                f"{what} unreachable: gave up after {waited:.1f}s (kafka.startup_timeout: "
                f"{self.cfg.startup_timeout:g}s): {text.removeprefix(prefix)}"
            ) from None

    async def connect(self) -> None:
        """One attempt to start the producer (rule 2: an idempotent producer refused by the broker
        with ``idempotence: auto`` falls back to a plain one, with one warning).

        Raises:
            PublishError: Kafka is not reachable (retriable; a TLS handshake failure says so).
            FatalError: the broker refused an idempotent producer and ``idempotence: true``, or a
                broker's TLS certificate did not verify.
        """
        kwargs = producer_kwargs(self.cfg, self.bootstrap, embedded=self.embedded)
        try:
            self._producer = await _started(kwargs)
            return
        except KafkaError as exc:
            context = kwargs.get("ssl_context")
            if isinstance(exc, UNREACHABLE) and isinstance(context, ssl.SSLContext):
                await tls_check(context, self.bootstrap)  # a TLS cause is named, not "Unable to bootstrap"
            if not kwargs["enable_idempotence"] or exc.retriable or isinstance(exc, UNREACHABLE):
                raise PublishError(_reason(exc)) from None
            refused = exc
        except OSError as exc:
            raise PublishError(_reason(exc)) from None
        # Connected, but the producer id (InitProducerId) was refused: no idempotence on this broker.
        if self.cfg.idempotence is True:
            raise FatalError(
                f"Kafka at {self.bootstrap} refused an idempotent producer (InitProducerId: "
                f"{_reason(refused)}): set kafka.idempotence: false (or auto) for this broker"
            )
        try:
            self._producer = await _started({**kwargs, "enable_idempotence": False})
        except (KafkaError, OSError) as exc:
            raise PublishError(_reason(exc)) from None
        log.warning(
            "Kafka at %s refused an idempotent producer (InitProducerId: %s): publishing with "
            "idempotence off, so a retried send may be written twice (kafka.idempotence: false "
            "states this in the config)",
            self.bootstrap,
            _reason(refused),
        )

    async def stop(self) -> None:
        """Flush and close the producer (callers shield this within the grace period)."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def flush(self) -> None:
        """Send everything buffered now."""
        if self._producer is not None:
            await self._producer.flush()

    async def ensure_topics(self, topics: Iterable[str]) -> None:
        """Create topics not seen before (compacted for the latest-state topics)."""
        new = [t for t in topics if t not in self._known_topics]
        if not new:
            return
        self._known_topics.update(new)
        if not self.cfg.topics.create or self._create_refused:
            return
        prefix = self.cfg.topic_prefix
        admin = AIOKafkaAdminClient(**client_kwargs(self.cfg, self.bootstrap))
        try:
            await admin.start()
            replication = self.cfg.topics.replication_factor or min(3, self._broker_count())
            specs = [
                NewTopic(
                    name=t,
                    num_partitions=self.cfg.topics.partitions,
                    replication_factor=replication,
                    topic_configs={"cleanup.policy": "compact"}
                    if t.removeprefix(prefix) in COMPACTED
                    else {},
                )
                for t in new
            ]
            response = await admin.create_topics(specs)
        except TopicAlreadyExistsError:
            return
        except (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, OSError) as exc:
            self._known_topics.difference_update(new)  # try again once Kafka is back
            raise PublishError(f"cannot create topics: {type(exc).__name__}: {exc}") from exc
        except KafkaError as exc:
            if exc.retriable:  # e.g. the controller moved: ask again with the next batch
                self._known_topics.difference_update(new)
                raise PublishError(f"cannot create topics yet: {type(exc).__name__}: {exc}") from exc
            self._create_refused = True  # e.g. not authorised to create topics at all
            log.warning("topic creation refused (%s); relying on the broker's auto-creation", exc)
            return
        finally:
            await admin.close()
        self._check_created(response)

    def _check_created(self, response: Any) -> None:
        """Per-topic error codes of a CreateTopics response (aiokafka does not raise them)."""
        for error in getattr(response, "topic_errors", ()):
            name, code = error[0], error[1]
            if code in (0, TopicAlreadyExistsError.errno):
                continue
            cls = for_code(code)
            message = error[2] if len(error) > 2 and error[2] else cls.__name__
            if cls.retriable:
                self._known_topics.discard(name)  # asked again with the next batch for it
                log.info("topic %s not created yet (%s); will retry", name, message)
            else:  # this topic only: the others may still be created
                log.warning("topic %s not created (%s); relying on the broker's auto-creation", name, message)

    def _broker_count(self) -> int:
        if self._producer is None:
            return 1
        return max(1, len(self._producer.client.cluster.brokers()))

    def default_topics(self) -> list[str]:
        """Topics every deployment has."""
        return [self.cfg.topic_prefix + t for t in (*COMPACTED, DEADLETTER_TOPIC)]

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        """Queue records, keeping their order per partition; one delivery per future.

        Records are grouped by topic and partition (the default murmur2 partitioner on the key,
        exactly as Kafka's clients choose, cached per key). A large group goes into aiokafka batch
        builders (``send_batch``): far cheaper per record than ``send()``. A small group is
        appended with ``send()`` to the batch already lingering for that partition, because
        ``send_batch`` waits until the partition's pending batch has drained: at low rates that
        would serialise every unit behind one linger and one round trip.

        Raises:
            PublishError: the producer could not queue a record (broker down past the timeout).
        """
        if self._producer is None:
            raise PublishError("the Kafka producer is not running")
        producer = self._producer
        groups: dict[tuple[str, int], list[Record]] = {}
        deliveries: list[Delivery] = []
        try:
            for record in records:
                try:
                    partition = await self._partition_of(producer, record)
                except KafkaError as exc:
                    if exc.retriable:
                        raise
                    deliveries.append((_failed(exc), [record]))  # e.g. topic not authorised
                    continue
                groups.setdefault((record.topic, partition), []).append(record)
            for (topic, partition), group in groups.items():
                if len(group) < BATCH_BUILDER_MIN:
                    for r in group:
                        deliveries.append((await _send_one(producer, topic, partition, r), [r]))
                else:
                    deliveries.extend(await self._send_built(producer, topic, partition, group))
        except (KafkaError, AssertionError) as exc:
            # AssertionError: aiokafka's check of a cached partition the topic no longer has
            self._partitions.clear()
            self._by_key.clear()
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        return deliveries

    @staticmethod
    async def _send_built(
        producer: AIOKafkaProducer, topic: str, partition: int, group: list[Record]
    ) -> list[Delivery]:
        deliveries: list[Delivery] = []
        batch, carried = producer.create_batch(), list[Record]()
        for r in group:
            if batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers) is None:
                # full: send it and start the next (a builder always takes its first record)
                deliveries.append((await producer.send_batch(batch, topic, partition=partition), carried))
                batch, carried = producer.create_batch(), []
                batch.append(key=r.key, value=r.value, timestamp=None, headers=r.headers)
            carried.append(r)
        deliveries.append((await producer.send_batch(batch, topic, partition=partition), carried))
        return deliveries

    async def _partition_of(self, producer: AIOKafkaProducer, record: Record) -> int:
        partitions = self._partitions.get(record.topic)
        if partitions is None:
            partitions = sorted(await producer.partitions_for(record.topic))
            self._partitions[record.topic] = partitions
            self._by_key.clear()  # partition counts may have changed
        cached = self._by_key.get((record.topic, record.key))
        if cached is None:
            cached = partitions[(murmur2(record.key) & 0x7FFFFFFF) % len(partitions)]
            if len(self._by_key) >= 100_000:
                self._by_key.clear()
            self._by_key[(record.topic, record.key)] = cached
        return cached

    async def send(self, record: Record) -> asyncio.Future[Any]:
        """Queue one record; the returned future resolves on acknowledgement.

        Raises:
            PublishError: the producer could not even queue it (broker down past the timeout).
        """
        if self._producer is None:
            raise PublishError("the Kafka producer is not running")
        try:
            future: asyncio.Future[Any] = await self._producer.send(
                record.topic, record.value, key=record.key, headers=record.headers
            )
        except KafkaError as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        return future

"""The aiokafka producer: start-up, sending (``send_many``), and the linger flush (``expedite``).

Rules:

1. Every Kafka client streamd makes takes its connection settings from :func:`client_kwargs`
   (:mod:`streamd.publish.kafka_client`), so SASL/TLS is configured in one place.
2. Idempotence is automatic: on for real Kafka, off for the embedded broker (no InitProducerId)
   and for a broker that refuses InitProducerId (one warning).
3. Start-up is one attempt (:meth:`KafkaPublisher.connect`), retried by the supervisor
   (:func:`streamd.runtime.retry_until`) until ``startup_timeout``, then one clear line.
4. Topics are created on first use with the configured partitions/replication; the canonical
   latest-state topics get ``cleanup.policy=compact``. A broker that refuses topic creation is
   left to auto-create, with one logged notice (:mod:`streamd.publish.kafka_topics`).
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

import aiokafka
import anyio
import anyio.lowlevel
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from streamd.config_core import KafkaConfig
from streamd.errors import FatalError, PublishError
from streamd.publish.encoding import Record
from streamd.publish.kafka_client import (
    UNREACHABLE,
    client_kwargs,
    producer_kwargs,
    reason,
    started_producer,
    tls_check,
)
from streamd.publish.kafka_topics import COMPACTED, TopicCreator
from streamd.retry import backoff
from streamd.runtime import retry_until

__all__ = [  # the settings and the topics are re-exported: imported from here elsewhere
    "BATCH_BUILDER_MIN",
    "COMPACTED",
    "UNREACHABLE",
    "YIELD_EVERY",
    "Delivery",
    "KafkaPublisher",
    "client_kwargs",
    "producer_kwargs",
    "tls_check",
]

log = logging.getLogger("streamd.kafka")

Delivery = tuple["asyncio.Future[Any]", list[Record]]

BATCH_BUILDER_MIN = 64
"""Records for one partition in one unit from which a batch builder pays off over ``send()``."""
YIELD_EVERY = 256
"""Records :meth:`KafkaPublisher.send_many` queues between two yields to the event loop (~2-3 ms;
``send()`` may yield anyway when a partition's buffer is full, so order across calls was never
promised by one call; within one partition each call's order is kept)."""


class _Route:
    """A topic's partitions (sorted) and the partition index of each key seen.

    murmur2 is pure Python (~3 µs a key); a key's index is kept until :data:`KEYS_PER_TOPIC` keys
    are known, then the cache starts again.
    """

    __slots__ = ("by_key", "partitions")

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        self.by_key: dict[bytes, int] = {}

    def index(self, key: bytes) -> int:
        """The index, in :attr:`partitions`, of the partition Kafka's default partitioner gives ``key``."""
        index = self.by_key.get(key)
        if index is None:
            index = (murmur2(key) & 0x7FFFFFFF) % len(self.partitions) if len(self.partitions) > 1 else 0
            if len(self.by_key) >= KEYS_PER_TOPIC:
                self.by_key.clear()
            self.by_key[key] = index
        return index


KEYS_PER_TOPIC = 20_000
"""Keys whose partition :class:`_Route` keeps per topic (~3 MB each at most)."""


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    """A delivery that already failed (the pipeline dead-letters non-retriable failures)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


async def _send_one(producer: AIOKafkaProducer, topic: str, partition: int, r: Record) -> asyncio.Future[Any]:
    """``send()`` one record; a record Kafka refuses for good becomes a failed delivery."""
    try:
        future: asyncio.Future[Any] = await producer.send(
            topic, r.value, key=r.key, partition=partition, headers=list(r.headers)
        )
    except KafkaError as exc:
        if exc.retriable:
            raise
        return _failed(exc)  # e.g. MessageSizeTooLargeError, checked before anything is sent
    return future


class KafkaPublisher:
    """Owns the producer; ``send`` returns one delivery future per record."""

    def __init__(self, cfg: KafkaConfig, bootstrap: str, *, embedded: bool) -> None:
        self.cfg = cfg
        self.bootstrap = bootstrap
        self.embedded = embedded
        self._producer: AIOKafkaProducer | None = None
        self.topics = TopicCreator(cfg, bootstrap, self._broker_count)
        self._routes: dict[str, _Route] = {}
        self._builder_missing = False  # this aiokafka lacks the record builder ``_fill`` appends to
        self._expedite_missing = False  # this aiokafka lacks the internals ``expedite`` uses

    async def start(self) -> None:
        """Connect; the supervisor retries until ``startup_timeout`` (rule 3).

        Raises:
            FatalError: Kafka stayed unreachable (one clear line, with the time actually waited),
                or refused an idempotent producer with ``idempotence: true``.
        """
        await retry_until(
            self.connect,
            within=self.cfg.startup_timeout,
            what=f"Kafka at {self.bootstrap}",
            setting="kafka.startup_timeout",
            quiet=("aiokafka",),  # its ERROR per failed attempt is folded into the one line
            delays=lambda: backoff(0.2, 2.0, 5.0, rng=lambda: 1.0),  # 0.2, 0.4, ... 5 s: no jitter
        )

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
            self._producer = await started_producer(kwargs)
            return
        except KafkaError as exc:
            context = kwargs.get("ssl_context")
            if isinstance(exc, UNREACHABLE) and isinstance(context, ssl.SSLContext):
                await tls_check(context, self.bootstrap)  # a TLS cause is named, not "Unable to bootstrap"
            if not kwargs["enable_idempotence"] or exc.retriable or isinstance(exc, UNREACHABLE):
                raise PublishError(reason(exc)) from None
            refused = exc
        except OSError as exc:
            raise PublishError(reason(exc)) from None
        # Connected, but the producer id (InitProducerId) was refused: no idempotence on this broker.
        if self.cfg.idempotence is True:
            raise FatalError(
                f"Kafka at {self.bootstrap} refused an idempotent producer (InitProducerId: "
                f"{reason(refused)}): set kafka.idempotence: false (or auto) for this broker"
            )
        try:
            self._producer = await started_producer({**kwargs, "enable_idempotence": False})
        except (KafkaError, OSError) as exc:
            raise PublishError(reason(exc)) from None
        log.warning(
            "Kafka at %s refused an idempotent producer (InitProducerId: %s): publishing with "
            "idempotence off, so a retried send may be written twice (kafka.idempotence: false "
            "states this in the config)",
            self.bootstrap,
            reason(refused),
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
        """Create topics not seen before (rule 4: :mod:`streamd.publish.kafka_topics`)."""
        await self.topics.ensure(topics)

    def _broker_count(self) -> int:
        if self._producer is None:
            return 1
        return max(1, len(self._producer.client.cluster.brokers()))

    def default_topics(self) -> list[str]:
        """Topics every deployment has."""
        return self.topics.default_topics()

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        """Queue records, keeping their order per partition; one delivery per future.

        Records are grouped by topic and partition (the default murmur2 partitioner on the key,
        exactly as Kafka's clients choose, cached per topic and key). A large group goes into
        aiokafka batch builders (``send_batch``): far cheaper per record than ``send()``. A small
        group is appended with ``send()`` to the batch already lingering for that partition,
        because ``send_batch`` waits until the partition's pending batch has drained: at low rates
        that would serialise every unit behind one linger and one round trip. Groups are sent in
        the order of their first record.

        Raises:
            PublishError: the producer could not queue a record (broker down past the timeout).
        """
        if self._producer is None:
            raise PublishError("the Kafka producer is not running")
        producer = self._producer
        by_topic: dict[str, dict[bytes, list[Record]]] = {}  # this call: topic -> key -> its group
        partition_groups: dict[str, tuple[_Route, list[list[Record] | None]]] = {}
        refused: dict[str, KafkaError] = {}
        groups: list[tuple[str, int, list[Record]]] = []
        deliveries: list[Delivery] = []
        try:
            for record in records:
                keyed = by_topic.get(record.topic)
                if keyed is None:
                    topic = record.topic
                    error = refused.get(topic)
                    if error is None:
                        try:
                            route = await self._route(producer, topic)
                        except KafkaError as exc:
                            if exc.retriable:
                                raise
                            error = refused[topic] = exc
                    if error is not None:
                        deliveries.append((_failed(error), [record]))  # e.g. topic not authorised
                        continue
                    keyed = by_topic[topic] = {}
                    partition_groups[topic] = (route, [None] * len(route.partitions))
                group = keyed.get(record.key)
                if group is None:  # the key's first record in this call
                    route, topic_groups = partition_groups[record.topic]
                    index = route.index(record.key)
                    group = topic_groups[index]
                    if group is None:
                        group = topic_groups[index] = []
                        groups.append((record.topic, route.partitions[index], group))
                    keyed[record.key] = group
                group.append(record)
            queued = 0
            for topic, partition, group in groups:
                if len(group) < BATCH_BUILDER_MIN:
                    for r in group:
                        deliveries.append((await _send_one(producer, topic, partition, r), [r]))
                else:
                    deliveries.extend(await self._send_built(producer, topic, partition, group))
                if (queued := queued + len(group)) >= YIELD_EVERY:  # a big unit never stalls the loop
                    queued = 0
                    await anyio.lowlevel.checkpoint()
        except (KafkaError, AssertionError) as exc:
            # AssertionError: aiokafka's check of a cached partition the topic no longer has
            self._routes.clear()
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        return deliveries

    async def _route(self, producer: AIOKafkaProducer, topic: str) -> _Route:
        """``topic``'s partitions (asked once, again when the client's metadata shows another
        number: partitions were added) and its key cache.

        Raises:
            KafkaError: the partitions could not be read.
        """
        route = self._routes.get(topic)
        if route is not None and len(route.partitions) != len(
            producer.client.cluster.partitions_for_topic(topic) or route.partitions
        ):
            route = None  # keys now hash over the new count, as Kafka's partitioner does
        if route is None:
            route = self._routes[topic] = _Route(sorted(await producer.partitions_for(topic)))
        return route

    async def _send_built(
        self, producer: AIOKafkaProducer, topic: str, partition: int, group: list[Record]
    ) -> list[Delivery]:
        """``group`` in batch builders, each sent when full."""
        deliveries: list[Delivery] = []
        start = 0
        while start < len(group):
            batch = producer.create_batch()
            end = self._fill(batch, group, start)
            if end == start:  # not even alone in an empty batch (aiokafka's builders take any first record)
                deliveries.append((await _send_one(producer, topic, partition, group[start]), [group[start]]))
                end = start + 1
            else:
                deliveries.append(
                    (await producer.send_batch(batch, topic, partition=partition), group[start:end])
                )
            start = end
        return deliveries

    def _fill(self, batch: Any, group: list[Record], start: int) -> int:
        """Append ``group[start:]`` to the empty ``batch`` until it is full: the index of the first
        record left out.

        Appends straight to aiokafka's record builder (~30 % cheaper per record than
        ``BatchBuilder.append``, which adds a keyword call and a serializer check per record),
        counting the records and closing a full batch as ``BatchBuilder.append`` does (the
        producer has no serializers). Where these internals differ (another aiokafka version),
        the public ``append``.
        """
        if not self._builder_missing:
            try:
                append = batch._builder.append
                plain = batch._key_serializer is None and batch._value_serializer is None
                plain = plain and batch._relative_offset == 0 and not batch._closed
            except AttributeError:
                self._builder_missing, plain = True, False
            if plain:
                offset, end = 0, len(group)
                for index in range(start, end):
                    r = group[index]
                    if append(offset, None, r.key, r.value, list(r.headers)) is None:
                        batch.close()
                        end = index
                        break
                    offset += 1
                batch._relative_offset = offset
                return end
        for index in range(start, len(group)):
            r = group[index]
            if batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
                return index
        return len(group)

    def expedite(self) -> None:
        """Send what lingers now: a durable caller (a webhook POST, a poller) waits for it.

        Closes each partition's open batch and wakes aiokafka's sender, as aiokafka's own
        ``flush_for_commit`` does (a closed batch does not linger; the next record starts a new
        one). Push traffic keeps ``kafka.linger``'s batching. It uses aiokafka internals: where
        they differ (another aiokafka version), batches linger as configured, said once at WARNING
        naming the aiokafka version (durable emits then wait up to ``kafka.linger``).
        """
        producer = self._producer
        if producer is None or self._expedite_missing:
            return
        try:
            accumulator = producer._message_accumulator
            for batches in accumulator._batches.values():
                if batches:
                    batches[-1]._builder.close()
            waiter = accumulator._waiter_future
        except AttributeError as exc:  # another aiokafka
            self._expedite_missing = True
            log.warning(
                "aiokafka %s lacks the internals streamd uses to flush a lingering batch (%s): "
                "the linger flush is unavailable, durable emits wait up to kafka.linger",
                aiokafka.__version__,
                exc,
            )
            return
        if not waiter.done():
            waiter.set_result(None)

    async def send(self, record: Record) -> asyncio.Future[Any]:
        """Queue one record; the returned future resolves on acknowledgement.

        Raises:
            PublishError: the producer could not even queue it (broker down past the timeout).
        """
        if self._producer is None:
            raise PublishError("the Kafka producer is not running")
        try:
            future: asyncio.Future[Any] = await self._producer.send(
                record.topic, record.value, key=record.key, headers=list(record.headers)
            )
        except KafkaError as exc:
            raise PublishError(f"{type(exc).__name__}: {exc}") from exc
        return future

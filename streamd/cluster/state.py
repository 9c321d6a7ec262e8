"""State that moves with a source: poll cursors written through to a compacted Kafka topic
(docs/architecture.md "Several replicas").

Rules:

1. :class:`KafkaCursorStore` is the sources' :class:`~streamd.sources.base.CursorStore`. ``save``
   writes the local SQLite cache first (the source's own restart reads it at once), then queues
   the value for Kafka; :meth:`KafkaCursorStore.flush_session` (a supervised job of the member)
   sends the newest queued value of each key and waits for Kafka's acknowledgement. ``save`` is called from worker threads: the queue
   is guarded by a lock and never waits.
2. Before a unit is given up (revocation, fencing, shutdown) its queued values are flushed, bounded,
   so the next owner reads them; what cannot be sent then is dropped (:meth:`KafkaCursorStore.drop`):
   sent later, once this replica reaches Kafka again, it would overwrite what the next owner wrote
   meanwhile (a regressed cursor, an advertisement naming the old owner). At least once still
   holds: a cursor that did not reach Kafka makes the next owner read a cycle again.
3. :meth:`KafkaCursorStore.restore` reads the state topic from its start to its end and writes the
   values of one source into the cache; it runs before the source starts on a new owner.
4. Records: key ``source/name``, value the cursor string (UTF-8), one partition, compacted.
   Names starting with ``@`` are not cursors (``@webhook``: :mod:`.webhooks`); :func:`follow`
   reads them for every replica, :meth:`KafkaCursorStore.restore` skips them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamd.config_core import KafkaConfig
from streamd.errors import TransientError
from streamd.publish.consume import kafka_errors
from streamd.publish.kafka import client_kwargs
from streamd.publish.spool import Spool
from streamd.runtime import Connected

log = logging.getLogger("streamd.cluster")

FLUSH_INTERVAL = 0.2
"""Seconds between two looks at the queue of the flush loop."""


def state_key(source: str, name: str) -> bytes:
    """The record key of one cursor (rule 4)."""
    return f"{source}/{name}".encode()


def parse_key(key: bytes | None) -> tuple[str, str] | None:
    """``(source, name)`` of a record key; None for a key that is not one (never raises)."""
    if key is None:
        return None
    source, sep, name = key.decode("utf-8", "replace").partition("/")
    return (source, name) if sep and source and name else None


class KafkaCursorStore:
    """Cursors in SQLite (the cache) and in the state topic (rules 1-4).

    Args:
        cache: the spool database (its ``cursors`` table).
        kafka: the Kafka section with resolved bootstrap servers.
        topic: the state topic's full name.
    """

    def __init__(self, cache: Spool, kafka: KafkaConfig, topic: str) -> None:
        self.cache, self.kafka, self.topic = cache, kafka, topic
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], str] = {}
        self._producer: AIOKafkaProducer | None = None

    # -- the CursorStore protocol (worker threads) ---------------------------------------------

    def load(self, source: str, name: str) -> str | None:
        """The cached cursor (restored from Kafka when this replica took the source over)."""
        return self.cache.load(source, name)

    def save(self, source: str, name: str, value: str) -> None:
        """Cache the cursor, then queue it for Kafka (rule 1).

        Raises:
            PublishError: the cache failed (nothing is queued then).
        """
        self.cache.save(source, name, value)
        with self._lock:
            self._pending[(source, name)] = value

    def queue(self, source: str, name: str, value: str) -> None:
        """Queue a value for the state topic only (an advertisement, not a cursor: nothing cached)."""
        with self._lock:
            self._pending[(source, name)] = value

    def drop(self, source: str) -> int:
        """Forget every value of ``source`` still queued for Kafka (the unit was given up, rule 2);
        the cache keeps its cursors.

        Returns:
            How many values were dropped.
        """
        with self._lock:
            mine = [k for k in self._pending if k[0] == source]
            for k in mine:
                del self._pending[k]
        return len(mine)

    # -- Kafka side ----------------------------------------------------------------------------

    def pending(self, source: str | None = None) -> int:
        """How many values wait for Kafka (of ``source``, or of every source)."""
        with self._lock:
            return sum(1 for s, _ in self._pending if source is None or s == source)

    async def connect(self) -> None:
        """Start the producer of the state topic.

        Raises:
            TransientError: Kafka could not be reached.
        """
        producer = AIOKafkaProducer(**client_kwargs(self.kafka, self.kafka.bootstrap_servers), acks="all")
        try:
            with kafka_errors():
                await producer.start()
        except BaseException:
            await self._stop(producer)
            raise
        self._producer = producer

    async def close(self) -> None:
        """Stop the producer (bounded, shielded); what is still queued stays queued."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop(producer)

    @staticmethod
    async def _stop(producer: AIOKafkaProducer) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await producer.stop()

    async def flush_session(self, connected: Connected) -> None:
        """Send queued values until cancelled (rule 1): the ``cursors`` job of the cluster member.

        Raises:
            TransientError: a send failed; the values stay queued and the job's supervisor
                retries (no module but :mod:`streamd.runtime` loops on failures).
        """
        while True:
            await self.send(None)
            connected()
            await anyio.sleep(FLUSH_INTERVAL)

    async def flush(self, source: str | None = None) -> bool:
        """One attempt at :meth:`send` (a unit being given up, rule 2); never raises for Kafka.

        Returns:
            True when nothing of them is left queued.
        """
        try:
            await self.send(source)
        except TransientError as exc:  # the values stay queued (rule 2)
            log.debug("cursors not written to %s yet: %s", self.topic, exc)
            return False
        return True

    async def send(self, source: str | None = None) -> None:
        """Send the queued values (of ``source``, or all) and wait for their acknowledgement.

        Raises:
            TransientError: the producer is not connected or Kafka did not acknowledge; what was
                not acknowledged stays queued.
        """
        producer = self._producer
        with self._lock:
            batch = {k: v for k, v in self._pending.items() if source is None or k[0] == source}
        if not batch:
            return
        if producer is None:
            raise TransientError(f"{self.topic}: not connected")
        with kafka_errors():
            futures = [
                await producer.send(self.topic, key=state_key(*k), value=v.encode()) for k, v in batch.items()
            ]
            for future in futures:
                await future
        with self._lock:
            for k, v in batch.items():
                if self._pending.get(k) == v:
                    del self._pending[k]

    async def restore(self, source: str) -> int:
        """Read the state topic to its end and cache ``source``'s cursors (rule 3).

        Returns:
            How many cursors were restored.

        Raises:
            TransientError: Kafka could not be read.
        """
        found: dict[str, str] = {}
        consumer = AIOKafkaConsumer(
            **client_kwargs(self.kafka, self.kafka.bootstrap_servers),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            with kafka_errors():
                await consumer.start()
                partitions = consumer.partitions_for_topic(self.topic) or set()
                tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
                if tps:
                    consumer.assign(tps)
                    await consumer.seek_to_beginning(*tps)
                    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
                    while await _behind(consumer, ends):
                        batches: dict[Any, list[Any]] = await consumer.getmany(*tps, timeout_ms=500)
                        for records in batches.values():
                            for record in records:
                                parsed = parse_key(record.key)
                                if (
                                    parsed is not None
                                    and parsed[0] == source
                                    and not parsed[1].startswith("@")  # an advertisement
                                    and record.value is not None
                                ):
                                    found[parsed[1]] = record.value.decode("utf-8", "replace")
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await consumer.stop()
        with self._lock:  # a value still queued here is newer than what Kafka has
            mine = {name for s, name in self._pending if s == source}
        for name, value in found.items():
            if name not in mine:
                await anyio.to_thread.run_sync(self.cache.save, source, name, value)
        return len(found)


async def follow(
    kafka: KafkaConfig, topic: str, on_value: Callable[[str, str, str | None], None], connected: Connected
) -> None:
    """Read the state topic from its start and follow it until cancelled, calling
    ``on_value(source, name, value)`` for every record (None: a tombstone); ``connected()`` once
    it is read to its end.

    Raises:
        TransientError: Kafka could not be read (the caller's supervisor retries from the start).
    """
    consumer = AIOKafkaConsumer(
        **client_kwargs(kafka, kafka.bootstrap_servers),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        with kafka_errors():
            await consumer.start()
            partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                raise TransientError(f"{topic}: no partitions yet")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
            caught_up = False
            while True:
                batches: dict[Any, list[Any]] = await consumer.getmany(*tps, timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        parsed = parse_key(record.key)
                        if parsed is not None:
                            value = (
                                record.value.decode("utf-8", "replace") if record.value is not None else None
                            )
                            on_value(parsed[0], parsed[1], value)
                if not caught_up and not await _behind(consumer, ends):
                    caught_up = True
                    connected()
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await consumer.stop()


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """True while some partition is not read up to its end offset."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False

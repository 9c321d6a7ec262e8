"""Reading streamd's own topics back from Kafka: the one reader of the sinks and the wallboard.

Rules:

1. One aiokafka consumer per :class:`TopicReader`, configured through
   :func:`~streamd.publish.kafka.client_kwargs` like every streamd client. It never joins a
   consumer group: it assigns itself every partition of its topics (no rebalance wait; streamd
   runs one active replica). With a ``group_id`` it still commits offsets under that
   group and resumes from them (the RTDC sink); without one it commits nothing and reads from
   the earliest offset (the wallboard, which rebuilds from the compacted topics).
2. Partitions are found with the public admin call ``describe_topics()`` over *all* topics: a
   metadata request naming a topic would auto-create it on brokers that allow that (without the
   compaction streamd gives its canonical topics). A topic that does not exist yet is left out;
   :meth:`TopicReader.assign` may be called again and adds it, keeping the positions reached.
3. aiokafka exceptions do not leave this module: they become
   :class:`~streamd.errors.TransientError`. The reader never retries; a failed session is
   retried by whoever runs it, under the one policy of :mod:`streamd.retry`.
4. Records come out as :class:`ConsumedRecord` (headers as a ``str -> bytes`` dict).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.lowlevel
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from streamd.config_core import KafkaConfig
from streamd.errors import TransientError, map_errors
from streamd.publish.kafka import client_kwargs

log = logging.getLogger("streamd.consume")

STOP_TIMEOUT = 2.0
"""Longest wait for a client to stop (it may never have connected)."""


@dataclass(frozen=True, slots=True)
class ConsumedRecord:
    """One record read back from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Mapping[str, bytes]
    timestamp_ms: int


class TopicReader:
    """Reads every partition of ``topics`` (rules 1-2); use as ``async with``.

    Args:
        kafka: the Kafka section, with the resolved bootstrap servers (not "embedded").
        topics: full topic names (prefix included).
        group_id: commit offsets under this group and resume from them; None: commit nothing,
            start at the earliest offset.
        fetch_max_wait: longest time the broker holds a fetch while it has nothing new.
    """

    def __init__(
        self,
        kafka: KafkaConfig,
        topics: Sequence[str],
        *,
        group_id: str | None = None,
        fetch_max_wait: float = 0.2,
    ) -> None:
        self.kafka = kafka
        self.topics = list(dict.fromkeys(topics))
        self.group_id = group_id
        self.fetch_max_wait = fetch_max_wait
        self.assigned: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._stack = AsyncExitStack()

    @property
    def missing(self) -> list[str]:
        """The topics none of whose partitions is assigned yet (they did not exist)."""
        present = {tp.topic for tp in self.assigned}
        return [t for t in self.topics if t not in present]

    async def __aenter__(self) -> Self:
        kwargs = client_kwargs(self.kafka, self.kafka.bootstrap_servers)
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=int(self.fetch_max_wait * 1000),
        )
        async with AsyncExitStack() as stack:
            stack.push_async_callback(_stop_consumer, consumer)
            with kafka_errors():
                await consumer.start()
            self._stack = stack.pop_all()
        self._consumer = consumer
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._close_admin()
        await self._stack.aclose()

    async def assign(self) -> list[str]:
        """Assign every partition of the topics that exist now; returns the topics newly assigned.

        Positions already reached are kept; new partitions start from the committed offset (with
        a group) or the earliest one.

        Raises:
            TransientError: Kafka could not be asked.
        """
        consumer = self._require()
        partitions = await self._partitions()
        wanted = set(self.assigned)
        for topic in self.topics:
            wanted.update(TopicPartition(topic, p) for p in partitions.get(topic, ()))
        if wanted == self.assigned:
            return []
        added = sorted({tp.topic for tp in wanted} - {tp.topic for tp in self.assigned})
        with kafka_errors():
            positions = {tp: await consumer.position(tp) for tp in self.assigned}
            consumer.assign(sorted(wanted))
            for tp, offset in positions.items():
                consumer.seek(tp, offset)
        self.assigned = wanted
        if not self.missing:
            await self._close_admin()  # only needed while looking for topics
        return added

    async def read(self, *, wait: float, max_records: int) -> list[ConsumedRecord]:
        """The next records of the assigned partitions, waiting up to ``wait`` seconds for some.

        Records of one partition come in offset order. With nothing assigned yet, waits and
        returns nothing.

        Raises:
            TransientError: the fetch failed.
        """
        consumer = self._require()
        if not self.assigned:
            await anyio.sleep(wait)
            return []
        with kafka_errors():
            fetched = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=max_records)
        return [
            ConsumedRecord(m.topic, m.partition, m.offset, m.key, m.value, dict(m.headers or ()), m.timestamp)
            for messages in fetched.values()
            for m in messages
        ]

    async def commit(self) -> None:
        """Commit the positions reached (the records returned so far) under the group.

        Raises:
            TransientError: the commit failed; the records will be read again.
        """
        if self.group_id is None:
            raise ValueError("a reader without group_id commits nothing")
        with kafka_errors():
            await self._require().commit()

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("TopicReader used outside 'async with'")
        return self._consumer

    async def _partitions(self) -> dict[str, list[int]]:
        """``topic -> partition ids`` of every topic the cluster has (rule 2)."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(**client_kwargs(self.kafka, self.kafka.bootstrap_servers))
            try:
                with kafka_errors():
                    await admin.start()
            except BaseException:
                await _stop_admin(admin)
                raise
            self._admin = admin
        with kafka_errors():
            described: list[dict[str, Any]] = await self._admin.describe_topics()
        return {
            str(t["topic"]): sorted(int(p["partition"]) for p in t.get("partitions") or ())
            for t in described
            if not t.get("error_code")
        }

    async def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await _stop_admin(admin)


@contextmanager
def kafka_errors() -> Iterator[None]:
    """aiokafka errors become :class:`~streamd.errors.TransientError` (rule 3)."""
    with map_errors({KafkaError: TransientError}):
        yield


@asynccontextmanager
async def admin_client(kafka: KafkaConfig) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client of ``kafka``, closed on the way out (shielded, within
    ``STOP_TIMEOUT``).

    Raises:
        TransientError: it could not be started (rule 3).
    """
    admin = AIOKafkaAdminClient(**client_kwargs(kafka, kafka.bootstrap_servers))
    try:
        with kafka_errors():
            await admin.start()
        yield admin
    finally:
        await _stop_admin(admin)


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT):
        # let aiokafka's coordinator task start first, or stop() raises CancelledError
        await anyio.lowlevel.checkpoint()
        try:
            await consumer.stop()
        except (KafkaError, OSError) as exc:  # stopping a client that never connected
            log.debug("kafka consumer stop failed: %s", exc)


async def _stop_admin(admin: AIOKafkaAdminClient) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_TIMEOUT):
        try:
            await admin.close()
        except (KafkaError, OSError) as exc:
            log.debug("kafka admin close failed: %s", exc)

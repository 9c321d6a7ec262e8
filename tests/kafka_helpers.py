"""Test helpers: independent consumers reading back what streamd produced to the embedded broker —
``read_back`` (confluent-kafka, sync: call it through ``anyio.to_thread``) and ``read_topic``
(aiokafka, async: reads until a condition on the records holds). Both use ``assign()``, no group."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AIOTopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


@dataclass(frozen=True, slots=True)
class Consumed:
    """One record read back."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def read_back(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Consumed]:
    """Read every partition of ``topic`` from the beginning until ``expected`` records (or timeout)."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "streamd-tests", "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        partitions = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list[Consumed] = []
        end = time.monotonic() + timeout
        while len(out) < expected and time.monotonic() < end:
            for m in consumer.consume(num_messages=5000, timeout=0.5):
                if m.error():
                    continue
                headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
                out.append(Consumed(m.topic(), m.partition(), m.offset(), m.key(), m.value(), headers))
        return out
    finally:
        consumer.close()


async def _consumer_knowing(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A started consumer whose metadata includes ``topic`` (waits for the topic to exist).

    ``consumer.topics()`` fetches fresh metadata without updating what ``partitions_for_topic``
    reads, so a topic created after the consumer started stays unknown to it: start a new one.
    """
    while True:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        if consumer.partitions_for_topic(topic):
            return consumer
        await anyio.sleep(0.1)  # aiokafka: stopping a consumer right after start() raises CancelledError
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 20.0
) -> list[Any]:
    """Read every partition of ``topic`` from the beginning until ``until(records)`` holds.

    Waits for the topic to exist first; fails (``TimeoutError``) after ``timeout`` seconds.
    The records are aiokafka ``ConsumerRecord`` objects (``.key``, ``.value``, ``.headers``).
    """
    records: list[Any] = []
    with anyio.fail_after(timeout):
        consumer = await _consumer_knowing(bootstrap, topic)
        try:
            tps = [AIOTopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not until(records):
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    records.extend(messages)
        finally:
            await consumer.stop()
    return records

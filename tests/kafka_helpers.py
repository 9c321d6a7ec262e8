"""Test helpers: an independent consumer (confluent-kafka, ``assign()``) reading back what
streamd produced to the embedded broker."""

from __future__ import annotations

import time
from dataclasses import dataclass

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

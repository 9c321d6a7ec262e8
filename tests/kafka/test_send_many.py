"""``KafkaPublisher.send_many`` against the embedded broker: records of interleaved topics land on
the partition Kafka's default partitioner picks for their key, in order, whole (large groups go
through batch builders, small ones through ``send``)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

import anyio
import pytest
from aiokafka.partitioner import murmur2

from streamd.embedded import EmbeddedBroker
from streamd.events import Event
from streamd.publish.encoding import Record, encode
from streamd.publish.kafka import BATCH_BUILDER_MIN
from tests.harness import kafka_publisher
from tests.kafka_helpers import read_back

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]

WHEN = datetime(2026, 11, 24, 12, 30, 5, tzinfo=UTC)


def _record(topic: str, key: str, i: int) -> Record:
    return encode(Event(topic=topic, type="test.Item", source="s", key=key, data={"i": i}, time=WHEN), "sm.")


async def test_interleaved_topics_land_on_their_keys_partitions_in_order() -> None:
    records = [_record("bulk", f"s:{i % 40}", i) for i in range(3000)]  # large groups: batch builders
    records[::7] = [_record("few", f"s:{i}", i) for i in range(0, 3000, 7)]  # small groups: send()
    async with EmbeddedBroker() as bootstrap, kafka_publisher(bootstrap) as publisher:
        await publisher.ensure_topics(["sm.bulk", "sm.few"])
        deliveries = await publisher.send_many(records)
        await asyncio.gather(*(future for future, _ in deliveries))
        partitions = sorted(await publisher._producer.partitions_for("sm.bulk"))  # type: ignore[union-attr]
        got = {
            topic: await anyio.to_thread.run_sync(
                read_back, bootstrap, topic, sum(r.topic == topic for r in records)
            )
            for topic in ("sm.bulk", "sm.few")
        }
    carried_ids = sorted(id(r) for _, carried in deliveries for r in carried)
    assert carried_ids == sorted(map(id, records))  # each record in exactly one delivery
    assert any(len(carried) >= BATCH_BUILDER_MIN for _, carried in deliveries)
    assert any(len(carried) == 1 for _, carried in deliveries)
    sent: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for r in records:
        partition = partitions[(murmur2(r.key) & 0x7FFFFFFF) % len(partitions)]
        sent[(r.topic, partition)].append(r.value)
    read: dict[tuple[str, int], list[bytes]] = defaultdict(list)
    for topic, consumed in got.items():
        assert len(consumed) == sum(r.topic == topic for r in records)
        for c in sorted(consumed, key=lambda c: (c.partition, c.offset)):
            assert c.headers["ce_subject"] == (c.key or b"").decode()
            read[(topic, c.partition)].append(c.value or b"")
    assert read == sent

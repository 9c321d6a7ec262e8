"""``KafkaPublisher``'s batch filling (straight into aiokafka's record builder, or its public
``append`` on another aiokafka) and its partition cache, on aiokafka's own builders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2
from aiokafka.record.default_records import DefaultRecordBatch

from streamd.config_core import KafkaConfig
from streamd.events import Event
from streamd.publish import kafka
from streamd.publish.encoding import Record, encode
from streamd.publish.kafka import KafkaPublisher, _Route

pytestmark = pytest.mark.anyio

WHEN = datetime(2026, 11, 24, 12, 30, 5, tzinfo=UTC)


@pytest.fixture
async def producer() -> AsyncIterator[AIOKafkaProducer]:
    made = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", max_batch_size=4096)  # never started
    yield made
    await made.stop()


def _publisher() -> KafkaPublisher:
    return KafkaPublisher(KafkaConfig(bootstrap_servers="k:9092"), "k:9092", embedded=False)


def _records(n: int, size: int = 10) -> list[Record]:
    return [
        encode(
            Event(topic="t", type="x.y.Z", source="s", key=f"s:{i % 7}", data={"i": i, "pad": "x" * size}, time=WHEN),
            "p.",
        )
        for i in range(n)
    ]  # fmt: skip


def _read(batch: Any) -> list[tuple[int, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """The records a batch builder holds, as a consumer decodes them."""
    return [(r.offset, r.key, r.value, list(r.headers)) for r in DefaultRecordBatch(bytes(batch._build()))]


class _PublicOnly:
    """A batch with only ``BatchBuilder``'s public methods (another aiokafka's internals)."""

    def __init__(self, batch: Any) -> None:
        self.batch = batch

    def append(self, **kwargs: Any) -> Any:
        return self.batch.append(**kwargs)


async def test_a_filled_batch_holds_every_record_in_order_with_its_headers(
    producer: AIOKafkaProducer,
) -> None:
    records = _records(20)
    batch = producer.create_batch()
    assert _publisher()._fill(batch, records, 0) == len(records)
    assert batch.record_count() == len(records)
    assert not batch.closed()
    assert _read(batch) == [(i, r.key, r.value, list(r.headers)) for i, r in enumerate(records)]


async def test_a_full_batch_is_closed_and_the_rest_goes_into_the_next(producer: AIOKafkaProducer) -> None:
    records = _records(40, size=300)  # ~0.6 KB each: a 4 KB batch takes a few
    publisher, batches, start = _publisher(), [], 0
    while start < len(records):
        batch = producer.create_batch()
        end = publisher._fill(batch, records, start)
        assert end > start
        assert batch.record_count() == end - start
        assert batch.closed() == (end < len(records))
        batches.append((batch, records[start:end]))
        start = end
    assert len(batches) > 3
    for batch, carried in batches:
        assert [(key, value) for _, key, value, _ in _read(batch)] == [(r.key, r.value) for r in carried]


async def test_another_aiokafka_gets_the_public_append(producer: AIOKafkaProducer) -> None:
    records = _records(40, size=300)
    publisher = _publisher()
    batch = producer.create_batch()
    end = publisher._fill(_PublicOnly(batch), records, 5)
    assert publisher._builder_missing
    assert 5 < end < len(records)
    assert batch.record_count() == end - 5
    assert [value for _, _, value, _ in _read(batch)] == [r.value for r in records[5:end]]


def test_partitions_are_those_of_kafkas_default_partitioner(monkeypatch: pytest.MonkeyPatch) -> None:
    route = _Route([0, 1, 2, 3, 4, 5])
    keys = [f"pbx1:{i}".encode() for i in range(500)]
    assert [route.index(k) for k in keys] == [(murmur2(k) & 0x7FFFFFFF) % 6 for k in keys]
    assert [route.index(k) for k in keys] == [(murmur2(k) & 0x7FFFFFFF) % 6 for k in keys]  # cached
    assert _Route([7]).index(b"any") == 0
    monkeypatch.setattr(kafka, "KEYS_PER_TOPIC", 10)
    small = _Route([0, 1, 2])
    assert [small.index(k) for k in keys] == [(murmur2(k) & 0x7FFFFFFF) % 3 for k in keys]
    assert len(small.by_key) <= 10


class _Metadata:
    """The client's metadata: what it last heard of each topic's partitions."""

    def __init__(self, partitions: set[int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.partitions)


class _Producer:
    def __init__(self, partitions: set[int]) -> None:
        self.client = SimpleNamespace(cluster=_Metadata(partitions))

    async def partitions_for(self, topic: str) -> set[int]:
        return set(self.client.cluster.partitions)


async def test_a_topic_given_more_partitions_is_routed_over_the_new_count() -> None:
    publisher, producer = _publisher(), _Producer({0, 1, 2})
    route = await publisher._route(producer, "t")  # type: ignore[arg-type]
    assert route.partitions == [0, 1, 2]
    assert await publisher._route(producer, "t") is route  # type: ignore[arg-type]  # asked once
    producer.client.cluster.partitions = {0, 1, 2, 3, 4, 5}  # partitions added, metadata refreshed
    again = await publisher._route(producer, "t")  # type: ignore[arg-type]
    assert again.partitions == [0, 1, 2, 3, 4, 5]
    keys = [f"pbx1:{i}".encode() for i in range(100)]
    assert [again.index(k) for k in keys] == [(murmur2(k) & 0x7FFFFFFF) % 6 for k in keys]

"""The anchor every benchmark compares against: a raw aiokafka producer (acks=all, zstd,
linger 5 ms) sending pre-serialised records to the same broker in the same run."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from streamd.publish.encoding import Record


async def raw_produce(bootstrap: str, records: Sequence[Record]) -> float:
    """Send every record, wait for every acknowledgement; returns events per second."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type="zstd",
        linger_ms=5,
        max_batch_size=262_144,
    )
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(r.topic, r.value, key=r.key, headers=r.headers) for r in records]
        for future in futures:
            await future
        return len(records) / (time.perf_counter() - started)
    finally:
        await producer.stop()

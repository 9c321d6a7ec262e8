"""The anchor every benchmark compares against: a raw aiokafka producer (acks=all, zstd,
linger 5 ms) sending pre-serialised records to the same broker in the same run."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from streamd.publish.encoding import Record


async def raw_produce(bootstrap: str, records: Sequence[Record]) -> float:
    """Send every record, wait for every acknowledgement; returns events per second."""
    return (await raw_produce_timed(bootstrap, records))[0]


async def raw_produce_timed(bootstrap: str, records: Sequence[Record]) -> tuple[float, float]:
    """:func:`raw_produce`, and the CPU seconds this process spent from the first send to the last
    acknowledgement (``time.process_time``: the same clock the benches read for streamd)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type="zstd",
        linger_ms=5,
        max_batch_size=262_144,
    )
    await producer.start()
    try:
        # aiokafka wants each record's headers as a list (streamd's are tuples): made before the clock starts
        prepared = [(r.topic, r.value, r.key, list(r.headers)) for r in records]
        started, cpu = time.perf_counter(), time.process_time()
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, value, key, headers in prepared
        ]
        for future in futures:
            await future
        return len(records) / (time.perf_counter() - started), time.process_time() - cpu
    finally:
        await producer.stop()

"""``streamd tail`` through the real entry point (``python -m streamd``, a process of its own)
against a broker (issue 22 item 7)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest
from aiokafka import AIOKafkaProducer

from tests.faults.daemon_helpers import embedded_broker

pytestmark = pytest.mark.kafka


@pytest.fixture
def bootstrap() -> Iterator[str]:
    with embedded_broker() as address:
        yield address


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        batch = [await producer.send(topic, b'{"n": %d}' % i, key=b"k", partition=0) for i in range(n)]
        for future in batch:
            await future
    finally:
        await producer.stop()


def _tail(*argv: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "streamd", "tail", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_tail_limit_stops_after_n_records(bootstrap: str) -> None:
    anyio.run(_produce, bootstrap, "streamd.agent-state", 5)  # one fetch returns all five
    argv = ["agent-state", "--bootstrap", bootstrap, "--from-beginning", "--timeout", "5"]
    out = _tail(*argv, "--limit", "2")
    assert out.count("(p0@") == 2, out  # the prefix was added: streamd.agent-state
    assert '"n": 1' in out
    assert '"n": 2' not in out
    assert _tail(*argv).count("(p0@") == 5  # no limit: every record, then idle for --timeout

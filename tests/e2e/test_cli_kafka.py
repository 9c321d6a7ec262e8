"""``streamd tail`` through the real entry point against a broker (issue 22 item 7)."""

from __future__ import annotations

from collections.abc import Iterator

import anyio.from_thread
import pytest
from aiokafka import AIOKafkaProducer

from streamd import cli
from streamd.embedded import EmbeddedBroker

pytestmark = pytest.mark.kafka


@pytest.fixture
def bootstrap() -> Iterator[str]:
    with anyio.from_thread.start_blocking_portal() as portal:
        broker = EmbeddedBroker()
        address = portal.call(broker.__aenter__)
        try:
            yield address
        finally:
            portal.call(broker.__aexit__, None, None, None)


async def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        batch = [await producer.send(topic, b'{"n": %d}' % i, key=b"k", partition=0) for i in range(n)]
        for future in batch:
            await future
    finally:
        await producer.stop()


def test_tail_limit_stops_after_n_records(bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    anyio.run(_produce, bootstrap, "streamd.agent-state", 5)  # one fetch returns all five
    argv = ["tail", "agent-state", "--bootstrap", bootstrap, "--from-beginning", "--timeout", "10"]
    assert cli.main([*argv, "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("(p0@") == 2, out  # the prefix was added: streamd.agent-state
    assert '"n": 1' in out
    assert '"n": 2' not in out
    assert cli.main(argv) == 0  # no limit: every record, then idle for --timeout
    assert capsys.readouterr().out.count("(p0@") == 5

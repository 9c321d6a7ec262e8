"""Fault injection: Kafka goes away under O2G webhook traffic. Every POST is still answered 2xx
(the events are durable in the spool) well within the webhook deadline, none is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamd.embedded import EmbeddedBroker, free_port
from streamd.sim.o2g import O2GSimulator
from streamd.telemetry import SPOOL_DEPTH
from tests.harness import running_daemon
from tests.helpers import until
from tests.sources.o2g_helpers import call

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]


async def test_an_outage_under_webhook_traffic_refuses_nothing(tmp_path: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker()
    async with broker as bootstrap, O2GSimulator(agents=1) as sim:
        block = {
            "kind": "o2g",
            "name": "wh",
            "url": sim.url,
            "username": sim.username,
            "password": sim.password,
            "packages": ["pilot"],
            "delivery": "webhook",
            "webhook_public_url": f"http://127.0.0.1:{port}/webhooks/o2g/wh",
            "webhook_deadline": "5s",
        }
        kafka = {"bootstrap_servers": bootstrap, "spool_after": "1s", "idempotence": False}
        async with running_daemon(tmp_path, block, kafka=kafka, listen=f"127.0.0.1:{port}"):
            sim.publish(*(call(f"a{i}", pilot="60141", caller="6") for i in range(20)))
            await until(lambda: len(sim.webhook_log) >= 20, timeout=10, interval=0.02)
            await broker._stop()  # Kafka goes away (black hole: nothing answers)
            for i in range(30):  # one at a time, each once the previous one was answered
                sim.publish(call(f"b{i}", pilot="60141", caller="6"))
                await until(lambda n=21 + i: len(sim.webhook_log) >= n, timeout=30, interval=0.02)
            spooled = SPOOL_DEPTH._value.get()
    statuses = [status for _, status in sim.webhook_log]
    assert statuses == [200] * 50, statuses  # not one 503 while the spool had room
    assert spooled >= 30

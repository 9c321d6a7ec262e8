"""Fault injection with real processes: the daemon is SIGKILLed during a Kafka outage while O2G
POSTs events to its webhook. A POST answered 2xx is durable (in Kafka or the spool): after a
restart, every event the simulator got a 2xx for is in Kafka (README "Guarantees")."""

from __future__ import annotations

from pathlib import Path

import anyio.from_thread
import orjson
import pytest

from streamd.embedded import free_port
from streamd.sim.o2g import O2GSimulator
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import broker_behind_proxy, wait_for, write_config
from tests.kafka_helpers import read_back
from tests.sources.o2g_helpers import call

pytestmark = pytest.mark.kafka


def test_sigkill_during_an_outage_loses_no_webhook_event_answered_2xx(tmp_path: Path) -> None:
    port = free_port()
    with (
        broker_behind_proxy() as (bootstrap, proxy),
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(O2GSimulator(agents=2, rate=0)) as sim,
    ):
        config = write_config(
            tmp_path,
            port,
            f"{{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: 'whk.',"
            " spool_after: 1s, delivery_timeout: 5s}",
            "sources:",
            f"  - {{kind: o2g, name: pbx, url: '{sim.url}', username: admin, password: admin,"
            f" packages: [pilot], snapshot: false, delivery: webhook,"
            f" webhook_public_url: 'http://127.0.0.1:{port}/webhooks/o2g/pbx'}}",
        )
        first = Daemon(config, port, tmp_path / "first.log").start()
        try:
            first.wait_ready()
            (sid,) = sim.subscriptions()
            marks = 0

            def publish(n: int) -> None:
                nonlocal marks
                for _ in range(n):
                    sim.publish(call(f"m{marks}", pilot="60141", caller="6"))
                    marks += 1

            publish(50)
            wait_for(lambda: sum(1 for s, st in sim.webhook_log if s == sid) >= 50, 20, "50 POSTs answered")
            proxy.mode = "blackhole"  # Kafka goes away: 2xx only once spooled (after spool_after)
            for round_ in range(1, 21):  # paced by the daemon's answers, not by the clock
                publish(5)
                wait_for(
                    lambda n=50 + 5 * round_: sum(1 for s, st in sim.webhook_log if s == sid) >= n,
                    30,
                    "POSTs answered during the outage",
                )
            wait_for(
                lambda: sum(1 for s, st in sim.webhook_log if s == sid and 200 <= st < 300) >= 80,
                30,
                "POSTs answered during the outage",
            )
            assert first.process is not None
            first.process.kill()  # SIGKILL
            first.process.wait()
        finally:
            first.kill()
        durable = sum(1 for s, status in sim.webhook_log if s == sid and 200 <= status < 300)
        proxy.mode = "pass"
        second = Daemon(config, port, tmp_path / "second.log").start()
        try:
            second.wait_ready()
            got: set[str] = set()

            def all_in_kafka() -> bool:
                nonlocal got
                records = read_back(bootstrap, "whk.o2g.pilot", expected=10**9, timeout=2)
                got = {orjson.loads(r.value or b"{}").get("callRef") for r in records}
                return all(f"m{i}" in got for i in range(durable))

            wait_for(all_in_kafka, 60, "every event answered 2xx in Kafka", second)
            assert second.terminate(timeout=15) == 0, second.log()
        finally:
            second.kill()
    assert durable >= 80  # POSTs were answered 2xx during the outage (spooled), not refused
    missing = [f"m{i}" for i in range(durable) if f"m{i}" not in got]
    assert not missing, f"{len(missing)} of {durable} events answered 2xx are not in Kafka: {missing[:5]}"

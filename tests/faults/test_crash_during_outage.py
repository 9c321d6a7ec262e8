"""Fault injection with real processes: the daemon is SIGKILLed during a Kafka outage while the
O2G chunk channel keeps delivering. O2G cannot resend what it wrote on the channel, so what the
daemon read must survive the crash: after a restart, every event the simulator wrote is in
Kafka. (What a push source read in the last write-ahead commit interval before a SIGKILL may be
lost, README "Guarantees"; here the kill comes once the daemon's database holds everything it read
and Kafka did not acknowledge, so nothing may be.)"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamd.embedded import free_port
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import (
    broker_behind_proxy,
    metric,
    o2g_sim_process,
    published,
    received,
    sim_call,
    spooled_rows,
    wait_for,
    write_config,
)
from tests.kafka_helpers import read_back

pytestmark = pytest.mark.kafka

RATE = 300  # events/s written by the simulator
STAMP = "simStamp"  # a unique field per event (the simulator's time_ns when it queued it)
TOPICS = ("crash.o2g.agent", "crash.o2g.telephony", "crash.o2g.pilot")
RAW = ("o2g.agent", "o2g.telephony", "o2g.pilot")  # the received metric's topics carry no prefix


@pytest.mark.parametrize("outage", ["blackhole", "refuse"])
def test_sigkill_during_an_outage_loses_at_most_one_commit_interval(tmp_path: Path, outage: str) -> None:
    port = free_port()
    with (
        o2g_sim_process("--agents", "30", "--rate", "0", "--stamp", STAMP) as sim_url,
        broker_behind_proxy() as (bootstrap, proxy),
    ):
        # spool_after and delivery_timeout far beyond the test's own waits: what the daemon read
        # during a black hole stays neither acknowledged nor spooled, only written ahead, until the
        # kill (a refusing broker gets it spooled at once).
        config = write_config(
            tmp_path,
            port,
            f"{{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: 'crash.',"
            " spool_after: 60s, delivery_timeout: 60s, startup_timeout: 20s}",
            "shutdown_grace: 5s",
            "sources:",
            f"  - {{kind: o2g, name: pbx, url: '{sim_url}', username: admin, password: admin,"
            " packages: [agent, telephony, pilot], snapshot: false}",
        )
        first = Daemon(config, port, tmp_path / "first.log").start()
        try:
            first.wait_ready()
            base = sim_call(sim_url, "rate", rate=RATE)["published"]
            wait_for(lambda: published(first) >= RATE, 30, "traffic flowing into Kafka", first)
            proxy.mode = outage  # type: ignore[assignment]
            in_kafka = published(first)
            wait_for(  # traffic the daemon read during the outage
                lambda: received(first, *RAW) >= in_kafka + RATE, 30, "traffic read during the outage", first
            )
            sim_call(sim_url, "pause")  # the channel goes quiet ...
            written = sim_call(sim_url, "stats")
            sent = written["published"] - written["queued"]

            def all_durable() -> bool:  # ... once the daemon has read all it was sent, and holds
                read = received(first, *RAW)  # what Kafka did not acknowledge in its database
                acknowledged = published(first, *RAW)
                return read >= sent and acknowledged + spooled_rows(tmp_path / "spool.db", *TOPICS) >= read

            wait_for(all_durable, 30, "everything sent read and written ahead", first)
            if outage == "blackhole":  # nothing was acknowledged or spooled since
                assert metric(first, "streamd_spool_events") == 0, first.log()
            assert first.process is not None
            first.process.kill()  # SIGKILL, with everything read since the outage unacknowledged
            first.process.wait()
        finally:
            first.kill()
        stats = sim_call(sim_url, "rate", rate=0)
        queued = sim_call(sim_url, "stats")["queued"]  # never written: the dead subscription's
        written_total = stats["published"] - base - queued
        proxy.mode = "pass"
        second = Daemon(config, port, tmp_path / "second.log").start()
        try:
            second.wait_ready()
            wait_for(lambda: metric(second, "streamd_spool_events") == 0, 30, "spool drained", second)
            if outage == "blackhole":
                assert "were not acknowledged: spooled again" in second.log()
            code = second.terminate(timeout=10)
        finally:
            second.kill()
        assert code == 0, second.log()
        stamps = {
            orjson.loads(r.value or b"{}").get(STAMP)
            for topic in TOPICS
            for r in read_back(bootstrap, topic, expected=written_total, timeout=5)
        }
        stamps.discard(None)
    assert written_total > RATE * 2  # the test ran under traffic
    assert len(stamps) == written_total, f"{written_total - len(stamps)} of {written_total} events lost"

"""Fault injection with real processes: the daemon is SIGKILLed during a Kafka outage while the
O2G chunk channel keeps delivering. O2G cannot resend what it wrote on the channel, so what the
daemon read must survive the crash: after a restart, every event the simulator wrote is in
Kafka. (What a push source read in the last write-ahead commit interval before a SIGKILL may be
lost, README "Guarantees"; the channel is quiet for longer than that before the kill here, so
nothing may be.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio.from_thread
import httpx
import orjson
import pytest

from streamd.embedded import EmbeddedBroker, free_port
from tests.e2e.daemon import Daemon
from tests.e2e.test_daemon_process import write_config
from tests.faults.proxy import FaultProxy
from tests.kafka_helpers import read_back

pytestmark = pytest.mark.kafka

RATE = 300  # events/s written by the simulator
STAMP = "simStamp"  # a unique field per event (the simulator's time_ns when it queued it)
TOPICS = ("crash.o2g.agent", "crash.o2g.telephony", "crash.o2g.pilot")


def _sim(sim_url: str, action: str, **params: object) -> dict[str, int]:
    return dict(httpx.post(f"{sim_url}/_sim/{action}", params=params, timeout=5).json())


def _spool_events(daemon: Daemon) -> float:
    try:
        text = httpx.get(daemon.url("/metrics"), timeout=2).text
    except httpx.HTTPError:
        return -1
    lines = [line for line in text.splitlines() if line.startswith("streamd_spool_events ")]
    return float(lines[0].split()[1]) if lines else -1


@pytest.mark.parametrize("outage", ["blackhole", "refuse"])
def test_sigkill_during_an_outage_loses_at_most_one_commit_interval(tmp_path: Path, outage: str) -> None:
    sim_port, port, broker_port, proxy_port = free_port(), free_port(), free_port(), free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim = subprocess.Popen(
        [sys.executable, "-m", "streamd.sim.o2g", "--port", str(sim_port), "--agents", "30", "--rate", "0",
         "--stamp", STAMP],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proxy = FaultProxy(proxy_port, broker_port).start()
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            broker = EmbeddedBroker(port=broker_port, advertised_port=proxy_port)
            bootstrap = portal.call(broker.__aenter__)
            try:
                config = write_config(
                    tmp_path,
                    port,
                    f"{{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: 'crash.',"
                    " spool_after: 1s, delivery_timeout: 5s, startup_timeout: 20s}",
                    "shutdown_grace: 5s",
                    "sources:",
                    f"  - {{kind: o2g, name: pbx, url: '{sim_url}', username: admin, password: admin,"
                    " packages: [agent, telephony, pilot], snapshot: false}",
                )
                first = Daemon(config, port, tmp_path / "first.log").start()
                try:
                    first.wait_ready()
                    base = _sim(sim_url, "rate", rate=RATE)["published"]
                    time.sleep(2)  # flowing into Kafka
                    proxy.mode = outage  # type: ignore[assignment]
                    # Killed before kafka.spool_after (1 s): a black hole leaves what was read since
                    # neither acknowledged nor spooled, only written ahead; a refusing broker gets
                    # it spooled at once.
                    time.sleep(0.3)
                    _sim(sim_url, "pause")  # the channel goes quiet: the daemon has read all it got
                    time.sleep(0.3)
                    assert first.process is not None
                    first.process.kill()  # SIGKILL, traffic still flowing
                    first.process.wait()
                finally:
                    first.kill()
                stats = _sim(sim_url, "rate", rate=0)
                queued = _sim(sim_url, "stats")["queued"]  # never written: the dead subscription's
                written = stats["published"] - base - queued
                proxy.mode = "pass"
                second = Daemon(config, port, tmp_path / "second.log").start()
                try:
                    second.wait_ready()
                    end = time.monotonic() + 30
                    while _spool_events(second) != 0 and time.monotonic() < end:
                        time.sleep(0.2)
                    assert _spool_events(second) == 0, second.log()
                    if outage == "blackhole":
                        assert "were not acknowledged: spooled again" in second.log()
                    code = second.terminate(timeout=10)
                finally:
                    second.kill()
                assert code == 0, second.log()
                stamps = {
                    orjson.loads(r.value or b"{}").get(STAMP)
                    for topic in TOPICS
                    for r in read_back(bootstrap, topic, expected=written, timeout=5)
                }
                stamps.discard(None)
            finally:
                portal.call(broker.__aexit__, None, None, None)
    finally:
        proxy.close()
        sim.terminate()
        sim.wait(10)
    assert written > RATE * 2  # the test ran under traffic
    assert len(stamps) == written, f"{written - len(stamps)} of {written} events lost"

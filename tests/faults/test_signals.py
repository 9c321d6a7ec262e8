"""Fault injection with real processes: stop signals (README "Operations").

SIGHUP is a clean stop like SIGTERM (the O2G subscription and session are deleted, everything
acknowledged is in Kafka, exit 0); a signal during start-up stops cleanly with exit 0; a second
SIGTERM stops at once instead of waiting out the shutdown grace (exit 0, nothing read is lost: what
Kafka had not acknowledged stays in the spool for the next start); a webhook POST during the
shutdown is answered 503, never 404 (O2G treats a 4xx as final).

The slow stop the second signal cuts short is real: Kafka is black-holed with deliveries pending in
the producer, so the first stop would wait for them until ``shutdown_grace`` (60 s) ends.
"""

from __future__ import annotations

import signal
from pathlib import Path

import anyio.from_thread
import httpx
import orjson
import pytest
from confluent_kafka import Consumer

from streamd.embedded import free_port
from streamd.sim.o2g import O2GSimulator
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import (
    broker_behind_proxy,
    embedded_broker,
    exit_code,
    log_lines,
    metric,
    o2g_sim_process,
    received,
    sim_call,
    wait_for,
    write_config,
)
from tests.faults.proxy import FaultProxy
from tests.kafka_helpers import read_back

GRACE = 60  # seconds: a first stop may take this long; a second signal must not wait for it
STAMP = "simStamp"  # a unique field per simulated event (the simulator's time_ns when it queued it)
RAW = ("o2g.agent", "o2g.telephony", "o2g.pilot")  # one record per O2G event read


# -- helpers -----------------------------------------------------------------------------------


def _signal(daemon: Daemon, signum: signal.Signals) -> None:
    assert daemon.process is not None
    daemon.process.send_signal(signum)


def _topics(bootstrap: str, prefix: str) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "streamd-tests"})
    try:
        return sorted(t for t in consumer.list_topics(timeout=10).topics if t.startswith(prefix))
    finally:
        consumer.close()


# -- SIGHUP ------------------------------------------------------------------------------------


@pytest.mark.kafka
def test_sighup_under_o2g_chunk_traffic_is_a_clean_stop(tmp_path: Path) -> None:
    port = free_port()
    with embedded_broker() as bootstrap, anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(O2GSimulator(agents=30, rate=0)) as sim:
            config = write_config(
                tmp_path,
                port,
                f"{{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: 'hup.'}}",
                "shutdown_grace: 10s",
                "sources:",
                f"  - {{kind: o2g, name: pbx, url: '{sim.url}', username: admin, password: admin,"
                " packages: [agent, telephony, pilot]}",
                http="auth_token: not-a-real-token",
            )
            daemon = Daemon(config, port, tmp_path / "daemon.log").start()
            try:
                daemon.wait_ready()
                sim_call(sim.url, "rate", rate=300)
                wait_for(lambda: received(daemon, *RAW) >= 300, 30, "traffic", daemon)
                _signal(daemon, signal.SIGHUP)  # under traffic
                code = exit_code(daemon, within=10 + 10)
            finally:
                daemon.kill()
            sim_call(sim.url, "rate", rate=0)
            sessions = portal.call(lambda: len(sim.sessions))
            deletes = portal.call(lambda: [(r.path, r.status) for r in sim.requests if r.method == "DELETE"])
        log = daemon.log_path.read_text()
        assert code == 0, log
        acknowledged = int(log.rsplit("streamd stopped: ", 1)[1].split(" ", 1)[0])
        in_kafka = sum(
            len(read_back(bootstrap, topic, expected=10**9, timeout=3))
            for topic in _topics(bootstrap, "hup.")
        )
    assert "received SIGHUP: stopping cleanly" in log
    assert "SIGHUP stops streamd like SIGTERM, it does not reload the config" in log
    assert "Traceback" not in log
    assert "http.auth_token is not set" not in log  # a token is configured: no warning
    # The O2G subscription and session were deleted (not left to expire with their queue).
    assert sessions == 0
    assert [s for p, s in deletes if p.startswith("/api/rest/1.0/subscriptions/")] == [204], deletes
    assert ("/api/rest/1.0/sessions", 204) in deletes
    assert acknowledged >= 300
    assert in_kafka >= acknowledged  # at least once: nothing acknowledged is missing


# -- start-up ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_start_up_is_a_clean_stop(tmp_path: Path, signum: signal.Signals) -> None:
    """Kafka is not reachable yet (nobody listens), so the daemon is in its start-up for 60 s."""
    port = free_port()
    config = write_config(
        tmp_path, port, f"{{bootstrap_servers: '127.0.0.1:{free_port()}', startup_timeout: 60s}}"
    )
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    try:
        wait_for(lambda: log_lines(daemon, "connecting to Kafka at") >= 1, 30, "start-up", daemon)
        _signal(daemon, signum)
        code = exit_code(daemon, within=20)
    finally:
        daemon.kill()
    log = daemon.log_path.read_text()
    assert code == 0, log  # not 143 (killed by the signal), not 1 (a fatal error)
    assert f"received {signum.name}: stopping cleanly" in log
    assert "stopped during start-up, before Kafka was reached" in log
    assert "streamd stopped: 0 events acknowledged" in log
    assert "fatal" not in log
    assert "Traceback" not in log


# -- a second SIGTERM --------------------------------------------------------------------------


def _stop_slowly(daemon: Daemon, sim_url: str, proxy: FaultProxy, *, read_all: bool = True) -> int:
    """Black-hole Kafka under O2G traffic until deliveries are pending (the pipeline gave up on some
    and spooled them), stop the traffic (``read_all``: once the daemon has read all of it), then
    SIGTERM: the stop now waits for Kafka until the grace ends. Returns once the sources are
    stopped, with the number of events the simulator wrote since the traffic started."""
    base = sim_call(sim_url, "rate", rate=300)["published"]
    wait_for(lambda: metric(daemon, "streamd_events_published_total") >= 300, 30, "traffic in Kafka", daemon)
    proxy.mode = "blackhole"
    wait_for(lambda: metric(daemon, "streamd_spool_events") > 0, 30, "events spooled", daemon)
    written = sim_call(sim_url, "rate", rate=0)["published"] - base
    if read_all:
        wait_for(lambda: sim_call(sim_url, "stats")["queued"] == 0, 10, "traffic written")
        wait_for(lambda: received(daemon, *RAW) >= written, 10, "traffic read", daemon)
    _signal(daemon, signal.SIGTERM)
    wait_for(
        lambda: log_lines(daemon, "sources stopped: publishing what is queued") >= 1,
        20,
        "sources stopped",
        daemon,
    )
    return written


@pytest.mark.kafka
def test_a_second_sigterm_stops_at_once_and_loses_nothing(tmp_path: Path) -> None:
    port = free_port()
    with (
        o2g_sim_process("--agents", "30", "--rate", "0", "--stamp", STAMP) as sim_url,
        broker_behind_proxy() as (bootstrap, proxy),
    ):
        config = write_config(
            tmp_path,
            port,
            f"{{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: 'twice.',"
            " spool_after: 1s, delivery_timeout: 60s, startup_timeout: 20s}",
            f"shutdown_grace: {GRACE}s",
            "sources:",
            f"  - {{kind: o2g, name: pbx, url: '{sim_url}', username: admin, password: admin,"
            " packages: [agent, telephony, pilot], snapshot: false}",
        )
        first = Daemon(config, port, tmp_path / "first.log").start()
        try:
            first.wait_ready()
            written = _stop_slowly(first, sim_url, proxy)
            _signal(first, signal.SIGTERM)  # the second one
            code = exit_code(first, within=GRACE / 3)  # well under the grace
        finally:
            first.kill()
        log = first.log_path.read_text()
        proxy.mode = "pass"
        second = Daemon(config, port, tmp_path / "second.log").start()
        try:
            second.wait_ready()  # the spool drains into Kafka
            wait_for(lambda: metric(second, "streamd_spool_events") == 0, 30, "spool drained", second)
            second_code = second.terminate(timeout=GRACE)
        finally:
            second.kill()
        stamps = {
            orjson.loads(r.value or b"{}").get(STAMP)
            for topic in RAW
            for r in read_back(bootstrap, f"twice.{topic}", expected=written, timeout=5)
        }
        stamps.discard(None)
    assert code == 0, log
    assert "second signal (SIGTERM): stopping now" in log
    assert f"shutdown grace {GRACE:.1f}s elapsed" not in log
    assert "Traceback" not in log
    assert second_code == 0, second.log()
    assert written >= 300
    assert len(stamps) == written, f"{written - len(stamps)} of {written} events lost"


# -- webhooks during the shutdown --------------------------------------------------------------


@pytest.mark.kafka
def test_a_webhook_post_during_the_shutdown_gets_503(tmp_path: Path) -> None:
    port = free_port()
    hook = f"http://127.0.0.1:{port}/webhooks/o2g/wh"
    with (
        o2g_sim_process("--agents", "30", "--rate", "0") as sim_url,
        broker_behind_proxy() as (bootstrap, proxy),
    ):
        config = write_config(
            tmp_path,
            port,
            f"{{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: 'wh.',"
            " spool_after: 1s, delivery_timeout: 60s, startup_timeout: 20s}",
            f"shutdown_grace: {GRACE}s",
            "sources:",
            f"  - {{kind: o2g, name: pbx, url: '{sim_url}', username: admin, password: admin,"
            " packages: [agent, telephony, pilot], snapshot: false}",
            f"  - {{kind: o2g, name: wh, url: '{sim_url}', username: admin, password: admin,"
            f" packages: [eventSummary], delivery: webhook, webhook_public_url: '{hook}',"
            " webhook_deadline: 5s}",
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log").start()
        try:
            daemon.wait_ready()
            _stop_slowly(daemon, sim_url, proxy, read_all=False)  # no traffic for wh
            # The webhook source has stopped (unsubscribed); HTTP is still up while the stop
            # waits for Kafka.
            stopped = httpx.post(hook, content=b'{"eventName":"OnPilotCallQueued"}', timeout=5)
            unknown = httpx.post(daemon.url("/webhooks/o2g/nosuch"), content=b"{}", timeout=5)
            errors = metric(daemon, "streamd_errors_total", source="wh", error_type="shutting_down")
            _signal(daemon, signal.SIGTERM)  # no need to wait out the grace
            code = exit_code(daemon, within=GRACE / 3)
        finally:
            daemon.kill()
    log = daemon.log_path.read_text()
    assert stopped.status_code == 503, stopped.text
    assert "shutting down" in stopped.json()["error"]
    assert stopped.headers["Retry-After"].isdigit()
    assert unknown.status_code == 404  # a route no source ever had: nothing to retry
    assert errors == 1
    assert code == 0, log
    assert "Traceback" not in log

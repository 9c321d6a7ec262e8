"""The real process: ``streamd run`` with an embedded broker, ready, metrics, clean SIGTERM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamd.embedded import free_port
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import embedded_broker, o2g_sim_process, published, wait_for, write_config
from tests.kafka_helpers import read_back

pytestmark = pytest.mark.kafka


def test_run_ready_metrics_and_clean_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, "{bootstrap_servers: embedded}", "shutdown_grace: 3s")
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    try:
        ready = daemon.wait_ready()
        components = ready["components"]
        assert isinstance(components, dict)
        assert components["kafka"] == {"kind": "publisher", "state": "running", "detail": ""}
        assert set(components) == {"kafka", "wallboard"}  # the feed is listed, never holds readiness
        assert ready["readiness"] == "any"
        assert httpx.get(daemon.url("/livez")).text == "ok\n"
        metrics = httpx.get(daemon.url("/metrics")).text
        assert 'streamd_component_state{component="kafka",state="running"} 1.0' in metrics
        assert "streamd_publish_latency_seconds_bucket" in metrics
        code = daemon.terminate(timeout=3 + 2)
    finally:
        daemon.kill()
    assert code == 0, daemon.log()
    log = daemon.log_path.read_text()
    assert "streamd stopped: 0 events acknowledged by Kafka" in log
    assert "Traceback" not in log
    # No auth_token: one warning at start naming what is open, and where.
    warnings = [line for line in log.splitlines() if "http.auth_token is not set" in line]
    assert len(warnings) == 1, log
    assert "WARNING" in warnings[0]
    for what in (f"127.0.0.1:{port}", "/wallboard", "/api/v1/state", "/api/v1/stream"):
        assert what in warnings[0], warnings[0]


def test_unreachable_kafka_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(
        tmp_path, port, f"{{bootstrap_servers: '127.0.0.1:{free_port()}', startup_timeout: 1s}}"
    )
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    assert daemon.process is not None
    try:
        code = daemon.process.wait(timeout=20)
    finally:
        daemon.kill()
    log = daemon.log()
    assert code == 1
    fatal = [line for line in log.splitlines() if line.startswith("streamd: fatal: ")]
    assert len(fatal) == 1, log
    match = re.fullmatch(
        r"streamd: fatal: Kafka at 127\.0\.0\.1:(\d+) unreachable: gave up after (\d+\.\d)s "
        r"\(kafka\.startup_timeout: 1s, (\d+) attempts\): KafkaConnectionError: .+ "
        r"\(aiokafka logged (\d+) lines?, the last: Unable connect to .+\)",
        fatal[0],
    )
    assert match, fatal[0]
    assert float(match.group(2)) >= 1.0  # the whole startup_timeout was used, and said so
    assert int(match.group(3)) > 1  # retried ...
    assert int(match.group(4)) >= 1  # ... and what aiokafka logged meanwhile is folded into the line
    assert "KafkaConnectionError: KafkaConnectionError" not in log  # said once
    assert [line for line in log.splitlines() if "aiokafka" in line] == [fatal[0]]
    assert "Traceback" not in log


@pytest.fixture
def outside_broker() -> Iterator[str]:
    """An embedded broker the daemon reaches as if it were real Kafka: it refuses InitProducerId."""
    with embedded_broker() as bootstrap:
        yield bootstrap


def test_a_broker_refusing_idempotence_with_auto_falls_back_with_one_warning(
    tmp_path: Path, outside_broker: str
) -> None:
    port = free_port()

    def started_and_stopped(kafka: str, log_name: str) -> str:
        """Start a daemon with ``kafka`` as its kafka section, stop it once ready: its log."""
        daemon = Daemon(write_config(tmp_path, port, kafka), port, tmp_path / log_name).start()
        try:
            daemon.wait_ready()
            code = daemon.terminate(timeout=10 + 2)
        finally:
            daemon.kill()
        log = daemon.log()
        assert code == 0, log
        return log

    log = started_and_stopped(f"{{bootstrap_servers: '{outside_broker}', acks: 1}}", "daemon.log")
    # acks: 1 is said loudly, once, at start
    acks = [line for line in log.splitlines() if "kafka.acks is 1, not all" in line]
    assert len(acks) == 1, log
    assert "WARNING" in acks[0]
    assert "refused an idempotent producer" not in log  # acks: 1 never asks for idempotence

    log = started_and_stopped(f"{{bootstrap_servers: '{outside_broker}'}}", "daemon2.log")  # auto
    warnings = [line for line in log.splitlines() if "refused an idempotent producer" in line]
    assert len(warnings) == 1, log
    assert "WARNING" in warnings[0]
    assert "idempotence off" in warnings[0]
    assert "kafka.idempotence: false" in warnings[0]
    assert "kafka.acks is" not in log  # acks: all (the default): no warning


def test_a_broker_refusing_idempotence_when_required_is_one_fatal_line_naming_the_setting(
    tmp_path: Path, outside_broker: str
) -> None:
    port = free_port()
    config = write_config(
        tmp_path, port, f"{{bootstrap_servers: '{outside_broker}', idempotence: true, startup_timeout: 60s}}"
    )
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    assert daemon.process is not None
    try:
        code = daemon.process.wait(timeout=30)  # at once, not after startup_timeout
    finally:
        daemon.kill()
    log = daemon.log()
    assert code == 1, log
    fatal = [line for line in log.splitlines() if line.startswith("streamd: fatal: ")]
    assert len(fatal) == 1, log
    assert "refused an idempotent producer" in fatal[0]
    assert "set kafka.idempotence: false" in fatal[0]
    assert "unreachable" not in fatal[0]


def _read_all(bootstrap: str, topics: list[str]) -> int:
    return sum(len(read_back(bootstrap, t, expected=10**9, timeout=3)) for t in topics)


def test_o2g_events_acknowledged_are_all_in_kafka_after_sigterm(tmp_path: Path) -> None:
    """The real process against the O2G simulator (its own process) and a broker that outlives
    the daemon: after SIGTERM every event the daemon counted as acknowledged is in Kafka."""
    port = free_port()
    with o2g_sim_process("--agents", "10", "--rate", "200") as sim_url, embedded_broker() as bootstrap:
        config = write_config(
            tmp_path,
            port,
            f"{{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: 'e2e.'}}",
            "shutdown_grace: 5s",
            "sources:",
            f"  - {{kind: o2g, name: pbx, url: '{sim_url}', username: admin, password: admin,"
            " packages: [agent, telephony, pilot]}",
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log").start()
        try:
            ready = daemon.wait_ready()
            assert ready["components"]["pbx"]["state"] == "running"  # type: ignore[index]
            wait_for(lambda: published(daemon) >= 200, 30, "200 events in Kafka", daemon)
            code = daemon.terminate(timeout=5 + 2)
        finally:
            daemon.kill()
        assert code == 0, daemon.log()
        match = re.search(r"streamd stopped: (\d+) events acknowledged", daemon.log())
        assert match, daemon.log()
        acknowledged = int(match.group(1))
        assert acknowledged >= 200
        topics = [
            "e2e.o2g.agent",
            "e2e.o2g.telephony",
            "e2e.agent-state",
            "e2e.o2g.pilot",
            "e2e.queue-metrics",
        ]
        in_kafka = _read_all(bootstrap, topics)
    assert in_kafka >= acknowledged  # at least once: nothing acknowledged is missing
    assert "Traceback" not in daemon.log()
    assert "streamd running: 1 source, http on port" in daemon.log()  # not "1 sources"


def test_busy_http_port_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port, "{bootstrap_servers: embedded}")
        daemon = Daemon(config, port, tmp_path / "daemon.log").start()
        assert daemon.process is not None
        try:
            code = daemon.process.wait(timeout=30)
        finally:
            daemon.kill()
    assert code == 1
    assert f"streamd: fatal: http.listen 127.0.0.1:{port}: cannot listen" in daemon.log()
    assert "Traceback" not in daemon.log()

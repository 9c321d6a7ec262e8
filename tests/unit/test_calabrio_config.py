"""The ``kind: calabrio`` config: defaults, validation, secrets."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from streamd.sources.calabrio.config import CalabrioSourceConfig

BASE: dict[str, Any] = {
    "kind": "calabrio",
    "name": "wfm",
    "url": "https://c.example",
    "username": "u",
    "password": "pw",
}


def test_design_sketch_fields_and_defaults() -> None:
    cfg = CalabrioSourceConfig.model_validate({**BASE, "interval": "10s", "adherence": True})
    assert (cfg.interval, cfg.adherence, cfg.overlap, cfg.agent_ids) == (10.0, True, 120.0, [])
    assert cfg.activity_path == "/api/rest/scheduling/realTime/activity/detail"
    assert "pw" not in repr(cfg)


@pytest.mark.parametrize(
    "bad",
    [
        {"tenant_timezone": "Mars/Olympus"},
        {"max_window": "32d"},
        {"overlap": "2d", "max_window": "1d"},
        {"adherence_page_size": 201},
        {"url": "calabrio.example"},
        {"typo": 1},
    ],
)
def test_invalid_settings_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CalabrioSourceConfig.model_validate({**BASE, **bad})

"""The ``kind: calabrio`` config: defaults, validation, secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamd.errors import FatalError
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.source import CalabrioSource
from tests.helpers import source_deps

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
        {"adherence_max_pages": 0},
        {"adherence_max_pages": 501},
        {"verify_tls": "sometimes"},
        {"url": "calabrio.example"},
        {"typo": 1},
    ],
)
def test_invalid_settings_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CalabrioSourceConfig.model_validate({**BASE, **bad})


def test_tls_fields_are_the_shared_ones_and_a_bad_ca_file_fails_only_when_used(tmp_path: Path) -> None:
    cfg = CalabrioSourceConfig.model_validate(BASE)
    assert (cfg.verify_tls, cfg.ca_file, cfg.adherence_max_pages) == (True, None, 50)
    missing = tmp_path / "missing.pem"
    src = CalabrioSource(
        CalabrioSourceConfig.model_validate({**BASE, "ca_file": str(missing)}), source_deps("wfm")
    )
    with pytest.raises(FatalError, match=f"calabrio source wfm: cannot use ca_file {missing}"):
        src.verify()  # raised in a job's session, so that job fails (failed_retry), not the daemon

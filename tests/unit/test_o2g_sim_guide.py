"""The O2G simulator states the guide's package lists itself; they must agree with the product's."""

from __future__ import annotations

from pathlib import Path

import pytest

import streamd.sim.o2g as sim_o2g
from streamd.sim.o2g import PACKAGE_EVENTS as SIMULATOR
from streamd.sim.o2g.__main__ import main
from streamd.sources.o2g.config import PACKAGE_EVENTS as PRODUCT


def test_the_simulator_and_the_product_read_the_same_package_lists() -> None:
    assert SIMULATOR == PRODUCT


def test_the_simulator_command_line_prints_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m streamd.sim.o2g")
    for option in ("--port", "--agents", "--rate", "--events-per-chunk", "--stamp", "--deviate"):
        assert option in out


def test_the_simulator_imports_nothing_from_the_product() -> None:
    package = Path(sim_o2g.__file__).parent
    for module in sorted(package.glob("*.py")):
        assert "streamd.sources" not in module.read_text(), module.name

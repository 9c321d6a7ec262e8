"""The O2G simulator states the guide's package lists itself; they must agree with the product's."""

from __future__ import annotations

from streamd.sim.o2g import PACKAGE_EVENTS as SIMULATOR
from streamd.sources.o2g.config import PACKAGE_EVENTS as PRODUCT


def test_the_simulator_and_the_product_read_the_same_package_lists() -> None:
    assert SIMULATOR == PRODUCT

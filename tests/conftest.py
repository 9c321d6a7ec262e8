"""Shared test configuration: async tests run on anyio's pytest plugin with asyncio."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Every async test runs on asyncio (streamd's runtime)."""
    return "asyncio"

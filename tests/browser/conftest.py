"""Headless Chromium for the browser tests (Debian's ``chromium`` package, not Playwright's build)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed on exit (enter it in the test body)."""
    if not Path(CHROMIUM).exists():
        reason = "Debian chromium is not installed (apt-get install chromium; .ci/run does it)"
        if os.environ.get("CI"):  # CI must run the browser tests, never skip them
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()

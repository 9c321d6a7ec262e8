"""Headless Chromium for the browser tests (Debian's ``chromium`` package, not Playwright's build),
the daemon with a ``wallboard:`` section, and screenshots attached to the test output."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from streamd.app import Runtime, run_daemon
from streamd.config import Config

# The suite runs two workers on two cores next to embedded brokers and daemons: a page can take
# longer than Playwright's default 5 s to show what the test waits for. Waiting for content, not
# time, stays the rule; this only moves the give-up point.
expect.set_options(timeout=20_000)

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
TV = {"width": 1920, "height": 1080}


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


@asynccontextmanager
async def wallboard_daemon(
    bootstrap: str,
    port: int,
    workdir: Path,
    *sources: Mapping[str, Any],
    wallboard: Mapping[str, Any] | None = None,
    cluster: Mapping[str, Any] | None = None,
    **http: Any,
) -> AsyncIterator[Runtime]:
    """The daemon (in process, default plugins) serving the wallboard on ``port`` with this
    ``wallboard:`` (and ``cluster:``) section, against an external (embedded) broker; stopped
    cleanly on exit."""
    config = Config.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap, "idempotence": False, "linger": "1ms"},
            "http": {"listen": f"127.0.0.1:{port}", **http},
            "spool": {"path": str(workdir / "spool.db")},
            "shutdown_grace": "2s",
            "wallboard": dict(wallboard or {}),
            "sources": [dict(s) for s in sources],
            **({"cluster": dict(cluster)} if cluster else {}),
        }
    )
    runtime = Runtime(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run_daemon, config, runtime=runtime, handle_signals=False))
        try:
            with anyio.fail_after(20):
                await runtime.ready.wait()
            yield runtime
        finally:
            runtime.stop.set()


async def screenshot(page: Page, tmp_path: Path, name: str) -> Path:
    """Save a screenshot under the test's tmp dir (and tests/browser/artifacts/), print its path."""
    shot = tmp_path / f"{name}.png"
    await page.screenshot(path=str(shot))
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / shot.name)
    print(f"screenshot: {shot} (copy: {ARTIFACTS / shot.name})")
    return shot

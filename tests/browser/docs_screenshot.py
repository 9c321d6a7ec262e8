"""Refresh ``docs/wallboard.png``: the demo's four simulators (20 agents each) behind the daemon
with ``config/demo.yaml``'s ``wallboard:`` section, at 1920x1080, after they ran a while.

Run by hand (not a test): ``python -m tests.browser.docs_screenshot [--wait 20] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import yaml
from playwright.async_api import expect

from streamd.demo import demo_simulators
from streamd.embedded import EmbeddedBroker, free_port
from tests.browser.conftest import TV, chromium, wallboard_daemon

ROOT = Path(__file__).parents[2]
AGENTS = 20


async def take(out: Path, wait: float) -> None:
    """Run the demo-like daemon, open the page, wait ``wait`` seconds of traffic, screenshot it."""
    wallboard = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text(encoding="utf-8"))["wallboard"]
    with tempfile.TemporaryDirectory() as workdir:
        async with AsyncExitStack() as stack:
            sources = [await stack.enter_async_context(sim(AGENTS)) for sim in demo_simulators()]
            bootstrap = await stack.enter_async_context(EmbeddedBroker())
            port = free_port()
            await stack.enter_async_context(
                wallboard_daemon(bootstrap, port, Path(workdir), *sources, wallboard=wallboard)
            )
            browser = await stack.enter_async_context(chromium())
            page = await browser.new_page(viewport=TV)
            await page.goto(f"http://127.0.0.1:{port}/wallboard?title=Contact%20centre%20%E2%80%94%20demo")
            await expect(page.locator("#updated")).to_contain_text(
                f"{AGENTS * len(sources)} agents", timeout=60_000
            )
            await anyio.sleep(wait)
            await page.screenshot(path=str(out))
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wait", type=float, default=20.0, help="seconds of traffic before the shot")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "wallboard.png")
    args = parser.parse_args()
    anyio.run(take, args.out, args.wait)


if __name__ == "__main__":
    main()

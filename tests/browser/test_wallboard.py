"""The wallboard page in headless Chromium against the real daemon and the embedded broker.

Canonical ``AgentState`` / ``QueueMetric`` events are published through a pipeline into the
broker; the daemon's wallboard reads them back from Kafka and streams them to the page.
"""

from __future__ import annotations

import shutil
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from streamd.app import Runtime
from streamd.embedded import EmbeddedBroker, free_port
from streamd.events import AgentState, Event, QueueMetric, State, utcnow
from tests.browser.conftest import ARTIFACTS, chromium
from tests.harness import publishing, running_daemon

pytestmark = [pytest.mark.anyio, pytest.mark.browser, pytest.mark.kafka]

DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "wallboard.png"


def daemon(bootstrap: str, port: int, workdir: Path, **http: Any) -> AbstractAsyncContextManager[Runtime]:
    """The daemon (in process) with the wallboard on ``port``, against an external (embedded) broker."""
    kafka = {"bootstrap_servers": bootstrap, "idempotence": False, "linger": "1ms"}
    return running_daemon(
        workdir, kafka=kafka, listen=f"127.0.0.1:{port}", http=http, shutdown_grace="2s", ready_timeout=20
    )


NAMES = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Frances Allen",
    "Ken Thompson",
    "Radia Perlman",
    "Tim Berners-Lee",
    "Margaret Hamilton",
    "Linus Torvalds",
    "Hedy Lamarr",
]
STATES = [
    (State.AVAILABLE, "READY", None),
    (State.BUSY, "BUSY", None),
    (State.BUSY, "BUSY", None),
    (State.AFTER_CALL_WORK, "WRAPUP", None),
    (State.NOT_READY, "WITHDRAW", "Lunch"),
    (State.AVAILABLE, "READY", None),
    (State.BUSY, "BUSY", None),
    (State.NOT_READY, "WITHDRAW", "Training"),
    (State.AVAILABLE, "READY", None),
    (State.BUSY, "BUSY", None),
    (State.AFTER_CALL_WORK, "WRAPUP", None),
    (State.BUSY, "BUSY", None),
    (State.AVAILABLE, "READY", None),
    (State.UNKNOWN, "ERROR", None),
]


def board() -> list[Event]:
    """A realistic board: agents of two sources in every state, and three queues."""
    now = utcnow()
    events = []
    for i, (name, (state, vendor_state, reason)) in enumerate(zip(NAMES, STATES, strict=True)):
        source, vendor = ("pbx-paris", "o2g") if i % 2 == 0 else ("xima-lyon", "xima")
        events.append(
            AgentState(
                vendor=vendor,
                source=source,
                agent_id=f"a{i}",
                agent_name=name,
                state=state,
                vendor_state=vendor_state,
                reason_code=reason,
                since=now - timedelta(seconds=37 * i + 5),
                queue_ids=("sales",) if i % 3 else ("support",),
            ).to_event()
        )
    metrics = [
        ("pbx-paris", "o2g", "sales", "Sales", "waiting_calls", 3, "calls"),
        ("pbx-paris", "o2g", "sales", "Sales", "longest_waiting_time_in_list", 48, "seconds"),
        ("pbx-paris", "o2g", "sales", "Sales", "service_level", 0.92, None),
        ("pbx-paris", "o2g", "support", "Support", "waiting_calls", 7, "calls"),
        ("pbx-paris", "o2g", "support", "Support", "longest_waiting_time_in_list", 131, "seconds"),
        ("pbx-paris", "o2g", "support", "Support", "service_level", 0.71, None),
        ("xima-lyon", "xima", "sales", "Sales Lyon", "waiting_calls", 0, "count"),
        ("xima-lyon", "xima", "sales", "Sales Lyon", "longest_wait", 0, "ms"),
    ]
    for source, vendor, queue, qname, metric, value, unit in metrics:
        events.append(
            QueueMetric(
                vendor=vendor,
                source=source,
                queue_id=queue,
                queue_name=qname,
                metric=metric,
                value=value,
                unit=unit,
            ).to_event()
        )
    return events


def card(page: Page, state: str, key: str) -> Any:
    return page.locator(f'.column[data-state="{state}"] .agent[data-key="{key}"]')


def change(i: int, state: State, vendor_state: str) -> Event:
    source, vendor = ("pbx-paris", "o2g") if i % 2 == 0 else ("xima-lyon", "xima")
    return AgentState(
        vendor=vendor,
        source=source,
        agent_id=f"a{i}",
        agent_name=NAMES[i],
        state=state,
        vendor_state=vendor_state,
        queue_ids=("sales",) if i % 3 else ("support",),
    ).to_event()


async def test_page_loads_shows_state_changes_within_two_seconds_and_screenshot(tmp_path: Path) -> None:
    port = free_port()
    async with (
        EmbeddedBroker() as bootstrap,
        daemon(bootstrap, port, tmp_path),
        publishing(bootstrap) as emit,
        chromium() as browser,
    ):
        await emit(board())
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        await page.goto(
            f"http://127.0.0.1:{port}/wallboard?title=Contact%20centre%20%E2%80%94%20Paris%20%26%20Lyon"
        )
        await expect(page.locator("#status")).to_have_text("LIVE", timeout=10_000)
        await expect(card(page, "available", "pbx-paris:a0")).to_be_visible(timeout=10_000)
        await expect(page.locator(".agent")).to_have_count(len(NAMES), timeout=10_000)
        await expect(page.locator('.tile[data-queue="pbx-paris:support"] .kpi.waiting .v')).to_have_text("7")
        await expect(page.locator('.tile[data-queue="pbx-paris:support"] .kpi.sl .v')).to_have_text("71%")
        await expect(page.locator('.tile[data-queue="pbx-paris:support"] .kpi.longest .v')).to_have_text(
            "2:11"
        )
        assert (
            await page.locator('.tile[data-queue="pbx-paris:support"]').get_attribute("class") == "tile warn"
        )
        await expect(page.locator('.count[data-state="busy"] .n')).to_have_text("5")
        await expect(card(page, "available", "pbx-paris:a0").locator(".icon")).to_have_attribute(
            "aria-label", "Available"
        )
        await expect(card(page, "not_ready", "pbx-paris:a4").locator(".sub")).to_have_text(
            "Lunch · WITHDRAW · pbx-paris"
        )
        await expect(page.locator("#banner")).to_be_hidden()

        await emit([change(0, State.BUSY, "BUSY")])
        await expect(card(page, "busy", "pbx-paris:a0")).to_be_visible(timeout=2_000)
        await expect(card(page, "available", "pbx-paris:a0")).to_have_count(0)
        await expect(card(page, "busy", "pbx-paris:a0").locator(".time")).to_have_text("0:00")
        await expect(card(page, "busy", "pbx-paris:a0").locator(".time")).to_have_text(
            "0:01", timeout=3_000
        )  # ticks

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "wallboard.png"
        await page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
        if not DOCS_SCREENSHOT.exists() and DOCS_SCREENSHOT.parent.is_dir():
            shutil.copyfile(shot, DOCS_SCREENSHOT)  # once; the README shows it


async def test_page_recovers_after_the_server_restarts_with_the_last_state(tmp_path: Path) -> None:
    port = free_port()
    async with EmbeddedBroker() as bootstrap, publishing(bootstrap) as emit, chromium() as browser:
        await emit([change(1, State.AVAILABLE, "READY"), change(2, State.AVAILABLE, "READY")])
        page = await browser.new_page()
        async with daemon(bootstrap, port, tmp_path):
            await page.goto(f"http://127.0.0.1:{port}/wallboard")
            await expect(card(page, "available", "xima-lyon:a1")).to_be_visible(timeout=10_000)
            await expect(page.locator("#status")).to_have_text("LIVE")
        # the daemon is gone: the page says so, clearly
        await expect(page.locator("#banner")).to_be_visible(timeout=5_000)
        await expect(page.locator("#banner")).to_contain_text("DISCONNECTED")
        await expect(page.locator("#status")).to_have_text("OFFLINE")
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "wallboard-disconnected.png"))
        await emit([change(2, State.NOT_READY, "WITHDRAW")])  # happens while the daemon is down

        async with daemon(bootstrap, port, tmp_path):
            # reconnects by itself; the restarted daemon rebuilt the board from the compacted topic
            await expect(page.locator("#status")).to_have_text("LIVE", timeout=10_000)
            await expect(page.locator("#banner")).to_be_hidden()
            await expect(card(page, "not_ready", "pbx-paris:a2")).to_be_visible(timeout=5_000)
            await expect(card(page, "available", "xima-lyon:a1")).to_be_visible()
            await emit([change(1, State.AFTER_CALL_WORK, "WRAPUP")])
            await expect(card(page, "after_call_work", "xima-lyon:a1")).to_be_visible(timeout=2_000)


async def test_token_and_url_filters(tmp_path: Path) -> None:
    port = free_port()
    token = "tv-token-123"
    async with (
        EmbeddedBroker() as bootstrap,
        daemon(bootstrap, port, tmp_path, auth_token=token),
        publishing(bootstrap) as emit,
        chromium() as browser,
    ):
        await emit(board())
        page = await browser.new_page()
        response = await page.goto(f"http://127.0.0.1:{port}/wallboard")
        assert response is not None
        assert response.status == 401
        await page.goto(f"http://127.0.0.1:{port}/wallboard?token={token}&source=xima-lyon&queue=sales")
        await expect(page.locator("#status")).to_have_text("LIVE", timeout=10_000)
        await expect(page.locator(".agent")).to_have_count(5, timeout=10_000)  # a1 a5 a7 a11 a13
        assert set(await page.locator(".agent").evaluate_all("els => els.map(e => e.dataset.key)")) == {
            "xima-lyon:a1",
            "xima-lyon:a5",
            "xima-lyon:a7",
            "xima-lyon:a11",
            "xima-lyon:a13",
        }
        await expect(page.locator(".tile")).to_have_count(1)
        await expect(page.locator("#filters")).to_contain_text("Source: xima-lyon")
        await emit([change(1, State.AVAILABLE, "READY"), change(0, State.AVAILABLE, "READY")])
        await expect(card(page, "available", "xima-lyon:a1")).to_be_visible(timeout=2_000)
        await expect(page.locator(".agent")).to_have_count(5)  # pbx-paris:a0 stays filtered out

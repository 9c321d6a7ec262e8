"""The wallboard page in headless Chromium against the real daemon and the embedded broker.

Canonical ``AgentState`` / ``QueueMetric`` events are published through a pipeline into the
broker (or come from the vendor simulators through their sources); the daemon's wallboard reads
them back from Kafka and streams them to the page. Every wait is for content (the SSE stream never
lets the network go idle). Screenshots go to the test's tmp dir and their paths are printed.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from streamd.embedded import EmbeddedBroker, free_port
from streamd.events import AgentState, Event, QueueMetric, State, utcnow
from tests.browser.conftest import TV, chromium, screenshot, wallboard_daemon
from tests.harness import publishing

pytestmark = [pytest.mark.anyio, pytest.mark.browser, pytest.mark.kafka]

DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "wallboard.png"
LONG_QUEUE = "International premium support — French, German and Dutch speaking customers"

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
    (State.NOT_READY, "WITHDRAW", "7"),
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


def source_of(i: int) -> tuple[str, str]:
    return ("pbx-paris", "o2g") if i % 2 == 0 else ("xima-lyon", "xima")


def metric(
    source: str, queue: str, name: str, value: Any, unit: str | None = None, qname: str | None = None
) -> Event:
    vendor = {"pbx-paris": "o2g", "xima-lyon": "xima"}.get(source, "test")
    return QueueMetric(
        vendor=vendor, source=source, queue_id=queue, queue_name=qname, metric=name, value=value, unit=unit
    ).to_event()


def board() -> list[Event]:
    """A realistic board: agents of two sources in every state, and four queues."""
    now = utcnow()
    events = []
    for i, (name, (state, vendor_state, reason)) in enumerate(zip(NAMES, STATES, strict=True)):
        source, vendor = source_of(i)
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
    events += [
        metric("pbx-paris", "sales", "waiting_calls", 3, "calls", "Sales"),
        metric("pbx-paris", "sales", "longest_waiting_time_in_list", 48, "seconds", "Sales"),
        metric("pbx-paris", "sales", "service_level", 0.92, None, "Sales"),
        metric("pbx-paris", "support", "waiting_calls", 7, "calls", "Support"),
        metric("pbx-paris", "support", "longest_waiting_time_in_list", 131, "seconds", "Support"),
        metric("pbx-paris", "support", "service_level", 0.71, None, "Support"),
        metric("xima-lyon", "sales", "Calls in Queue", 0, "count", "Sales Lyon"),
        metric("xima-lyon", "sales", "Average Wait", 42_000, "ms", "Sales Lyon"),
        metric("xima-lyon", "intl", "waiting", 2, "contacts", LONG_QUEUE),
        metric("xima-lyon", "intl", "service_level_percent", 88.0, "percent", LONG_QUEUE),
    ]
    return events


def card(page: Page, state: str, key: str) -> Any:
    return page.locator(f'.column[data-state="{state}"] .agent[data-key="{key}"]')


def tile(page: Page, queue: str) -> Any:
    return page.locator(f'.tile[data-queue="{queue}"]')


def kpi(page: Page, queue: str, name: str) -> Any:
    return tile(page, queue).locator(f'.kpi[data-metric="{name}"]')


def change(i: int, state: State, vendor_state: str) -> Event:
    source, vendor = source_of(i)
    return AgentState(
        vendor=vendor,
        source=source,
        agent_id=f"a{i}",
        agent_name=NAMES[i],
        state=state,
        vendor_state=vendor_state,
        queue_ids=("sales",) if i % 3 else ("support",),
    ).to_event()


def not_found(page: Page) -> list[str]:
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    return missing


async def test_page_loads_shows_state_changes_and_screenshot(tmp_path: Path) -> None:
    port = free_port()
    labels = {"pbx-paris": {"7": "Lunch"}}
    async with (
        EmbeddedBroker() as bootstrap,
        wallboard_daemon(bootstrap, port, tmp_path, wallboard={"reason_labels": labels}),
        publishing(bootstrap) as emit,
        chromium() as browser,
    ):
        await emit(board())
        page = await browser.new_page(viewport=TV)
        missing = not_found(page)
        await page.goto(
            f"http://127.0.0.1:{port}/wallboard?title=Contact%20centre%20%E2%80%94%20Paris%20%26%20Lyon"
        )
        await expect(page.locator("#status")).to_have_text("LIVE", timeout=10_000)
        await expect(card(page, "available", "pbx-paris:a0")).to_be_visible(timeout=10_000)
        # unknown and logged out are counters until expanded: 13 cards, the 14th is counted
        await expect(page.locator(".agent")).to_have_count(len(NAMES) - 1, timeout=10_000)
        await expect(page.locator('.count[data-state="unknown"] .n')).to_have_text("1")
        await page.locator('button.count[data-state="unknown"]').click()
        await expect(card(page, "unknown", "xima-lyon:a13")).to_be_visible()
        await expect(page.locator(".agent")).to_have_count(len(NAMES))

        await expect(kpi(page, "pbx-paris:support", "waiting").locator(".v")).to_have_text("7")
        await expect(kpi(page, "pbx-paris:support", "service_level_percent").locator(".v")).to_have_text(
            "71%"
        )
        longest = kpi(page, "pbx-paris:support", "longest_wait_seconds")
        await expect(longest.locator(".v")).to_contain_text("2:11")
        # the default threshold (today's 60 s alarm) holds: Support waits too long, Sales does not
        await expect(longest).to_have_attribute("data-level", "alert")
        await expect(tile(page, "pbx-paris:support")).to_have_attribute("data-level", "alert")
        assert await tile(page, "pbx-paris:sales").get_attribute("data-level") is None
        # vendor names are read as the canonical metrics, in canonical units
        await expect(kpi(page, "xima-lyon:sales", "waiting").locator(".v")).to_have_text("0")
        await expect(kpi(page, "xima-lyon:sales", "average_wait_seconds").locator(".v")).to_have_text("0:42")
        await expect(kpi(page, "xima-lyon:intl", "service_level_percent").locator(".v")).to_have_text("88%")
        # a long queue name wraps instead of being cut
        title = tile(page, "xima-lyon:intl").locator("h2")
        await expect(title).to_have_text(LONG_QUEUE)
        # shown, and not wider than its box: polled (the CI saw it once while the tile was not laid
        # out yet, on a loaded machine), never a timing assertion
        await page.wait_for_function(
            """() => {
                const e = document.querySelector('.tile[data-queue="xima-lyon:intl"] h2');
                return e !== null && e.getClientRects().length > 0 && e.scrollWidth <= e.clientWidth;
            }""",
            timeout=10_000,
        )
        assert await title.evaluate(
            "e => e.getBoundingClientRect().height > 1.5 * parseFloat(getComputedStyle(e).lineHeight)"
        )

        await expect(page.locator('.count[data-state="busy"] .n')).to_have_text("5")
        await expect(card(page, "available", "pbx-paris:a0").locator(".icon")).to_have_attribute(
            "aria-label", "Available"
        )
        # names, and reason codes with their labels
        await expect(card(page, "not_ready", "pbx-paris:a4").locator(".name")).to_have_text("Edsger Dijkstra")
        await expect(card(page, "not_ready", "pbx-paris:a4").locator(".sub")).to_have_text(
            "Lunch · pbx-paris"
        )
        await expect(card(page, "not_ready", "xima-lyon:a7").locator(".sub")).to_have_text(
            "Training · xima-lyon"
        )
        await expect(page.locator("#banner")).to_be_hidden()

        await emit([change(0, State.BUSY, "BUSY")])
        await expect(card(page, "busy", "pbx-paris:a0")).to_be_visible()
        await expect(card(page, "available", "pbx-paris:a0")).to_have_count(0)
        await expect(card(page, "busy", "pbx-paris:a0").locator(".time")).to_have_text("0:00")
        await expect(card(page, "busy", "pbx-paris:a0").locator(".time")).to_have_text(
            "0:01", timeout=3_000
        )  # ticks

        assert await page.evaluate("document.scrollingElement.scrollHeight") <= TV["height"]
        assert not [url for url in missing if url.endswith("favicon.ico")]
        assert not missing, missing
        shot = await screenshot(page, tmp_path, "wallboard")
        assert shot.stat().st_size > 10_000
        if not DOCS_SCREENSHOT.exists() and DOCS_SCREENSHOT.parent.is_dir():
            shutil.copyfile(shot, DOCS_SCREENSHOT)  # once; the README shows it


async def test_page_recovers_after_the_server_restarts_with_the_last_state(tmp_path: Path) -> None:
    port = free_port()
    async with EmbeddedBroker() as bootstrap, publishing(bootstrap) as emit, chromium() as browser:
        await emit([change(1, State.AVAILABLE, "READY"), change(2, State.AVAILABLE, "READY")])
        page = await browser.new_page()
        async with wallboard_daemon(bootstrap, port, tmp_path):
            await page.goto(f"http://127.0.0.1:{port}/wallboard")
            await expect(card(page, "available", "xima-lyon:a1")).to_be_visible(timeout=10_000)
            await expect(page.locator("#status")).to_have_text("LIVE")
        # the daemon is gone: the page says so, clearly
        await expect(page.locator("#banner")).to_be_visible(timeout=5_000)
        await expect(page.locator("#banner")).to_contain_text("DISCONNECTED")
        await expect(page.locator("#status")).to_have_text("OFFLINE")
        await screenshot(page, tmp_path, "wallboard-disconnected")
        await emit([change(2, State.NOT_READY, "WITHDRAW")])  # happens while the daemon is down

        async with wallboard_daemon(bootstrap, port, tmp_path):
            # reconnects by itself; the restarted daemon rebuilt the board from the compacted topic
            await expect(page.locator("#status")).to_have_text("LIVE", timeout=10_000)
            await expect(page.locator("#banner")).to_be_hidden()
            await expect(card(page, "not_ready", "pbx-paris:a2")).to_be_visible(timeout=5_000)
            await expect(card(page, "available", "xima-lyon:a1")).to_be_visible()
            await emit([change(1, State.AFTER_CALL_WORK, "WRAPUP")])
            await expect(card(page, "after_call_work", "xima-lyon:a1")).to_be_visible()


async def test_token_and_url_filters(tmp_path: Path) -> None:
    port = free_port()
    token = "tv-token-123"
    async with (
        EmbeddedBroker() as bootstrap,
        wallboard_daemon(bootstrap, port, tmp_path, auth_token=token),
        publishing(bootstrap) as emit,
        chromium() as browser,
    ):
        await emit(board())
        page = await browser.new_page()
        response = await page.goto(f"http://127.0.0.1:{port}/wallboard")
        assert response is not None
        assert response.status == 401
        base = f"http://127.0.0.1:{port}/wallboard?token={token}"
        await page.goto(f"{base}&source=xima-lyon&queue=sales&expand=unknown")
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
        await expect(card(page, "available", "xima-lyon:a1")).to_be_visible()
        await expect(page.locator(".agent")).to_have_count(5)  # pbx-paris:a0 stays filtered out

        # ?queue= alone: that queue's agents from both vendors
        await page.goto(f"{base}&queue=support")
        await expect(page.locator(".agent")).to_have_count(5, timeout=10_000)  # a0 a3 a6 a9 a12
        vendors = await page.locator(".agent").evaluate_all("els => els.map(e => e.dataset.source)")
        assert set(vendors) == {"pbx-paris", "xima-lyon"}


async def test_thresholds_turn_a_tile_to_warn_then_alert_and_colour_timers(tmp_path: Path) -> None:
    port = free_port()
    wallboard = {
        "thresholds": {
            "metrics": {"waiting": {"warn": 5, "alert": 10}},
            "service_level_target": 80,
            "queues": {
                "pbx-paris:support": {
                    "service_level_target": 90,
                    "metrics": {"waiting": {"warn": 2, "alert": 4}},
                }
            },
            "time_in_state": {"not_ready": {"warn": "10m", "alert": "20m"}},
        }
    }
    now = utcnow()

    def agent(i: int, state: State, minutes: int) -> Event:
        return AgentState(
            vendor="o2g",
            source="pbx-paris",
            agent_id=f"t{i}",
            agent_name=f"Agent {i}",
            state=state,
            since=now - timedelta(minutes=minutes),
        ).to_event()

    async with (
        EmbeddedBroker() as bootstrap,
        wallboard_daemon(bootstrap, port, tmp_path, wallboard=wallboard),
        publishing(bootstrap) as emit,
        chromium() as browser,
    ):
        await emit(
            [
                metric("pbx-paris", "sales", "waiting_calls", 1, "calls", "Sales"),  # a vendor name
                metric("pbx-paris", "sales", "service_level", 0.92, None, "Sales"),
                metric("xima-lyon", "lyon", "waiting", 1, "contacts", "Lyon"),  # the canonical name
                metric("pbx-paris", "support", "waiting_calls", 1, "calls", "Support"),
                metric("pbx-paris", "support", "service_level", 0.85, None, "Support"),
                agent(1, State.NOT_READY, 1),
                agent(2, State.NOT_READY, 12),
                agent(3, State.NOT_READY, 25),
                agent(4, State.BUSY, 30),  # time_in_state replaced the defaults: no alarm for busy
            ]
        )
        page = await browser.new_page(viewport=TV)
        await page.goto(f"http://127.0.0.1:{port}/wallboard")
        sales = kpi(page, "pbx-paris:sales", "waiting")
        await expect(sales.locator(".v")).to_have_text("1", timeout=10_000)
        assert await tile(page, "pbx-paris:sales").get_attribute("data-level") is None
        # service level against the targets: 92 % >= 80 % is ok; Support's own target is 90 %
        await expect(kpi(page, "pbx-paris:sales", "service_level_percent")).to_have_attribute(
            "data-level", "ok"
        )
        await expect(kpi(page, "pbx-paris:support", "service_level_percent")).to_have_attribute(
            "data-level", "warn"
        )

        await emit([metric("pbx-paris", "sales", "waiting_calls", 6, "calls", "Sales")])
        await expect(sales).to_have_attribute("data-level", "warn", timeout=5_000)
        await expect(tile(page, "pbx-paris:sales")).to_have_attribute("data-level", "warn")
        await expect(tile(page, "pbx-paris:sales")).to_have_class("tile lvl-warn")
        await screenshot(page, tmp_path, "wallboard-threshold-warn")

        await emit([metric("pbx-paris", "sales", "waiting_calls", 12, "calls", "Sales")])
        await expect(sales).to_have_attribute("data-level", "alert", timeout=5_000)
        await expect(tile(page, "pbx-paris:sales")).to_have_attribute("data-level", "alert")
        # the same numbers elsewhere: per queue levels and the canonical name
        await emit(
            [
                metric("xima-lyon", "lyon", "waiting", 6, "contacts", "Lyon"),
                metric("pbx-paris", "support", "waiting_calls", 3, "calls", "Support"),
                metric("pbx-paris", "support", "service_level", 0.79, None, "Support"),
            ]
        )
        await expect(kpi(page, "xima-lyon:lyon", "waiting")).to_have_attribute(
            "data-level", "warn", timeout=5_000
        )
        await expect(kpi(page, "pbx-paris:support", "waiting")).to_have_attribute("data-level", "warn")
        await expect(kpi(page, "pbx-paris:support", "service_level_percent")).to_have_attribute(
            "data-level", "alert"
        )

        # time in state, per state
        assert await card(page, "not_ready", "pbx-paris:t1").get_attribute("data-level") is None
        await expect(card(page, "not_ready", "pbx-paris:t2")).to_have_attribute("data-level", "warn")
        await expect(card(page, "not_ready", "pbx-paris:t3")).to_have_attribute("data-level", "alert")
        assert await card(page, "busy", "pbx-paris:t4").get_attribute("data-level") is None
        await screenshot(page, tmp_path, "wallboard-threshold-alert")


async def test_a_silent_source_turns_stale_and_a_failed_source_shows(tmp_path: Path) -> None:
    from streamd.sim.xima import XimaSimulator

    port = free_port()
    wallboard = {"stale_after_per_source": {"quiet": "2s"}}

    def data(source: str, value: int) -> list[Event]:
        return [
            metric(source, "q", "waiting", value, "contacts", f"Queue of {source}"),
            AgentState(
                vendor="test", source=source, agent_id="1", agent_name=f"Agent of {source}", state=State.BUSY
            ).to_event(),
        ]

    async with (
        EmbeddedBroker() as bootstrap,
        XimaSimulator(agents=2) as xima,
        publishing(bootstrap) as emit,
    ):
        broken = {"kind": "xima", "name": "bad-xima", "url": xima.url, "api_key": "wrong", "mode": "poll"}
        await emit(data("quiet", 1) + data("lively", 1) + data("bad-xima", 1))  # bad-xima: before it broke
        async with (
            wallboard_daemon(bootstrap, port, tmp_path, broken, wallboard=wallboard),
            chromium() as browser,
        ):
            page = await browser.new_page(viewport=TV)
            await page.goto(f"http://127.0.0.1:{port}/wallboard")
            quiet = tile(page, "quiet:q")
            await expect(quiet).to_be_visible(timeout=10_000)
            # silent for 2 s: stale, dimmed, saying since when; the other source is not
            await expect(quiet).to_have_class("tile stale", timeout=10_000)
            await expect(quiet.locator(".note")).to_contain_text("no update for")
            await expect(card(page, "busy", "quiet:1")).to_have_class("agent s-busy stale")
            await expect(card(page, "busy", "quiet:1").locator(".stale-note")).to_contain_text(
                "no update for"
            )
            await expect(page.locator('.problem[data-source="quiet"]')).to_contain_text(
                "quiet: no update for"
            )
            assert await tile(page, "lively:q").get_attribute("data-stale") is None
            assert "stale" not in (await card(page, "busy", "lively:1").get_attribute("class") or "")
            # the failed source: on the board with its reason, and its tiles say so
            failed = page.locator('.problem[data-source="bad-xima"]')
            await expect(failed).to_contain_text("bad-xima failed", timeout=10_000)
            await expect(failed).to_contain_text("401")
            await expect(tile(page, "bad-xima:q")).to_have_attribute("data-source-state", "failed")
            await expect(tile(page, "bad-xima:q").locator(".note")).to_contain_text("source failed")
            await screenshot(page, tmp_path, "wallboard-stale-and-failed")
            # news from the quiet source: fresh again (an unchanged value counts too)
            await emit(data("quiet", 1))
            await expect(quiet).to_have_class("tile", timeout=5_000)
            await expect(page.locator('.problem[data-source="quiet"]')).to_have_count(0)


async def test_a_source_on_another_replica_says_where_it_runs_and_is_not_stale(tmp_path: Path) -> None:
    """A daemon in a cluster with a second member (another replica, in process): each runs one of
    the two sources; the page's footer and tiles say which runs here and which on the other
    replica, and the other's flowing data is neither stale nor failed here."""
    import anyio

    from streamd.cluster.member import ClusterMember
    from streamd.config_core import ClusterConfig, KafkaConfig
    from streamd.sim.xima import XimaSimulator
    from streamd.telemetry import Component

    port = free_port()
    cluster = {"enabled": True, "group_id": "board", "session_timeout": "10s"}

    async def elsewhere(name: str) -> None:  # the other replica's unit: its data comes from emit
        await anyio.sleep_forever()

    async with (
        EmbeddedBroker() as bootstrap,
        XimaSimulator(agents=2) as xima,
        publishing(bootstrap) as emit,
    ):
        sources = [
            {"kind": "xima", "name": name, "url": xima.url, "api_key": xima.api_key, "mode": "poll"}
            for name in ("xima-a", "xima-b")
        ]
        other = ClusterMember(
            ClusterConfig.model_validate(cluster),
            KafkaConfig(bootstrap_servers=bootstrap),
            ["xima-a", "xima-b"],
            elsewhere,
            Component("cluster", "cluster"),
            advertised_url=lambda: "http://10.0.0.9:8080",
        )
        async with (
            wallboard_daemon(bootstrap, port, tmp_path, *sources, cluster=cluster) as rt,
            chromium() as browser,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(other.session, lambda: None)
            with anyio.fail_after(60):
                while len(other.running) != 1:
                    await anyio.sleep(0.2)
            (theirs,) = other.running
            (ours,) = {"xima-a", "xima-b"} - {theirs}
            await emit(
                [metric(name, "q", "waiting", 1, "contacts", f"Queue of {name}") for name in (ours, theirs)]
            )
            page = await browser.new_page(viewport=TV)
            await page.goto(f"http://127.0.0.1:{port}/wallboard")
            footer = page.locator("#sources")
            await expect(footer).to_have_text("Sources: 1 here · 1 on other replicas", timeout=30_000)
            title = await footer.get_attribute("title") or ""
            assert f"{theirs}: runs on replica 10.0.0.9:8080" in title
            assert f"{ours}: runs here" in title
            remote = tile(page, f"{theirs}:q")
            await expect(remote.locator(".src")).to_have_attribute("title", "runs on replica 10.0.0.9:8080")
            await expect(remote.locator(".src")).to_have_attribute("data-placement", "replica")
            await expect(tile(page, f"{ours}:q").locator(".src")).to_have_attribute("title", "runs here")
            assert await remote.get_attribute("class") == "tile"  # neither stale nor failed here
            assert await remote.get_attribute("data-source-state") is None
            await expect(page.locator(f'.problem[data-source="{theirs}"]')).to_have_count(0)
            assert theirs not in rt.health.components  # /readyz lists only what runs here
            await screenshot(page, tmp_path, "wallboard-cluster-placement")
            tg.cancel_scope.cancel()


async def test_saved_views_and_rotation(tmp_path: Path) -> None:
    port = free_port()
    wallboard = {
        "views": {
            "sales": {"title": "Sales floor", "queue": ["sales"], "sections": ["queues", "agents"]},
            "support": {
                "title": "Support desk",
                "queue": ["support"],
                "expand": ["unknown"],
                "metrics": ["waiting"],
            },
        }
    }
    async with (
        EmbeddedBroker() as bootstrap,
        wallboard_daemon(bootstrap, port, tmp_path, wallboard=wallboard),
        publishing(bootstrap) as emit,
        chromium() as browser,
    ):
        await emit(board())
        page = await browser.new_page(viewport=TV)
        base = f"http://127.0.0.1:{port}/wallboard"

        await page.goto(f"{base}?view=sales")
        await expect(page.locator("#title")).to_have_text("Sales floor", timeout=10_000)
        await expect(page.locator(".agent")).to_have_count(8, timeout=10_000)  # i % 3 != 0, but a13 (unknown)
        await expect(page.locator("#summary")).to_be_hidden()
        await expect(page.locator(".tile")).to_have_count(2)  # pbx-paris:sales, xima-lyon:sales
        assert await page.title() == "Sales floor · streamd wallboard"

        await page.goto(f"{base}?view=nope")
        await expect(page.locator(".problem.error")).to_contain_text("Unknown view “nope”")
        await expect(page.locator(".problem.error")).to_contain_text("sales, support")
        await expect(page.locator(".agent")).to_have_count(13, timeout=10_000)  # the whole board

        await page.goto(f"{base}?rotate=sales,support&every=4s")
        await expect(page.locator("#title")).to_have_text("Sales floor", timeout=10_000)
        await expect(page.locator("#views .v.current")).to_have_text("Sales floor")
        await expect(page.locator("#title")).to_have_text("Support desk", timeout=10_000)
        await expect(page.locator("#summary")).to_be_visible()
        await expect(page.locator(".agent")).to_have_count(5)  # a0 a3 a6 a9 a12
        await expect(page.locator(".tile")).to_have_count(1)
        await expect(tile(page, "pbx-paris:support").locator(".kpi")).to_have_count(1)  # metrics: [waiting]
        await screenshot(page, tmp_path, "wallboard-view-support")
        await expect(page.locator("#title")).to_have_text("Sales floor", timeout=10_000)  # and round again

        await page.goto(f"{base}?rotate=sales,support&every=soon")
        await expect(page.locator(".problem.error")).to_contain_text("every=soon is not a duration")


# --- 300 agents from the vendor simulators on a 1920x1080 screen ---------------------------------

PER_VENDOR = 75


async def simulators(stack: Any) -> list[dict[str, Any]]:
    """The four vendor simulators with 75 agents each: moved on a while by their own traffic
    generators, then standing still (no traffic of their own), so every page can be checked."""
    from streamd.sim.alvaria import AlvariaSimulator
    from streamd.sim.calabrio import CalabrioSimulator
    from streamd.sim.o2g import DEMO_PACKAGES, O2GSimulator
    from streamd.sim.xima import XimaSimulator

    o2g = await stack.enter_async_context(O2GSimulator(agents=PER_VENDOR, rate=0.0))
    o2g.generate(20 * PER_VENDOR)
    xima = await stack.enter_async_context(XimaSimulator(agents=PER_VENDOR))
    xima.step(20)
    alvaria = await stack.enter_async_context(AlvariaSimulator(agents=PER_VENDOR, auto_advance=False))
    alvaria.world.last_step -= 600  # ten minutes of changes, as of now
    alvaria.world.step(alvaria.clock())
    calabrio = await stack.enter_async_context(CalabrioSimulator(agents=PER_VENDOR, auto=False))
    now = calabrio.clock_ms()
    calabrio_states = ["READY_WAITING", "TALK", "TALK", "WORK_AFTER_CONTACT", "NOT_READY_BUSY", "HOLD"]
    for i, agent in enumerate(calabrio.agent_list):
        state = calabrio_states[i % len(calabrio_states)]
        calabrio.add_activity(
            agent.agent_id, now - 500 * i, state, "7" if state == "NOT_READY_BUSY" else None
        )
    return [
        {
            "kind": "o2g",
            "name": "pbx",
            "url": o2g.url,
            "username": o2g.username,
            "password": o2g.password,
            "packages": DEMO_PACKAGES,
            "ids": ["*"],
        },
        {
            "kind": "xima",
            "name": "cr1",
            "url": xima.url,
            "api_key": xima.api_key,
            "mode": "poll",
            "interval": "2s",
            "timeout": "1500ms",
            "agent_state_metrics": ["K0STATE1"],
        },
        alvaria.source_config("alvaria1", interval="2s"),
        {
            "kind": "calabrio",
            "name": "wfm",
            "url": calabrio.url,
            "username": calabrio.username,
            "password": calabrio.password,
            "interval": "2s",
            "timeout": "1500ms",
        },
    ]


VISIBLE_CARDS = """() => {
  const board = document.getElementById('board').getBoundingClientRect();
  return Array.from(document.querySelectorAll('.agent')).map(e => {
    const r = e.getBoundingClientRect();
    const name = e.querySelector('.name').getBoundingClientRect();
    return {key: e.dataset.key, inside: r.top >= board.top - 1 && r.bottom <= board.bottom + 1
            && r.left >= board.left - 1 && r.right <= board.right + 1 && r.height > 0 && name.width > 20};
  });
}"""


async def test_300_agents_from_the_simulators_are_all_shown_within_one_rotation(tmp_path: Path) -> None:
    from contextlib import AsyncExitStack

    port = free_port()
    wallboard = {
        "page_seconds": "30s",
        "views": {
            "floor": {"title": "Whole floor", "expand": ["logged_out", "unknown"]},
            "queues": {"title": "Queues", "sections": ["summary", "queues"]},
        },
    }
    async with AsyncExitStack() as stack:
        sources = await simulators(stack)
        bootstrap = await stack.enter_async_context(EmbeddedBroker())
        await stack.enter_async_context(
            wallboard_daemon(bootstrap, port, tmp_path, *sources, wallboard=wallboard)
        )
        browser = await stack.enter_async_context(chromium())
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}"))
        page = await browser.new_page(viewport=TV)
        await page.goto(f"http://127.0.0.1:{port}/wallboard?view=floor")
        total = page.locator("#updated")
        await expect(total).to_contain_text(f"{4 * PER_VENDOR} agents", timeout=60_000)
        state = (await client.get("/api/v1/state")).json()
        everyone = {f"{a['source']}:{a['agent_id']}" for a in state["agents"]}
        assert len(everyone) == 4 * PER_VENDOR
        assert {a["source"] for a in state["agents"]} == {"pbx", "cr1", "alvaria1", "wfm"}

        # rotating every 20 s with 30 s pages: the pages turn faster, all within the floor's turn
        # (one screenshot only: taking one per page on a loaded machine could miss the next page)
        await page.goto(f"http://127.0.0.1:{port}/wallboard?rotate=floor,queues&every=20s")
        board = page.locator("#board")
        await expect(total).to_contain_text(f"{4 * PER_VENDOR} agents", timeout=20_000)
        await expect(board).to_have_attribute("data-view", "queues", timeout=30_000)
        await expect(board).to_have_attribute("data-view", "floor", timeout=30_000)  # a fresh turn
        turn = await board.get_attribute("data-turn")
        pages = int(await board.get_attribute("data-pages") or "0")
        assert pages >= 1
        seen: set[str] = set()
        for number in range(pages):
            await expect(board).to_have_attribute("data-page", str(number), timeout=30_000)
            cards = await page.evaluate(VISIBLE_CARDS)
            if number == 0:
                await screenshot(page, tmp_path, "wallboard-300-agents-page1")
            assert await board.get_attribute("data-pages") == str(pages)  # the layout holds still
            assert cards, f"page {number} shows no agent"
            assert all(c["inside"] for c in cards), [c["key"] for c in cards if not c["inside"]][:5]
            seen |= {c["key"] for c in cards}
        assert await board.get_attribute("data-turn") == turn  # all pages within one turn of the view
        assert await board.get_attribute("data-view") == "floor"
        assert seen == everyone, (len(seen), sorted(everyone - seen)[:5])
        assert await page.evaluate("document.scrollingElement.scrollHeight") <= TV["height"]
        print(f"300 agents: {pages} pages, density {await board.get_attribute('data-density')}")

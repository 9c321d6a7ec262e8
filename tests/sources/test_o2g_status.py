"""O2G server status watch, network fallback, licence pre-flight and daemon-restart Gaps (issue 17
items 4, 5, 6, 8), against the simulator."""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from streamd.errors import PublishError
from streamd.events import SourceGap
from streamd.publish.memory import MemoryEmit
from streamd.sim.o2g import O2GSimulator, serve_app
from streamd.sources.o2g.config import O2GSourceConfig
from streamd.sources.o2g.source import RECORD, O2GSource
from streamd.telemetry import ComponentState
from tests.helpers import FirstGapFails, MemoryCursors, MemoryWebhooks, running, source_deps

from .o2g_helpers import call_refs, logins, make_source, publish_and_expect, until

pytestmark = pytest.mark.anyio

FOREVER = 10**6


def gaps(emit: MemoryEmit) -> list[SourceGap]:
    return [e.data for e in emit.of_type("streamd.source.Gap") if isinstance(e.data, SourceGap)]


def snapshot_after_gap(emit: MemoryEmit) -> bool:
    """The last Gap is followed by a snapshot record."""
    (gap,) = emit.of_type("streamd.source.Gap")[-1:]
    return any(e.snapshot for e in emit.events[emit.events.index(gap) + 1 :])


@asynccontextmanager
async def webhook_source(
    sim: O2GSimulator, emit: MemoryEmit, cursors: MemoryCursors | None = None, **overrides: Any
) -> AsyncIterator[O2GSource]:
    hooks = MemoryWebhooks()
    async with serve_app(hooks.app()) as base:
        fields: dict[str, Any] = {
            "name": "pbx1",
            "url": sim.url,
            "username": sim.username,
            "password": sim.password,
            "packages": ["agent", "pilot"],
            "delivery": "webhook",
            "webhook_public_url": f"{base}/webhooks/o2g/pbx1",
            "request_timeout": 2.0,
        }
        config = O2GSourceConfig.model_validate(fields | overrides)
        deps = source_deps("pbx1", webhooks=hooks, cursors=cursors, delays=lambda: itertools.repeat(0.02))
        source = O2GSource(config, deps)
        async with running(source, emit, start_timeout=2):
            yield source


async def test_an_o2g_restart_new_start_date_gives_one_gap_a_resubscribe_and_a_snapshot() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim, running(make_source(sim, delay=0.02), emit):
        await publish_and_expect(sim, emit, ["a1"])
        (first,) = sim.subscriptions()
        sim.restart()  # a new startDate; every session lost
        await until(lambda: sim.subscriptions() not in ([], [first]) and gaps(emit), timeout=3)
        await until(lambda: snapshot_after_gap(emit))
        (gap,) = gaps(emit)
        assert gap.reason.startswith("O2G restarted (startDate ")
        assert gap.from_ <= gap.to
        await publish_and_expect(sim, emit, ["a2"])
        assert logins(sim) == 2


async def test_a_start_date_changed_under_a_live_session_ends_it_with_a_gap() -> None:
    emit = MemoryEmit()
    async with (
        O2GSimulator(agents=1) as sim,
        running(make_source(sim, delay=0.02, status_interval=0.05), emit),
    ):
        await publish_and_expect(sim, emit, ["b1"])
        await until(lambda: sum(r.path.endswith("/system/status") for r in sim.requests) >= 2)
        sim.system.restart()  # only the status says so: the session is still alive
        await until(lambda: logins(sim) == 2 and gaps(emit) and snapshot_after_gap(emit), timeout=3)
        (gap,) = gaps(emit)
        assert gap.reason.startswith("O2G restarted")
        assert len(sim.subscriptions()) == 1  # the old one was deleted on the way out
        await publish_and_expect(sim, emit, ["b2"])


async def test_an_ha_switchover_is_logged_and_handled_like_a_restart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.system.ha = True
        async with running(make_source(sim, delay=0.02, status_interval=0.05), emit):
            await publish_and_expect(sim, emit, ["h1"])
            with caplog.at_level(logging.WARNING, logger="streamd.sources.o2g"):
                sim.switch_primary()
                await until(lambda: gaps(emit) and snapshot_after_gap(emit), timeout=3)
            (gap,) = gaps(emit)
            assert "O2G HA switchover (primary o2g-a.sim.local -> o2g-b.sim.local)" in gap.reason
            assert "O2G HA switchover" in caplog.text
            await publish_and_expect(sim, emit, ["h2"])


async def test_a_login_that_may_not_read_the_status_turns_the_watch_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.fail_next("/system/status", status=403, count=FOREVER, error="NOT_ALLOWED")
        with caplog.at_level(logging.INFO, logger="streamd.sources.o2g"):
            async with running(make_source(sim, status_interval=0.02), emit):
                await publish_and_expect(sim, emit, ["n1"])
                reads = sum(r.path.endswith("/system/status") for r in sim.requests)
                await publish_and_expect(sim, emit, ["n2"])
        assert reads == 1  # read once, then never again
        assert "no server status watch" in caplog.text
        assert logins(sim) == 1


async def test_webhook_mode_with_a_silent_server_goes_retrying_and_recovers() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        overrides = {"status_interval": 0.05, "idle_timeout": 0.4, "keepalive_interval": 60}
        async with webhook_source(sim, emit, **overrides) as source:
            assert source.deps.component.state is ComponentState.RUNNING
            sim.fail_next("/system/status", status=503, count=FOREVER)  # no answer, and no POST
            await until(lambda: source.deps.component.state is ComponentState.RETRYING, timeout=3)
            silent = "session lost: o2g pbx1: no webhook POST and no server status answer for "
            await until(lambda: any(silent in g.reason for g in gaps(emit)), timeout=3)  # ended, again
            sim.clear_faults()
            await until(lambda: source.deps.component.state is ComponentState.RUNNING, timeout=3)


async def test_webhook_posts_keep_a_source_alive_without_status_answers() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        overrides = {"status_interval": 0.05, "idle_timeout": 0.5, "keepalive_interval": 60}
        async with webhook_source(sim, emit, **overrides) as source:
            sim.fail_next("/system/status", status=503, count=FOREVER)
            failed_read = "o2g pbx1 system status: HTTP 503"  # the status job's, shown by the source
            await until(lambda: failed_read in source.deps.component.detail)
            for n in range(8):  # a POST every 0.1 s for 0.8 s: longer than idle_timeout
                await publish_and_expect(sim, emit, [f"p{n}"])
                await anyio.sleep(0.1)
            assert source.deps.component.state is ComponentState.RETRYING
            assert failed_read in source.deps.component.detail  # not silent
            assert logins(sim) == 1  # never declared silent: that would have ended the session


async def test_the_public_url_is_tried_when_the_private_one_cannot_be_reached(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.private_url = "http://127.0.0.1:9"  # the discard port: nothing listens there
        with caplog.at_level(logging.WARNING, logger="streamd.sources.o2g"):
            async with running(make_source(sim), emit):
                await publish_and_expect(sim, emit, ["u1"])
        assert "the private URL http://127.0.0.1:9/api/rest/authenticate?version=1.0 cannot be reached" in (
            caplog.text
        )
        assert "trying the public one" in caplog.text


async def test_network_public_never_tries_the_private_urls(caplog: pytest.LogCaptureFixture) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.private_url = "http://127.0.0.1:9"
        with caplog.at_level(logging.WARNING, logger="streamd.sources.o2g"):
            async with running(make_source(sim, network="public"), emit):
                await publish_and_expect(sim, emit, ["u2"])
        assert "cannot be reached" not in caplog.text


async def test_the_licence_preflight_names_the_packages_not_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.system.licenses.discard("ROXE_API_CONTACTCENTER_SVCS")
        packages = ["agent", "pilot", "rti", "system"]
        with caplog.at_level(logging.INFO, logger="streamd.sources.o2g"):
            async with running(make_source(sim, packages=packages), emit):
                await until(lambda: "licence pre-flight" in caplog.text)
        (line,) = [r for r in caplog.records if "licence pre-flight" in r.getMessage()]
        assert line.levelno == logging.WARNING
        assert line.getMessage() == (
            "o2g pbx1: licence pre-flight: this server's licences will not deliver the events of pilot, rti"
            " (none of ROXE_API_CONTACTCENTER_SVCS / api-tel-f is installed); not checked: system"
        )
        asked = {r.params["lic"] for r in sim.requests if r.path.endswith("/system/licenses")}
        assert asked == {
            "ROXE_API_TEL_ADVANCED",
            "ROXE_API_CONTACTCENTER_AGENT",
            "api-tel-f",
            "ROXE_API_CONTACTCENTER_SVCS",
        }


@pytest.mark.parametrize("delivery", ["webhook", "chunk"])
async def test_a_daemon_restart_is_one_gap_before_the_first_snapshot(delivery: str) -> None:
    cursors = MemoryCursors()
    first, second = MemoryEmit(), MemoryEmit()
    async with O2GSimulator(agents=1) as sim:

        def source(emit: MemoryEmit) -> Any:
            if delivery == "webhook":
                return webhook_source(sim, emit, cursors)
            deps = source_deps("pbx1", cursors=cursors)
            config = make_source(sim).config
            return running(O2GSource(config, deps), emit)

        async with source(first):
            await publish_and_expect(sim, first, ["d1"])
        assert gaps(first) == []  # nothing recorded before: no gap
        stopped = cursors.saved[("pbx1", RECORD)]
        async with source(second):
            await publish_and_expect(sim, second, ["d2"])
        (gap,) = gaps(second)
        assert gap.reason == "daemon restart"
        assert gap.from_.isoformat() in stopped  # from the stop time the first run recorded
        assert gap.from_ <= gap.to
        position = second.events.index(second.of_type("streamd.source.Gap")[0])
        assert position == 0  # before anything else, the snapshot included
        assert any(e.snapshot for e in second.events[position + 1 :])
        assert call_refs(second) == ["d2"]


async def test_a_tomcat_404_on_the_status_is_transient_a_later_restart_still_gives_a_gap() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        sim.fail_next("/system/status", 404, count=1, error="tomcat")  # O2G redeploying
        source = make_source(sim, delay=0.02, status_interval=0.05)
        async with running(source, emit):
            await publish_and_expect(sim, emit, ["t1"])
            await until(lambda: sum(r.path.endswith("/system/status") for r in sim.requests) >= 3)
            assert source.watch.enabled
            sim.system.restart()  # only the status says so
            await until(lambda: logins(sim) == 2 and gaps(emit) and snapshot_after_gap(emit), timeout=3)
            (gap,) = gaps(emit)
            assert gap.reason.startswith("O2G restarted")


async def test_a_failed_status_read_shows_the_source_retrying_until_one_answers_the_session_goes_on() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        source = make_source(sim, delay=0.02, status_interval=0.05)
        async with running(source, emit):
            await publish_and_expect(sim, emit, ["s1"])
            assert source.deps.component.state is ComponentState.RUNNING
            sim.fail_next("/system/status", 503, count=FOREVER)
            await until(lambda: source.deps.component.state is ComponentState.RETRYING)
            assert "o2g pbx1 system status: HTTP 503" in source.deps.component.detail
            failed = sum(r.path.endswith("/system/status") for r in sim.requests)
            await until(lambda: sum(r.path.endswith("/system/status") for r in sim.requests) > failed + 1)
            await publish_and_expect(sim, emit, ["s2"])  # the subscription streams meanwhile
            sim.clear_faults()
            await until(lambda: source.deps.component.state is ComponentState.RUNNING)
            assert source.watch.enabled
            assert logins(sim) == 1  # a failed read never ended the session
            assert gaps(emit) == []


class FullCursors(MemoryCursors):
    """A cursor store on a full disk: every save fails (as the spool's does: PublishError)."""

    def __init__(self) -> None:
        super().__init__()
        self.full = True

    def save(self, source: str, name: str, value: str) -> None:
        if self.full:
            raise PublishError("database or disk is full")
        super().save(source, name, value)


async def test_a_continuity_record_that_cannot_be_written_is_logged_once_and_ends_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    cursors = FullCursors()
    async with O2GSimulator(agents=1) as sim:
        deps = source_deps("pbx1", cursors=cursors)
        source = O2GSource(make_source(sim).config, deps)
        with caplog.at_level(logging.INFO, logger="streamd.sources.o2g"):
            async with running(source, emit, start_timeout=3):
                await publish_and_expect(sim, emit, ["f1"])
                await source._save_record()  # again: still full, no second warning
                cursors.full = False
                await source._save_record()
                assert ("pbx1", RECORD) in cursors.saved
                await publish_and_expect(sim, emit, ["f2"])
            assert logins(sim) == 1  # the session never ended
    (failed,) = [r for r in caplog.records if "continuity record not written" in r.getMessage()]
    assert failed.levelno == logging.WARNING
    assert "database or disk is full" in failed.getMessage()
    assert "continuity record written again" in caplog.text


class UnreadableCursors(MemoryCursors):
    """A cursor store whose reads fail (a corrupt or unreadable database file)."""

    def load(self, source: str, name: str) -> str | None:
        raise PublishError("file is not a database")


async def test_a_continuity_record_that_cannot_be_read_at_start_is_logged_and_the_stream_starts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=1) as sim:
        source = O2GSource(make_source(sim).config, source_deps("pbx1", cursors=UnreadableCursors()))
        with caplog.at_level(logging.WARNING, logger="streamd.sources.o2g"):
            async with running(source, emit, start_timeout=3):
                await publish_and_expect(sim, emit, ["f1"])
    assert "continuity record cannot be read (file is not a database)" in caplog.text
    assert not [e for e in emit.events if e.type == "streamd.source.Gap"]


async def test_a_gap_whose_emit_failed_goes_out_before_the_next_sessions_snapshot() -> None:
    cursors = MemoryCursors()
    async with O2GSimulator(agents=1) as sim:
        config = make_source(sim).config
        async with running(O2GSource(config, source_deps("pbx1", cursors=cursors)), MemoryEmit()):
            await until(lambda: ("pbx1", RECORD) in cursors.saved)
        emit = FirstGapFails()
        deps = source_deps("pbx1", cursors=cursors, delays=lambda: itertools.repeat(0.02))
        async with running(O2GSource(config, deps), emit, start_timeout=3):
            await publish_and_expect(sim, emit, ["g1"])
        assert emit.failed == 1
        assert logins(sim) == 3  # the first run's, the session the failed Gap ended, the next
        (gap,) = gaps(emit)
        assert gap.reason == "daemon restart"
        assert emit.events[0].type == "streamd.source.Gap"
        assert snapshot_after_gap(emit)

"""Calabrio faults found by reading the guide (seed 002) against the code (issue 15, items 7-10;
issue 16, item 9), each reproduced with a simulator fault: an unreadable answer, a late activity,
a failing adherence endpoint, basic-detail agent rows, an untrusted TLS certificate."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from streamd.errors import TransientError
from streamd.events import AGENT_STATE_TOPIC, DEADLETTER_TOPIC, AgentState, State
from streamd.publish.memory import MemoryEmit
from streamd.sim.calabrio import CalabrioSimulator
from streamd.sim.script import Fault
from streamd.sim.server import serving
from streamd.sources.calabrio.adherence_job import adherence_cycle_timeout
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import ACTIVITY_TOPIC, ADHERENCE_TOPIC
from streamd.sources.calabrio.normalize import UnreadableAnswer
from streamd.sources.calabrio.source import CalabrioSource
from streamd.sources.http import CertificateError
from streamd.telemetry import ComponentState
from tests.helpers import Clock, MemoryCursors, no_sleep, running, source_deps, until
from tests.sources.calabrio_tls import CA_FILE, tls_front

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
ACTIVITY = "/api/rest/scheduling/realTime/activity/detail"
ADHERENCE = "/api/rest/scheduling/adherence/agent"
AGENTS = "/api/rest/scheduling/agent"


def config(url: str, sim: CalabrioSimulator, **cfg: Any) -> CalabrioSourceConfig:
    return CalabrioSourceConfig.model_validate(
        {
            "kind": "calabrio",
            "name": "wfm",
            "url": url,
            "username": sim.username,
            "password": sim.password,
            "interval": 1,
            "timeout": 0.9,
            "overlap": 60,
            "reference_publish": False,  # the reference job has tests of its own
            "initial_lookback": 600,
            **cfg,
        }
    )


def source(sim: CalabrioSimulator, clock: Clock[int], cursors: MemoryCursors, **cfg: Any) -> CalabrioSource:
    """A source that polls once per job session (``cycles=1``), on the test's clock."""
    deps = source_deps("wfm", cursors=cursors, delays=lambda: itertools.repeat(0))
    return CalabrioSource(config(sim.url, sim, **cfg), deps, now_ms=clock, sleep=no_sleep, cycles=1)


def polling(
    sim: CalabrioSimulator, url: str | None = None, clock: Clock[int] | None = None, **cfg: Any
) -> CalabrioSource:
    """A source that polls every 50 ms under a daemon's policy (failed_retry), until cancelled."""
    cfg = {"interval": 0.05, "timeout": 0.04, "adherence_interval": 0.05, **cfg}
    deps = source_deps("wfm", delays=lambda: itertools.repeat(0), failed_retry=3600)
    return CalabrioSource(config(url or sim.url, sim, **cfg), deps, now_ms=clock or sim.clock_ms)


async def cycle(src: CalabrioSource, emit: MemoryEmit) -> None:
    """One poll cycle of each job; a cycle that fails raises (nothing is retried here)."""
    for job in src.jobs(emit):
        await job.session(lambda: None)


def activities(emit: MemoryEmit) -> list[tuple[str, int, str]]:
    return [
        (e.data["agentId"], e.data["timestamp"], e.data["agentState"])
        for e in emit.events
        if e.topic == ACTIVITY_TOPIC
    ]


def canonical(emit: MemoryEmit) -> list[tuple[str, State, int]]:
    states = [e.data for e in emit.events if e.topic == AGENT_STATE_TOPIC]
    return [(s.agent_id, s.state, int(s.since.timestamp() * 1000)) for s in states]


def windows(sim: CalabrioSimulator) -> list[tuple[int, int]]:
    return [(int(r.params["fromTime"]), int(r.params["toTime"])) for r in sim.calls(ACTIVITY)]


# --- item 7: an unreadable answer is read again, the window does not move ----------------------


@pytest.mark.parametrize(
    ("garble", "times"),
    [
        ("not_json", 1),  # a proxy cut the answer short
        ("not_array", 1),  # an error object with status 200
        ("login_page", 2),  # an HTML login page even after a fresh login (an SSO proxy)
    ],
)
async def test_an_unreadable_answer_after_downtime_is_read_again_and_skips_nothing(
    garble: str, times: int
) -> None:
    clock, cursors, emit = Clock(T0 - 20 * HOUR), MemoryCursors(), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        await cycle(source(sim, clock, cursors), emit)  # ran once, then down for 20 hours
        saved = dict(cursors.saved)
        backlog = [
            (101, T0 - 19 * HOUR, "READY_WAITING"),
            (102, T0 - 5 * HOUR, "TALK"),
            (101, T0 - 1, "HOLD"),
        ]
        for agent, ts, state in backlog:
            sim.add_activity(agent, ts, state)
        clock.now = T0
        sim.garble_next(garble, path=ACTIVITY, times=times)
        restarted = source(sim, clock, cursors)
        with pytest.raises(UnreadableAnswer, match="the answer is"):
            await cycle(restarted, emit)
        assert cursors.saved == saved  # the window did not move
        assert emit.events == []  # and nothing was dead-lettered in its place
        await cycle(restarted, emit)  # the job's retry
        first, retried = windows(sim)[-2:]
    assert activities(emit) == [(str(a), ts, s) for a, ts, s in backlog]
    assert first == retried == (T0 - 20 * HOUR - 60_000, T0)  # the same 20 h window, asked again
    assert not [e for e in emit.events if e.topic == DEADLETTER_TOPIC]


async def test_a_running_source_retries_an_unreadable_answer_until_it_reads_it() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 5_000, "TALK")
        sim.add_activity(102, T0 - 4_000, "READY_WAITING")
        sim.garble_next("not_json", path=ACTIVITY, times=3)
        src = polling(sim, clock=clock)
        async with running(src, emit, start_timeout=5):
            await emit.wait_for(4)
        statuses = [r.status for r in sim.calls(ACTIVITY)]
    assert [(a, s) for a, _, s in activities(emit)[:2]] == [("101", "TALK"), ("102", "READY_WAITING")]
    assert not [e for e in emit.events if e.topic == DEADLETTER_TOPIC]
    assert windows(sim)[:4] == [(T0 - 600_000, T0)] * 4  # three failures, then the same window read
    assert statuses[:4] == [200, 200, 200, 200]  # every garbled answer came with status 200


async def test_a_row_that_cannot_be_routed_is_still_a_dead_letter_and_the_rest_is_published() -> None:
    clock, cursors, emit = Clock(T0), MemoryCursors(), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 1_000, "TALK")
        src = source(sim, clock, cursors)
        await cycle(src, emit)
        clock.now += 10_000
        sim.add_activity(101, T0 + 5_000, "")  # no usable agentState: unroutable
        sim.add_activity(101, T0 + 6_000, "READY_WAITING")
        await cycle(src, emit)
    assert activities(emit) == [("101", T0 - 1_000, "TALK"), ("101", T0 + 6_000, "READY_WAITING")]
    assert [e.data.error_type for e in emit.events if e.topic == DEADLETTER_TOPIC] == ["missing_key"]


# --- item 8: a late activity goes to the vendor topic, never back in time on agent-state -------


async def test_a_late_activity_is_published_but_never_regresses_the_agent_state() -> None:
    clock, cursors = Clock(T0 + 103_000), MemoryCursors()
    first, second, third = MemoryEmit(), MemoryEmit(), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 + 102_000, "READY_WAITING")
        sim.add_activity(101, T0 + 100_000, "TALK", visible_at=T0 + 104_000)  # captured late
        await cycle(source(sim, clock, cursors), first)
        clock.now = T0 + 110_000
        await cycle(source(sim, clock, cursors), second)  # a restart: only the cursor store survives
        clock.now = T0 + 120_000
        sim.add_activity(101, T0 + 115_000, "NOT_READY_BUSY", "4")
        await cycle(source(sim, clock, cursors), third)
    assert activities(first) == [("101", T0 + 102_000, "READY_WAITING")]
    assert activities(second) == [("101", T0 + 100_000, "TALK")]  # the vendor topic gets every activity
    assert activities(third) == [("101", T0 + 115_000, "NOT_READY_BUSY")]
    assert canonical(first) == [("101", State.AVAILABLE, T0 + 102_000)]
    assert canonical(second) == []  # TALK at 100 s is not the agent's state after READY at 102 s
    assert canonical(third) == [("101", State.NOT_READY, T0 + 115_000)]


async def test_late_activities_of_one_response_publish_only_the_newest_state_per_agent() -> None:
    clock, cursors, emit = Clock(T0), MemoryCursors(), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 30_000, "READY_WAITING")
        await cycle(source(sim, clock, cursors), emit)
        clock.now = T0 + 20_000
        sim.add_activity(101, T0 - 40_000, "HOLD", visible_at=T0 + 10_000)  # older than READY: late
        sim.add_activity(101, T0 + 5_000, "TALK")
        sim.add_activity(102, T0 - 50_000, "LOGGED_OUT", visible_at=T0 + 10_000)  # 102's first: current
        await cycle(source(sim, clock, cursors), emit)
    assert canonical(emit) == [
        ("101", State.AVAILABLE, T0 - 30_000),
        ("102", State.LOGGED_OUT, T0 - 50_000),
        ("101", State.BUSY, T0 + 5_000),
    ]
    assert len(activities(emit)) == 4


# --- item 9: adherence fails, backs off and pages alone -----------------------------------------


async def test_adherence_failures_never_replace_the_activity_pollers_calabrio_session() -> None:
    emit = MemoryEmit()
    async with CalabrioSimulator(agents=2) as sim:
        sim.fail_next(403, path=ADHERENCE, times=10_000)  # the API user lacks Edit Schedules
        src = polling(sim, adherence=True)
        async with running(src, emit, start_timeout=5):
            await until(lambda: src.deps.component.jobs["adherence"].state is ComponentState.FAILED)
            polled = len(sim.calls(ACTIVITY))
            await until(lambda: len(sim.calls(ACTIVITY)) >= polled + 5)
            assert src.deps.component.jobs["activity"].state is ComponentState.RUNNING
    activity_sessions = {sim.session_of(r) for r in sim.calls(ACTIVITY)}
    adherence_sessions = [sim.session_of(r) for r in sim.calls(ADHERENCE)]
    assert len(activity_sessions) == 1  # the adherence job's re-logins left it alone
    assert len(adherence_sessions) == 2  # the 403 made it log in again once, then it failed
    assert not activity_sessions & set(adherence_sessions)
    logouts = {sim.session_of(r) for r in sim.requests if r.method == "DELETE"}
    assert logouts == {*activity_sessions, adherence_sessions[-1]}  # both sessions destroyed


async def test_a_failing_adherence_job_is_retried_no_sooner_than_its_interval() -> None:
    emit = MemoryEmit()
    retries: list[float] = []

    async def record(seconds: float) -> None:  # the supervisor's wait between attempts
        retries.append(seconds)
        await anyio.sleep(0)

    async with CalabrioSimulator(agents=2) as sim:
        sim.fail_next(500, path=ADHERENCE, times=10_000)
        cfg = config(sim.url, sim, interval=1.0, timeout=0.9, adherence=True, adherence_interval=0.05)
        deps = source_deps("wfm", delays=lambda: itertools.repeat(0), sleep=record)  # a policy of no waits
        src = CalabrioSource(cfg, deps)
        async with running(src, emit, start_timeout=5):
            await until(lambda: len(retries) >= 6)
            assert src.deps.component.jobs["activity"].state is ComponentState.RUNNING
    assert min(retries) >= 0.05  # never more often than the adherence poll itself
    assert max(retries) < 9 * 0.05


async def test_adherence_stops_at_a_page_that_repeats_the_previous_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=3, clock_ms=clock, ignore_page_number=True) as sim:
        src = source(sim, clock, MemoryCursors(), adherence=True, adherence_page_size=1)
        with caplog.at_level(logging.WARNING, "streamd.sources.calabrio"):
            await cycle(src, emit)
        pages = [r.params["pageNumber"] for r in sim.calls(ADHERENCE)]
    assert pages == ["1", "2"]  # not 500 requests for the same page
    assert [e.key for e in emit.events if e.topic == ADHERENCE_TOPIC] == ["wfm:101"]
    assert [r.getMessage() for r in caplog.records] == [
        "wfm: adherence: page 2 repeats page 1 (the server ignores pageNumber?); the rows read so far "
        "are published"
    ]


async def test_adherence_reads_at_most_adherence_max_pages_per_cycle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=5, clock_ms=clock) as sim:
        src = source(
            sim, clock, MemoryCursors(), adherence=True, adherence_page_size=1, adherence_max_pages=2
        )
        with caplog.at_level(logging.WARNING, "streamd.sources.calabrio"):
            await cycle(src, emit)
        pages = [r.params["pageNumber"] for r in sim.calls(ADHERENCE)]
    assert pages == ["1", "2"]
    assert [e.key for e in emit.events if e.topic == ADHERENCE_TOPIC] == ["wfm:101", "wfm:102"]
    assert "stopped after adherence_max_pages (2) full pages of 1 rows" in caplog.text


def slow(app: ASGIApp, seconds: float) -> ASGIApp:
    """The simulator's app answering every HTTP request ``seconds`` late (a tenant far away)."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await anyio.sleep(seconds)
        await app(scope, receive, send)

    return answer


async def test_a_tenant_of_many_slow_adherence_pages_is_read_whole_in_one_cycle() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    agents = 24  # 25 pages of one row at 0.1 s each: past the cycle budget of two requests
    async with CalabrioSimulator(agents=agents, clock_ms=clock) as sim, serving(slow(sim.app(), 0.1)) as url:
        cfg = config(url, sim, adherence=True, adherence_page_size=1, adherence_interval=300)
        deps = source_deps("wfm", cursors=MemoryCursors(), delays=lambda: itertools.repeat(0))
        src = CalabrioSource(cfg, deps, now_ms=clock, sleep=no_sleep, cycles=1)
        async with httpx.AsyncClient() as unused:
            assert src.adherence_poller(unused).timeout == 0.9 * 2 * 50  # timeout per page
        await cycle(src, emit)
        assert len(sim.calls(ADHERENCE)) == agents + 1  # the last page is short
    assert len([e for e in emit.events if e.topic == ADHERENCE_TOPIC]) == agents


async def test_a_stalled_adherence_page_fails_within_the_request_timeout() -> None:
    clock = Clock(T0)
    async with CalabrioSimulator(agents=3, clock_ms=clock) as sim:
        sim.faults.add(ADHERENCE, Fault(200, b"[]", delay=3600))
        src = source(sim, clock, MemoryCursors(), adherence=True, adherence_page_size=1)
        (adherence,) = [job for job in src.jobs(MemoryEmit()) if job.name == "adherence"]
        with pytest.raises(TransientError, match=r"adherence: page 1 of 2026-01-01: no answer within 0.9s"):
            await adherence.session(lambda: None)


def test_the_adherence_cycle_budget_scales_with_the_pages_and_stays_below_the_interval() -> None:
    def budget(**cfg: Any) -> float:
        return adherence_cycle_timeout(CalabrioSourceConfig.model_validate(
            {"kind": "calabrio", "name": "wfm", "url": "https://t", "username": "u", "password": "p", **cfg}
        ))  # fmt: skip

    assert budget(timeout=5, adherence_max_pages=3) == 30  # two days of three pages
    assert budget(timeout=5, adherence_max_pages=50, adherence_interval=300) == 270  # the interval bounds it
    assert budget(timeout=5, adherence_max_pages=50, adherence_interval=4) == 10  # never below two requests


# --- item 10: agent reference data with fullDetail=true --------------------------------------


async def test_the_simulator_serves_acd_ids_and_services_only_with_full_detail() -> None:
    async with CalabrioSimulator(agents=1) as sim:
        src = CalabrioSource(config(sim.url, sim), source_deps("wfm"))
        async with src.client() as client:
            basic = (await client.get(AGENTS)).json()
            full = (await client.get(AGENTS, params={"fullDetail": "true"})).json()
    assert basic == [{"agentId": 101, "firstName": "Ana", "lastName": "Silva", "employeeNumber": "E101"}]
    assert (full[0]["acdId"], full[0]["services"]) == ("5001", [1])


async def test_agent_reference_is_read_with_full_detail_for_acd_ids_and_queues() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        sim.add_activity(102, T0 - 1_000, "TALK")
        await cycle(source(sim, clock, MemoryCursors()), emit)
        (reference,) = sim.calls(AGENTS)
    assert reference.params == {"fullDetail": "true"}
    vendor = next(e for e in emit.events if e.topic == ACTIVITY_TOPIC)
    state = next(e.data for e in emit.events if e.topic == AGENT_STATE_TOPIC)
    assert (vendor.data["acdId"], vendor.data["agentName"]) == ("5002", "Ben Okafor")
    assert isinstance(state, AgentState)
    assert state.queue_ids == ("2",)


# --- issue 16 item 9: TLS ------------------------------------------------------------------------


async def test_an_untrusted_certificate_fails_the_source_with_its_cause() -> None:
    emit = MemoryEmit()
    async with CalabrioSimulator(agents=1) as sim, tls_front(sim.url) as https:
        src = polling(sim, https, adherence=True)
        async with running(src, emit, start_timeout=5):
            await until(lambda: src.deps.component.state is ComponentState.FAILED)
            detail = src.deps.component.detail
    assert "TLS certificate not trusted" in detail
    assert sim.requests == []  # nothing reached the tenant over an unverified connection
    assert emit.events == []


async def test_the_certificate_error_is_fatal_not_transient() -> None:
    async with CalabrioSimulator(agents=1) as sim, tls_front(sim.url) as https:
        src = CalabrioSource(config(https, sim), source_deps("wfm"), sleep=no_sleep, cycles=1)
        with pytest.raises(CertificateError, match="TLS certificate not trusted"):
            await src.run(MemoryEmit())


async def test_ca_file_trusts_the_tenant_and_activities_flow_over_tls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim, tls_front(sim.url) as https:
        sim.add_activity(101, T0 - 1_000, "TALK")
        deps = source_deps("wfm", cursors=MemoryCursors())
        cfg = config(https, sim, ca_file=str(CA_FILE), adherence=True)
        src = CalabrioSource(cfg, deps, now_ms=clock, sleep=no_sleep, cycles=1)
        with caplog.at_level(logging.WARNING):
            await cycle(src, emit)
            await src.logout()
    assert activities(emit) == [("101", T0 - 1_000, "TALK")]
    assert [e.key for e in emit.events if e.topic == ADHERENCE_TOPIC] == ["wfm:101"]
    assert [r.method for r in sim.requests[-2:]] == ["DELETE", "DELETE"]  # logout trusts it too
    assert "TLS" not in caplog.text


async def test_verify_tls_off_connects_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim, tls_front(sim.url) as https:
        sim.add_activity(101, T0 - 1_000, "TALK")
        cfg = config(https, sim, verify_tls=False, adherence=True)
        src = CalabrioSource(cfg, source_deps("wfm"), now_ms=clock, sleep=no_sleep, cycles=1)
        with caplog.at_level(logging.WARNING):
            await cycle(src, emit)
            await cycle(src, emit)
    assert activities(emit) == [("101", T0 - 1_000, "TALK")]
    warnings = [r.getMessage() for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert warnings == [
        "calabrio source wfm: TLS certificate verification is OFF (verify_tls: false): anyone on the "
        "path can read and change the traffic"
    ]

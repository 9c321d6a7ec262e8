"""The Calabrio source against the Calabrio simulator on 127.0.0.1: windows, restarts, re-auth."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from streamd.errors import AuthError
from streamd.events import AGENT_STATE_TOPIC, DEADLETTER_TOPIC, AgentState, State
from streamd.publish.memory import MemoryEmit
from streamd.sim.calabrio import CalabrioSimulator, demo_source, rtdc_sink_config
from streamd.sinks.calabrio_rtdc import CalabrioRtdcSinkConfig
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import ACTIVITY_TOPIC, ADHERENCE_TOPIC
from streamd.sources.calabrio.source import AdherenceSpec, CalabrioSource
from streamd.telemetry import ComponentState
from tests.helpers import Clock, MemoryCursors, no_sleep, running, source_deps, until

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ACTIVITY = "/api/rest/scheduling/realTime/activity/detail"


def source(sim: CalabrioSimulator, clock: Clock[int], cursors: MemoryCursors, **cfg: Any) -> CalabrioSource:
    config = CalabrioSourceConfig.model_validate(
        {
            "kind": "calabrio",
            "name": "wfm",
            "url": sim.url,
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
    deps = source_deps("wfm", cursors=cursors, delays=lambda: itertools.repeat(0))
    return CalabrioSource(config, deps, now_ms=clock, sleep=no_sleep, cycles=1)


async def cycle(src: CalabrioSource, emit: MemoryEmit) -> None:
    """One acknowledged poll cycle of each poller (they stop after ``cycles=1``)."""
    for job in src.jobs(emit):
        await job.session(lambda: None)


def activities(emit: MemoryEmit) -> list[tuple[str, int, str]]:
    return [
        (e.data["agentId"], e.data["timestamp"], e.data["agentState"])
        for e in emit.events
        if e.topic == ACTIVITY_TOPIC
    ]


async def test_boundary_activities_are_published_once_across_windows() -> None:
    clock, cursors, emit = Clock(T0), MemoryCursors(), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        src = source(sim, clock, cursors)
        sim.add_activity(101, T0 - 600_000, "READY_WAITING")  # exactly at the first fromTime
        sim.add_activity(101, T0 - 1, "TALK")
        sim.add_activity(102, T0, "HOLD")  # exactly at the first toTime (exclusive)
        await cycle(src, emit)
        assert activities(emit) == [("101", T0 - 600_000, "READY_WAITING"), ("101", T0 - 1, "TALK")]
        clock.now = T0 + 10_000
        sim.add_activity(101, T0 - 60_000, "NOT_READY_BUSY", "3")  # exactly at the overlap start, late
        sim.add_activity(101, T0 + 9_999, "WORK_AFTER_CONTACT")  # just before the second toTime
        await cycle(src, emit)
        clock.now = T0 + 20_000
        await cycle(src, emit)
    assert activities(emit) == [
        ("101", T0 - 600_000, "READY_WAITING"),
        ("101", T0 - 1, "TALK"),
        ("101", T0 - 60_000, "NOT_READY_BUSY"),
        ("102", T0, "HOLD"),
        ("101", T0 + 9_999, "WORK_AFTER_CONTACT"),
    ]
    windows = [(int(r.params["fromTime"]), int(r.params["toTime"])) for r in sim.calls(ACTIVITY)]
    assert windows == [(T0 - 600_000, T0), (T0 - 60_000, T0 + 10_000), (T0 - 50_000, T0 + 20_000)]


async def test_restart_resumes_without_gap_or_repeat() -> None:
    clock, cursors = Clock(T0), MemoryCursors()
    first, second = MemoryEmit(), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 30_000, "READY_WAITING")
        sim.add_activity(101, T0 - 10_000, "TALK")
        await cycle(source(sim, clock, cursors), first)
        # the daemon is down for a while; one row arrives late, inside the overlap
        clock.now = T0 + 300_000
        sim.add_activity(101, T0 - 5_000, "HOLD", visible_at=T0 + 100_000)
        sim.add_activity(101, T0 + 200_000, "WORK_AFTER_CONTACT")
        restarted = source(sim, clock, cursors)  # a new process: only the cursor store survives
        await cycle(restarted, second)
    assert activities(first) == [("101", T0 - 30_000, "READY_WAITING"), ("101", T0 - 10_000, "TALK")]
    assert activities(second) == [("101", T0 - 5_000, "HOLD"), ("101", T0 + 200_000, "WORK_AFTER_CONTACT")]
    assert int(sim.calls(ACTIVITY)[-1].params["fromTime"]) == T0 - 60_000


async def test_cursor_is_not_saved_when_emit_fails() -> None:
    clock, cursors = Clock(T0), MemoryCursors()

    class FailingEmit(MemoryEmit):
        async def __call__(self, events: Any) -> None:
            raise RuntimeError("kafka down")

    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 1_000, "TALK")
        with pytest.raises(RuntimeError):
            await cycle(source(sim, clock, cursors), FailingEmit())
        assert cursors.saved == {}
        emit = MemoryEmit()
        await cycle(source(sim, clock, cursors), emit)
    assert activities(emit) == [("101", T0 - 1_000, "TALK")]


async def test_session_expiry_mid_run_reauthorizes_and_loses_nothing() -> None:
    clock, cursors, emit = Clock(T0), MemoryCursors(), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        src = source(sim, clock, cursors)
        sim.add_activity(101, T0 - 1_000, "TALK")
        await cycle(src, emit)
        sim.expire_sessions()
        clock.now += 5_000
        sim.add_activity(102, T0 + 1_000, "READY_WAITING")
        await cycle(src, emit)
        statuses = [r.status for r in sim.calls(ACTIVITY)]
    assert activities(emit) == [("101", T0 - 1_000, "TALK"), ("102", T0 + 1_000, "READY_WAITING")]
    assert sim.authorizations == 2
    assert statuses == [200, 401, 200]


async def test_run_keeps_polling_through_scripted_expiries() -> None:
    clock, cursors, emit = Clock(T0), MemoryCursors(), MemoryEmit()
    async with CalabrioSimulator(agents=3, clock_ms=clock, expire_after=2) as sim:
        for agent in (101, 102, 103):
            sim.add_activity(agent, T0 - 1_000, "READY_WAITING")
        src = source(sim, clock, cursors)
        src.cycles = None
        async with running(src, emit):
            await emit.wait_for(3 * 2)
            for agent in (101, 102, 103):
                sim.add_activity(agent, T0 + 1, "TALK")
            clock.now += 1_000
            await emit.wait_for(6 * 2)
    assert sim.authorizations >= 2
    assert sorted(activities(emit)) == sorted(
        [(str(a), T0 - 1_000, "READY_WAITING") for a in (101, 102, 103)]
        + [(str(a), T0 + 1, "TALK") for a in (101, 102, 103)]
    )
    assert sim.requests[-1].method == "DELETE"  # logged out on cancellation


async def test_bad_credentials_stop_the_source_with_auth_error() -> None:
    clock = Clock(T0)
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        src = source(sim, clock, MemoryCursors(), password="wrong")
        src.cycles = None
        with pytest.raises(AuthError, match="rejected the credentials"):
            await src.run(MemoryEmit())


async def test_canonical_states_are_enriched_with_reference_data() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 1_000, "NOT_READY_BUSY", "7")
        await cycle(source(sim, clock, MemoryCursors(), agent_ids=[101]), emit)
        body = sim.bodies_to(ACTIVITY)[0]
    canonical = [e for e in emit.events if e.topic == AGENT_STATE_TOPIC]
    assert len(canonical) == 1
    state = canonical[0].data
    assert isinstance(state, AgentState)
    assert (state.agent_id, state.state, state.reason_code, state.agent_name) == (
        "101",
        State.NOT_READY,
        "7",
        "Ana Silva",
    )
    assert canonical[0].key == "wfm:101"
    vendor = next(e for e in emit.events if e.topic == ACTIVITY_TOPIC)
    assert vendor.data["acdId"] == "5001"
    assert body == {"agentIds": [101]}
    assert sim.requests[1].path == "/api/rest/scheduling/agent"


async def test_reference_failure_does_not_stop_activities() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 1_000, "TALK")
        sim.fail_next(500, path="/api/rest/scheduling/agent")
        await cycle(source(sim, clock, MemoryCursors()), emit)
    assert activities(emit) == [("101", T0 - 1_000, "TALK")]
    assert emit.events[0].data["agentName"] is None


async def test_server_error_on_activities_does_not_advance_the_cursor() -> None:
    clock, cursors = Clock(T0), MemoryCursors()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 1_000, "TALK")
        sim.fail_next(503, path=ACTIVITY)
        src = source(sim, clock, cursors)
        src.cycles = None
        emit = MemoryEmit()
        async with running(src, emit):
            await emit.wait_for(2)
    assert activities(emit)[0] == ("101", T0 - 1_000, "TALK")
    assert [r.status for r in sim.calls(ACTIVITY)][:2] == [503, 200]


async def test_unknown_state_is_published_as_unknown() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 1_000, "ON_BREAK_NEW")
        await cycle(source(sim, clock, MemoryCursors()), emit)
    canonical = [e.data for e in emit.events if e.topic == AGENT_STATE_TOPIC]
    assert [s.state for s in canonical] == [State.UNKNOWN]
    assert not [e for e in emit.events if e.topic == DEADLETTER_TOPIC]


async def test_adherence_is_published_as_a_snapshot_then_only_changes() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=3, clock_ms=clock) as sim:
        src = source(sim, clock, MemoryCursors(), adherence=True, adherence_page_size=2)
        await cycle(src, emit)  # through the pollers: a fresh session starts with a snapshot
        first = [e for e in emit.events if e.topic == ADHERENCE_TOPIC]
        async with src.client() as client:
            spec = AdherenceSpec(src.cfg, client, clock)
            before = await spec.fetch(None)
            sim.set_adherence(102, scheduleAdherence=71.5)
            after = await spec.fetch(before.cursor)
            clock.now += 300_000  # adherence_refresh (default 5 min): everything again, as a snapshot
            refreshed = await spec.fetch(after.cursor)
        pages = [r.params["pageNumber"] for r in sim.calls("/api/rest/scheduling/adherence/agent")]
    assert [e.key for e in first] == ["wfm:101", "wfm:102", "wfm:103"]
    assert all(e.snapshot for e in first)
    assert first[0].data["date"] == "2026-01-01"
    assert first[0].data["details"][0]["actuals"][0]["actualAgentState"] == "TALK"
    assert len(before.events) == 3
    assert [(e.key, e.data["scheduleAdherence"], e.snapshot) for e in after.events] == [
        ("wfm:102", 71.5, False)
    ]
    assert [(e.key, e.snapshot) for e in refreshed.events] == [
        ("wfm:101", True),
        ("wfm:102", True),
        ("wfm:103", True),
    ]
    assert pages == ["1", "2"] * 4


async def test_adherence_without_permission_fails_alone_and_activities_go_on() -> None:
    emit = MemoryEmit()
    async with CalabrioSimulator(agents=2) as sim:
        cfg = CalabrioSourceConfig.model_validate(
            {
                "kind": "calabrio",
                "name": "wfm",
                "url": sim.url,
                "username": sim.username,
                "password": sim.password,
                "interval": 0.05,
                "timeout": 0.04,
                "adherence": True,
                "adherence_interval": 0.05,
            }
        )
        src = CalabrioSource(cfg, source_deps("wfm", failed_retry=3600))  # a daemon's policy
        sim.fail_next(403, path="/api/rest/scheduling/adherence/agent", times=10_000)  # for good
        async with running(src, emit, start_timeout=5):
            await until(lambda: len(sim.calls(ACTIVITY)) >= 5)  # the activity job polls on
            component = src.deps.component
            assert component.jobs["adherence"].state is ComponentState.FAILED
            assert component.jobs["activity"].state is ComponentState.RUNNING
            assert component.state is ComponentState.RETRYING
            assert component.detail.startswith("adherence failed: ")
    assert not [e for e in emit.events if e.topic == ADHERENCE_TOPIC]


async def test_demo_simulator_config_validates_and_streams_real_time() -> None:
    emit = MemoryEmit()
    async with demo_source(4) as cfg_dict:
        cfg = CalabrioSourceConfig.model_validate(cfg_dict).model_copy(
            update={"interval": 0.05, "timeout": 0.04, "adherence_interval": 0.05}
        )
        CalabrioRtdcSinkConfig.model_validate(rtdc_sink_config(cfg_dict, "pbx1"))
        src = CalabrioSource(cfg, source_deps("wfm"))
        async with running(src, emit):
            await emit.wait_for(4 * 2 + 4)  # 4 agents' first states (vendor + canonical) + adherence
    assert {e.key for e in emit.events if e.topic == AGENT_STATE_TOPIC} == {
        "wfm:101",
        "wfm:102",
        "wfm:103",
        "wfm:104",
    }


async def test_random_late_activities_and_restarts_publish_each_activity_exactly_once() -> None:
    rng = random.Random(7)
    clock, cursors, emit = Clock(T0), MemoryCursors(), MemoryEmit()
    expected: set[tuple[str, int, str]] = set()
    async with CalabrioSimulator(agents=3, clock_ms=clock) as sim:
        for _ in range(60):
            agent, ts = rng.choice((101, 102, 103)), T0 + rng.randrange(0, 600_000)
            state = rng.choice(("READY_WAITING", "TALK", "HOLD", "NOT_READY_BUSY"))
            sim.add_activity(
                agent, ts, state, visible_at=ts + rng.randrange(0, 60_000)
            )  # late up to the overlap
            expected.add((str(agent), ts, state))
        while clock.now < T0 + 700_000:
            src = source(sim, clock, cursors, initial_lookback=0)  # a (re)start: only the cursor survives
            async with src.client() as client:  # one client per process, as in a session
                poller = src.activity_poller(client)
                while clock.now < T0 + 700_000:
                    clock.now += rng.randrange(1_000, 40_000)
                    await poller.session(emit, lambda: None)
                    if rng.random() < 0.3:
                        break
    published = activities(emit)
    assert len(published) == len(set(published))
    assert set(published) == expected

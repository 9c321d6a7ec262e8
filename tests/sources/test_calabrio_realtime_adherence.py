"""Real-time adherence (issue 21 item 8) against the simulator: agents' states against today's
schedule, published as they change; the final publish of a day's figures after midnight in the
tenant's time zone; read back from Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.events import AGENT_ADHERENCE_TOPIC, AgentAdherence, State
from streamd.publish.memory import MemoryEmit
from streamd.sim.calabrio import CalabrioSimulator, SimScheduled
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import ADHERENCE_TOPIC
from streamd.sources.calabrio.source import CalabrioSource
from tests.harness import running_daemon
from tests.helpers import Clock, MemoryCursors, no_sleep, source_deps
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.anyio

MIN = 60_000
T0 = 1_767_258_000_000  # 2026-01-01T09:00:00Z
SCHEDULE = "/api/rest/scheduling/schedule/activity/detail"
ADHERENCE = "/api/rest/scheduling/adherence/agent"


def source(
    sim: CalabrioSimulator, clock: Clock[int], cursors: MemoryCursors | None = None, **cfg: Any
) -> CalabrioSource:
    config = CalabrioSourceConfig.model_validate(
        {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
         "password": sim.password, "interval": 1, "timeout": 0.9, "overlap": 60, "initial_lookback": 600,
         "reference_publish": False, **cfg}
    )  # fmt: skip
    deps = source_deps("wfm", cursors=cursors or MemoryCursors())
    src = CalabrioSource(config, deps, now_ms=clock, sleep=no_sleep, cycles=1)
    src.schedule.clock = lambda: clock() / 1000
    return src


async def cycle(src: CalabrioSource, emit: MemoryEmit) -> None:
    for job in src.jobs(emit):
        await job.session(lambda: None)


def canonical(emit: MemoryEmit) -> list[AgentAdherence]:
    return [e.data for e in emit.events if e.topic == AGENT_ADHERENCE_TOPIC]


async def test_status_changes_are_published_as_states_and_the_schedule_change() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        sim.set_schedule(
            101,
            SimScheduled("IN_SERVICE", T0 - 60 * MIN, T0 + 30 * MIN, "In Service", "Sales", 1),
            SimScheduled("LUNCH", T0 + 30 * MIN, T0 + 90 * MIN, "Lunch", "Lunch"),
        )
        sim.add_activity(101, T0 - 5 * MIN, "READY_WAITING")
        sim.add_activity(102, T0 - 4 * MIN, "TALK")  # 102 has no schedule today
        src = source(sim, clock, realtime_adherence=True, schedule_refresh="1h")
        await cycle(src, emit)
        first = canonical(emit)
        clock.now = T0 + 10 * MIN
        sim.add_activity(101, T0 + 9 * MIN, "NOT_READY_BUSY", "3")  # out: in service, not ready
        await cycle(src, emit)
        second = canonical(emit)[len(first) :]
        clock.now = T0 + 31 * MIN  # lunch began: not ready is in adherence now, without a state change
        await cycle(src, emit)
        third = canonical(emit)[len(first) + len(second) :]
        clock.now = T0 + 32 * MIN
        await cycle(src, emit)  # nothing changed
        schedule_reads = sim.calls(SCHEDULE)
    assert [(a.agent_id, a.status, a.scheduled_activity, a.state) for a in first] == [
        ("101", "in", "in_service", State.AVAILABLE),
        ("102", "out", None, State.BUSY),  # unscheduled: only logged out is in adherence
    ]
    assert first[0].since.timestamp() * 1000 == T0 - 5 * MIN  # since the state began
    assert (first[0].queue_id, first[0].scheduled_label, first[0].agent_name) == (
        "1",
        "In Service",
        "Ana Silva",
    )
    assert [(a.agent_id, a.status, a.vendor_state) for a in second] == [("101", "out", "NOT_READY_BUSY")]
    assert second[0].since.timestamp() * 1000 == T0 + 9 * MIN
    assert [(a.agent_id, a.status, a.scheduled_activity) for a in third] == [("101", "in", "lunch")]
    assert third[0].since.timestamp() * 1000 == T0 + 30 * MIN  # since the lunch began
    assert len(canonical(emit)) == 4
    vendor = [e for e in emit.events if e.topic == ADHERENCE_TOPIC]
    assert [(e.key, e.type, e.data["inAdherence"], e.data["scheduledActivityType"]) for e in vendor] == [
        ("wfm:101", "calabrio.adherence.AgentAdherenceState", True, "in_service"),
        ("wfm:102", "calabrio.adherence.AgentAdherenceState", False, None),
        ("wfm:101", "calabrio.adherence.AgentAdherenceState", False, "in_service"),
        ("wfm:101", "calabrio.adherence.AgentAdherenceState", True, "lunch"),
    ]
    assert [r.params for r in schedule_reads] == [{"fromDate": "2026-01-01", "toDate": "2026-01-01"}]


async def test_adherence_rules_are_configurable_per_activity_type() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.set_schedule(
            101, SimScheduled("project", T0 - MIN, T0 + MIN), SimScheduled("coaching", T0 + MIN, T0 + 9 * MIN)
        )
        sim.add_activity(101, T0 - 5 * MIN, "READY_WAITING")
        src = source(
            sim, clock, realtime_adherence=True, adherence_rules={"PROJECT": ["available", "not_ready"]}
        )
        await cycle(src, emit)
        clock.now = T0 + 2 * MIN
        await cycle(src, emit)
    assert [(a.status, a.scheduled_activity) for a in canonical(emit)] == [
        ("in", "project"),
        ("unknown", "coaching"),
    ]


async def test_a_schedule_that_cannot_be_read_is_counted_and_activities_go_on() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.fail_next(403, path=SCHEDULE, times=2)  # refused, also after the re-login it causes
        sim.set_schedule(101, SimScheduled("in_service", T0 - 60 * MIN, T0 + 60 * MIN))
        sim.add_activity(101, T0 - 5 * MIN, "READY_WAITING")
        src = source(sim, clock, realtime_adherence=True)
        await cycle(src, emit)
        unread = canonical(emit)
        clock.now += 301_000  # schedule_refresh (5 min): read again
        await cycle(src, emit)
    assert unread == []  # nobody is judged without today's schedule
    assert [e.data["agentState"] for e in emit.events if e.topic == "calabrio.agent-state"] == [
        "READY_WAITING"
    ]
    assert [(a.status, a.scheduled_activity) for a in canonical(emit)] == [("in", "in_service")]


async def test_a_days_figures_are_published_once_more_after_midnight_in_the_tenant_zone() -> None:
    # 2026-01-01 23:58 in Chicago is 2026-01-02 05:58 UTC
    before = 1_767_333_480_000
    clock, emit, cursors = Clock(before), MemoryEmit(), MemoryCursors()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        sim.set_adherence(101, date="2026-01-01", scheduleAdherence=88.0)
        await cycle(source(sim, clock, cursors, adherence=True, tenant_timezone="America/Chicago"), emit)
        published = len(emit.events)
        sim.set_adherence(101, date="2026-01-01", scheduleAdherence=86.5)  # the day's last minutes
        clock.now = before + 4 * MIN  # 00:02 the next day: a restart, too
        await cycle(source(sim, clock, cursors, adherence=True, tenant_timezone="America/Chicago"), emit)
        dates = [r.params["date"] for r in sim.calls(ADHERENCE)]
    assert dates == ["2026-01-01", "2026-01-01", "2026-01-02"]
    after = [e for e in emit.events[published:] if e.topic == ADHERENCE_TOPIC]
    final = [(e.key, e.data["date"], e.data["scheduleAdherence"]) for e in after if e.data.get("final")]
    assert final == [("wfm:101", "2026-01-01", 86.5), ("wfm:102", "2026-01-01", 92.5)]
    assert [(e.key, e.data["date"]) for e in after if not e.data.get("final")] == [
        ("wfm:101", "2026-01-02"),
        ("wfm:102", "2026-01-02"),
    ]
    assert all(e.snapshot for e in after)


@pytest.mark.kafka
async def test_adherence_events_are_read_back_from_kafka(tmp_path: Path) -> None:
    async with EmbeddedBroker() as bootstrap, CalabrioSimulator(agents=1) as sim:
        now = sim.clock_ms()
        sim.set_schedule(101, SimScheduled("break", now - 10 * MIN, now + 60 * MIN))
        sim.add_activity(101, now - 2 * MIN, "TALK")  # on a call during a break: out
        kafka = {"bootstrap_servers": bootstrap, "idempotence": False}
        block = {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
                 "password": sim.password, "interval": "300ms", "timeout": "250ms",
                 "realtime_adherence": True}  # fmt: skip
        async with running_daemon(tmp_path, block, kafka=kafka):
            records = await read_topic(bootstrap, "streamd.agent-adherence", lambda rs: len(rs) >= 1)
            vendor = await read_topic(bootstrap, "streamd.calabrio.adherence", lambda rs: len(rs) >= 1)
    value = orjson.loads(records[0].value)
    assert records[0].key == b"wfm:101"
    assert (value["status"], value["state"], value["scheduled_activity"]) == ("out", "busy", "break")
    assert orjson.loads(vendor[0].value)["inAdherence"] is False


async def test_an_agent_idle_since_before_the_start_is_judged_from_its_adherence_actuals() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.set_schedule(101, SimScheduled("break", T0 - 10 * MIN, T0 + 20 * MIN))
        actuals = [
            {"actualAgentState": "TALK", "actualAgentStateStartTime": "2026-01-01T08:00:00Z"},
            {"actualAgentState": "NOT_READY_BUSY", "actualAgentStateStartTime": "2026-01-01T08:40:00Z"},
        ]
        sim.set_adherence(101, details=[{"scheduledActivityType": "break", "actuals": actuals}])
        src = source(sim, clock, realtime_adherence=True, adherence=True)
        await cycle(src, emit)  # no activity in the window: 101's state comes from adherence
        clock.now += 1_000
        await cycle(src, emit)
    (adherence,) = canonical(emit)
    assert (adherence.status, adherence.vendor_state, adherence.state) == (
        "in",
        "NOT_READY_BUSY",
        State.NOT_READY,
    )
    assert adherence.since.timestamp() * 1000 == T0 - 10 * MIN  # the break began after the state

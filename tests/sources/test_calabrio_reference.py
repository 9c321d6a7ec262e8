"""Calabrio reference data (issue 21 item 6): agents, teams and service queues published on
``calabrio.reference`` and used to enrich activities, against the simulator; read back from Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.events import AGENT_STATE_TOPIC, AgentState
from streamd.publish.memory import MemoryEmit
from streamd.sim.calabrio import CalabrioSimulator, SimAgent
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import ACTIVITY_TOPIC, REFERENCE_TOPIC
from streamd.sources.calabrio.reference import ReferenceSpec
from streamd.sources.calabrio.source import CalabrioSource
from tests.harness import running_daemon
from tests.helpers import Clock, no_sleep, source_deps
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TEAMS = "/api/rest/org/common/team/permission/ViewOrg"
SERVICES = "/api/rest/scheduling/service"
AGENTS = "/api/rest/scheduling/agent"


def source(sim: CalabrioSimulator, clock: Clock[int], **cfg: Any) -> CalabrioSource:
    config = CalabrioSourceConfig.model_validate(
        {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
         "password": sim.password, "interval": 1, "timeout": 0.9, **cfg}
    )  # fmt: skip
    src = CalabrioSource(config, source_deps("wfm"), now_ms=clock, sleep=no_sleep, cycles=1)
    src.reference.clock = lambda: clock() / 1000
    return src


async def cycle(src: CalabrioSource, emit: MemoryEmit) -> None:
    for job in src.jobs(emit):
        await job.session(lambda: None)


def reference(emit: MemoryEmit) -> dict[str, tuple[str, dict[str, Any], bool]]:
    return {e.key: (e.type, e.data, e.snapshot) for e in emit.events if e.topic == REFERENCE_TOPIC}


async def test_agents_teams_and_queues_are_published_and_enrich_activities() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        sim.add_activity(102, T0 - 1_000, "TALK")
        await cycle(source(sim, clock), emit)
        agents_read = sim.calls(AGENTS)
    published = reference(emit)
    assert sorted(published) == [
        "wfm:agent:101", "wfm:agent:102", "wfm:service_queue:1", "wfm:service_queue:2", "wfm:team:3", "wfm:team:4",
    ]  # fmt: skip
    kind, agent, snapshot = published["wfm:agent:102"]
    assert (kind, snapshot) == ("calabrio.reference.Agent", True)
    assert (agent["agentId"], agent["acdId"], agent["firstName"], agent["services"]) == (
        "102",
        "5002",
        "Ben",
        [2],
    )
    assert published["wfm:team:4"][:2] == (
        "calabrio.reference.Team",
        {"id": "4", "name": "Team 4", "groupId": 1},
    )
    queue = published["wfm:service_queue:2"]
    assert (queue[0], queue[1]["id"], queue[1]["name"], queue[1]["number"]) == (
        "calabrio.reference.ServiceQueue", "2", "Support", 7002,
    )  # fmt: skip
    assert [r.params for r in agents_read] == [{"fullDetail": "true"}]  # once, shared by both jobs
    vendor = next(e.data for e in emit.events if e.topic == ACTIVITY_TOPIC)
    assert (vendor["agentName"], vendor["teamId"], vendor["teamName"]) == ("Ben Okafor", "4", "Team 4")
    assert (vendor["queueIds"], vendor["queueNames"]) == (["2"], ["Support"])
    state = next(e.data for e in emit.events if e.topic == AGENT_STATE_TOPIC)
    assert isinstance(state, AgentState)
    assert (state.agent_name, state.queue_ids) == ("Ben Okafor", ("2",))


async def test_after_reference_refresh_only_what_changed_is_published_again() -> None:
    clock = Clock(T0)
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim:
        src = source(sim, clock, reference_refresh="1h")
        async with src.client(src.reference_auth) as client:
            spec = ReferenceSpec("wfm", client, src.reference, clock)
            first = await spec.fetch(None)  # after a (re)start: everything, as a snapshot
            sim.world.agents.append(SimAgent(103, "5003", "Chloé", "Martin", (3,), 3))  # hired
            clock.now += 3_599_000
            early = await spec.fetch(first.cursor)
            clock.now += 1_000
            due = await spec.fetch(early.cursor)
        reads = [len(sim.calls(p)) for p in (AGENTS, TEAMS, SERVICES)]
    assert len(first.events) == 6
    assert all(e.snapshot for e in first.events)
    assert early.events == []  # not due yet, and nothing changed
    assert {e.key: e.snapshot for e in due.events} == {"wfm:agent:103": False, "wfm:service_queue:3": False}
    assert reads == [2, 2, 2]


async def test_a_kind_that_cannot_be_read_keeps_the_others_and_the_activities_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.fail_next(403, path=TEAMS, times=10)  # the API user lacks ViewOrg
        sim.add_activity(101, T0 - 1_000, "TALK")
        await cycle(source(sim, clock), emit)
    assert sorted(reference(emit)) == ["wfm:agent:101", "wfm:service_queue:1"]
    vendor = next(e.data for e in emit.events if e.topic == ACTIVITY_TOPIC)
    assert (vendor["teamId"], vendor["teamName"]) == ("3", "Team 3")  # from the agent's mainTeam
    assert "cannot read the team reference data: calabrio GET " + TEAMS + ": HTTP 403" in caplog.text


async def test_reference_publish_off_reads_but_does_not_publish() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    async with CalabrioSimulator(agents=1, clock_ms=clock) as sim:
        sim.add_activity(101, T0 - 1_000, "TALK")
        src = source(sim, clock, reference_publish=False, teams_path="", services_path="")
        await cycle(src, emit)
        paths = [r.path for r in sim.requests]
    assert [j.name for j in src.jobs(emit)] == ["activity"]
    assert reference(emit) == {}
    assert TEAMS not in paths
    assert SERVICES not in paths
    assert next(e.data for e in emit.events if e.topic == ACTIVITY_TOPIC)["agentName"] == "Ana Silva"


@pytest.mark.kafka
async def test_the_reference_topic_is_read_back_from_kafka(tmp_path: Path) -> None:
    async with EmbeddedBroker() as bootstrap, CalabrioSimulator(agents=3) as sim:
        kafka = {"bootstrap_servers": bootstrap, "idempotence": False}
        block = {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
                 "password": sim.password, "interval": "300ms", "timeout": "250ms"}  # fmt: skip
        async with running_daemon(tmp_path, block, kafka=kafka):
            records = await read_topic(bootstrap, "streamd.calabrio.reference", lambda rs: len(rs) >= 7)
    keys = sorted(r.key.decode() for r in records)
    assert keys == [
        "wfm:agent:101", "wfm:agent:102", "wfm:agent:103", "wfm:service_queue:1", "wfm:service_queue:2",
        "wfm:team:3", "wfm:team:4",
    ]  # fmt: skip
    values = {r.key.decode(): orjson.loads(r.value) for r in records}
    assert values["wfm:agent:103"]["acdId"] == "5003"
    assert values["wfm:service_queue:1"]["name"] == "Sales"

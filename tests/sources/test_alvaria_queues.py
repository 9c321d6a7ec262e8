"""Agents' queues against the simulator (issue 20 item 2): an agent carries its worktypes' tile ids,
is published again when only its queues change (and only then), and presence follows the
discovered worktypes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from streamd.events import AgentState
from streamd.publish.memory import MemoryEmit
from streamd.sim.alvaria import AlvariaSimulator
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.source import AlvariaSource
from tests.helpers import running, source_deps, until

pytestmark = pytest.mark.anyio


def make_source(sim: AlvariaSimulator, **overrides: Any) -> AlvariaSource:
    block = sim.source_config("cloud1", **({"timeout": "2s", "interval": "50ms"} | overrides))
    deps = source_deps("cloud1", delays=lambda: itertools.repeat(0))
    return AlvariaSource(AlvariaSourceConfig.model_validate(block), deps, jitter=0)


def states_of(emit: MemoryEmit, agent_id: str) -> list[AgentState]:
    return [e.data for e in emit.of_type("streamd.agent.State") if e.data.agent_id == agent_id]


async def more_polls(sim: AlvariaSimulator, *scopes: tuple[str, str], n: int = 5) -> None:
    """Wait until each (query, scope) was polled ``n`` more times."""
    for query, scope in scopes:
        polls = len(sim.requests(query, scope))
        await until(lambda q=query, s=scope, p=polls: len(sim.requests(q, s)) >= p + n)


def tiles(work_type: str) -> tuple[str, ...]:
    return (f"worktype/{work_type}/inboundacd/voice", f"worktype/{work_type}/inboundchat/chat")


async def test_an_agent_carries_the_tile_ids_of_its_worktypes() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        emit = MemoryEmit()
        source = make_source(
            sim, queries=["userActivity", "presence", "channelActivity"], presence_work_type_ids=[wt1, wt2]
        )
        expected = ("team/team2", f"worktype/{wt2}", *tiles(wt2))  # agent00002 serves wt2 only
        async with running(source, emit):
            await until(lambda: [s.queue_ids for s in states_of(emit, "agent00002")][-1:] == [expected])
    metric_queues = {e.data.queue_id for e in emit.of_type("streamd.queue.Metric")}
    assert set(tiles(wt1) + tiles(wt2)) <= metric_queues  # the very ids the tiles are published under


async def test_an_agent_is_published_again_when_only_its_worktypes_change_and_only_then() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity", "presence"], presence_work_type_ids=[wt1, wt2])
        async with running(source, emit):
            await until(
                lambda: (
                    [s.queue_ids for s in states_of(emit, "agent00002")][-1:]
                    == [("team/team2", f"worktype/{wt2}")]
                )
            )
            settled = len(states_of(emit, "agent00002"))
            await more_polls(sim, ("userActivity", "team2"), ("presence", wt1))
            assert len(states_of(emit, "agent00002")) == settled  # nothing changed: nothing published

            sim.world.assign("agent00002", wt1)
            await until(lambda: len(states_of(emit, "agent00002")) > settled)
            await more_polls(sim, ("userActivity", "team2"), ("presence", wt1))
            before, again = states_of(emit, "agent00002")[settled - 1 :]  # exactly one more
            assert again.queue_ids == ("team/team2", f"worktype/{wt1}", f"worktype/{wt2}")
            assert (again.state, again.since, again.vendor_state) == (
                before.state,
                before.since,
                before.vendor_state,
            )

            sim.world.unassign("agent00002", wt1)
            await until(
                lambda: states_of(emit, "agent00002")[-1].queue_ids == ("team/team2", f"worktype/{wt2}")
            )
    assert not emit.of_type("alvaria.userActivity.RowChanged")  # the rows never changed


async def test_presence_polls_the_discovered_worktypes_and_follows_the_listing() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        emit = MemoryEmit()
        source = make_source(
            sim,
            queries=["userActivity", "presence"],
            work_type_ids=[],
            discover=["work_types"],
            discover_every="200ms",
        )
        async with running(source, emit):
            await until(lambda: sim.requests("presence", wt1) and sim.requests("presence", wt2))
            await until(lambda: f"worktype/{wt1}" in states_of(emit, "agent00001")[-1].queue_ids)
            sim.world.add_work_type("wt9.104")
            sim.world.assign("agent00003", "wt9.104")
            await until(lambda: "worktype/wt9.104" in states_of(emit, "agent00003")[-1].queue_ids)
    assert all(r.params.get("workTypeId") for r in sim.requests("presence"))  # never org-wide


async def test_presence_discovers_nothing_while_its_worktypes_are_listed() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, _ = sim.world.work_type_ids
        emit = MemoryEmit()
        source = make_source(
            sim,
            queries=["presence", "channelActivity"],
            work_type_ids=[],
            discover=["work_types"],
            presence_work_type_ids=[wt1],
        )
        async with running(source, emit):
            await until(lambda: len(sim.requests("presence")) >= 5 and sim.requests("channelActivity"))
    assert {r.params.get("workTypeId") for r in sim.requests("presence")} == {wt1}

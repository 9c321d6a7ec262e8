"""Scope discovery against the simulator (issue 21 item 3): teams, worktypes and contact lists read
from the listings the guide names; a new team is polled and a removed one dropped without a
config change; a listing that fails keeps the known scopes."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest

from streamd.publish.memory import MemoryEmit
from streamd.sim.alvaria import AlvariaSimulator, error
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.source import AlvariaSource
from streamd.telemetry import ComponentState
from tests.helpers import running, source_deps, until

pytestmark = pytest.mark.anyio

DISCOVERING = {"team_ids": [], "work_type_ids": [], "contact_lists": [], "timeout": "2s"}


def make_source(sim: AlvariaSimulator, **overrides: Any) -> AlvariaSource:
    block = sim.source_config("cloud1", **(DISCOVERING | overrides))
    deps = source_deps("cloud1", delays=lambda: itertools.repeat(0), failed_retry=3600)  # a daemon's policy
    return AlvariaSource(AlvariaSourceConfig.model_validate(block), deps, jitter=0)


def scopes(emit: MemoryEmit, query: str) -> set[str]:
    return {e.data["scope"] for e in emit.of_type(f"alvaria.{query}.Row")} | {
        e.data["scope"] for e in emit.of_type(f"alvaria.{query}.RowAdded")
    }


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def test_every_scope_kind_is_read_from_its_listing() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        emit = MemoryEmit()
        source = make_source(sim, discover=["teams", "work_types", "contact_lists"], interval="50ms")
        async with running(source, emit):
            await until(
                lambda: (
                    scopes(emit, "userActivity") == {"team1", "team2"}
                    and scopes(emit, "teamActivity") == {"team1", "team2"}
                    and scopes(emit, "channelActivity") == {"wt1.104", "wt2.104"}
                    and scopes(emit, "listActivity") == {"Leads", "Renewals"}
                )
            )
        listed = {
            r.path.rsplit("/", 1)[-1]
            for r in sim.requests()
            if r.path.endswith(("teams", "workTypes", "lists"))
        }
        assert listed == {"teams", "workTypes", "lists"}
        assert len(sim.requests("teams")) == 1  # one read for both team queries (discover_every: 10 min)


async def test_a_new_team_is_polled_and_a_removed_one_dropped_without_a_config_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamd")
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        emit = MemoryEmit()
        source = make_source(
            sim,
            queries=["teamActivity", "userActivity"],
            discover=["teams"],
            discover_every="200ms",
            interval="50ms",
        )
        async with running(source, emit):
            await until(lambda: scopes(emit, "userActivity") == {"team1", "team2"})
            sim.world.add_team("team3", "Night shift")
            sim.world.add_agent("agent00099", now=sim.clock(), team_id="team3")
            await until(
                lambda: "team3" in scopes(emit, "userActivity") and "team3" in scopes(emit, "teamActivity")
            )
            sim.world.remove_team("team1")
            await until(lambda: said(caplog, "team team1 no longer listed by /provisioning/teams, dropped"))
            before = len(sim.requests("userActivity", "team1"))
            polls = len(sim.requests("userActivity", "team2"))
            await until(lambda: len(sim.requests("userActivity", "team2")) >= polls + 4)
            assert len(sim.requests("userActivity", "team1")) <= before + 1  # a cycle under way may finish
            assert source.deps.component.state is ComponentState.RUNNING
    assert said(caplog, "alvaria cloud1: 2 teams discovered: team1, team2")
    assert len(said(caplog, "new team team3 discovered, now polled")) == 1  # once per source, not per query
    assert len(said(caplog, "team team1 no longer listed")) == 1
    (agent,) = [e.data for e in emit.of_type("streamd.agent.State") if e.data.agent_id == "agent00099"][:1]
    assert agent.queue_ids == ("team/team3",)


async def test_a_failing_listing_keeps_the_known_teams_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamd")
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        emit = MemoryEmit()
        source = make_source(
            sim, queries=["userActivity"], discover=["teams"], discover_every="100ms", interval="50ms"
        )
        async with running(source, emit):
            await until(lambda: scopes(emit, "userActivity") == {"team1", "team2"})
            sim.faults.add(
                "teams", error(503, code=5031, message="provisioning store rebuilding"), times=None
            )
            await until(lambda: sim.requests("teams")[-1].status == 503)
            polls = len(sim.requests("userActivity", "team2"))
            await until(lambda: len(sim.requests("userActivity", "team2")) >= polls + 3)
            assert len(sim.requests("userActivity", "team1")) >= polls  # still polled
            sim.faults.clear("teams")
            await until(lambda: said(caplog, "the teams can be read again"))
    (line,) = said(caplog, "reading the teams failed, polling the 2 known")
    assert "HTTP 503 (code 5031, message 'provisioning store rebuilding'" in line


async def test_a_listing_refused_at_start_fails_the_query_with_the_reason() -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        sim.faults.add("teams", error(404), times=None)  # a path this deployment does not serve
        emit = MemoryEmit()
        source = make_source(sim, queries=["userActivity", "presence"], discover=["teams"], interval="50ms")
        async with running(source, emit):
            job = source.deps.component.jobs
            await until(
                lambda: "userActivity" in job and job["userActivity"].state is not ComponentState.STARTING
            )
            await until(lambda: emit.of_type("alvaria.presence.Row"))
            assert (
                "alvaria GET /provisioning/teams: HTTP 404 (error 'Not Found')" in job["userActivity"].detail
            )
        assert not sim.requests("userActivity")


async def test_the_first_listing_of_many_teams_does_not_fail_the_cycle_that_read_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="streamd")
    async with AlvariaSimulator(agents=5, teams=5, auto_advance=False) as sim:
        sim.latency = 1.2  # each answer within the 2 s timeout; five in a row past one batch's deadline
        emit = MemoryEmit()
        source = make_source(
            sim,
            queries=["teamActivity"],
            discover=["teams"],
            scope_concurrency=1,
            interval="3s",
            timeout="2s",
        )
        async with running(source, emit, start_timeout=20):
            await until(lambda: len(scopes(emit, "teamActivity")) == 5, timeout=20)
            assert source.deps.component.state is ComponentState.RUNNING
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text

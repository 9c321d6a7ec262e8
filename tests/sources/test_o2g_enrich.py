"""O2G enrichment against the simulator: names, reason labels, pilots in queue_ids, RTI agents."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from streamd.events import AgentState
from streamd.publish.memory import MemoryEmit
from streamd.sim.o2g import O2GSimulator
from streamd.telemetry import ComponentState

from .o2g_helpers import make_source, running, subscribed, until

pytestmark = pytest.mark.anyio

R = "/api/rest/1.0"


def latest(emit: MemoryEmit) -> dict[str, AgentState]:
    """Each agent's last published canonical state."""
    return {e.data.agent_id: e.data for e in emit.events if isinstance(e.data, AgentState)}


def reads(sim: O2GSimulator) -> dict[str, int]:
    """How many directory reads the simulator answered, by resource."""
    paths = [r.path for r in sim.requests]
    return {
        "users": sum(p.startswith(f"{R}/users/") for p in paths),
        "config": paths.count(f"{R}/acd/agent/config"),
        "reasons": paths.count(f"{R}/acd/agent/withdrawReasons"),
    }


def name(sim: O2GSimulator, login: str) -> str:
    """The display name the simulator's user service gives ``login``."""
    user = sim.directory.user(login)
    return f"{user['firstName']} {user['lastName']}"


QUEUED: dict[str, Any] = {
    "eventName": "OnPilotCallQueued",
    "pilot": "60141",
    "caller": "600",
    "queue": "5001",
    "callRef": "q1",
    "cause": "CAMP_ON",
    "numberOfQueued": 1,
}


async def test_agents_carry_names_reason_labels_and_the_pilots_that_serve_their_group() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=3, keepalive_period=0.05) as sim:
        sim.agents["oxe70101"].update(subState="WITHDRAW", withdrawReason=2)
        async with running(make_source(sim), emit):
            snapshot = latest(emit)
            assert (snapshot["oxe70101"].reason_code, snapshot["oxe70101"].reason_label) == ("2", "Meeting")
            assert snapshot["oxe70100"].agent_name == "Radia Turing"  # the user service's firstName lastName
            assert snapshot["oxe70100"].queue_ids == ("5001",)
            assert reads(sim) == {"users": 3, "config": 3, "reasons": 1}  # one group, asked once
            await subscribed(sim)
            sim.publish(QUEUED)
            await until(lambda: latest(emit)["oxe70102"].queue_ids == ("5001", "60141"))
            assert all(s.queue_ids == ("5001", "60141") for s in latest(emit).values())
            before = len(emit.events)
            generated = sim.generate(30)
            await until(lambda: len(emit.events) >= before + len(generated))
            assert all(s.agent_name == name(sim, s.agent_id) for s in latest(emit).values())
            assert reads(sim) == {"users": 3, "config": 3, "reasons": 1}  # never per event
            state_reads = sum(r.path == f"{R}/acd/agent/state" for r in sim.requests)
            sim.close_channels()  # reopened at once, then re-snapshotted (agent states read again)
            await until(
                lambda: sum(r.path == f"{R}/acd/agent/state" for r in sim.requests) >= state_reads + 3
            )
            await until(lambda: sum(e.snapshot and isinstance(e.data, AgentState) for e in emit.events) >= 6)
            assert reads(sim) == {"users": 3, "config": 3, "reasons": 1}  # fresh: not read again
            again = [e.data for e in emit.events[before:] if e.snapshot and isinstance(e.data, AgentState)]
            assert all(
                s.agent_name and s.queue_ids[:2] == ("5001", "60141") for s in again
            )  # 60142 too once it queued
            assert all(s.reason_label for s in again if s.reason_code)


async def test_failing_reads_leave_codes_and_logins_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=3, keepalive_period=0.05) as sim:
        sim.agents["oxe70101"].update(subState="WITHDRAW", withdrawReason=2)
        sim.fail_next("/acd/agent/withdrawReasons", 503, count=1000)
        sim.fail_next(f"{R}/users/", 500, count=1000, error="SERVER_PROBLEM")
        source = make_source(sim)
        source.directory.interval = 0.05  # refreshed again and again while the block runs
        with caplog.at_level(logging.INFO, logger="streamd.sources.o2g"):
            async with running(source, emit):
                withdrawn = latest(emit)["oxe70101"]
                assert (withdrawn.reason_code, withdrawn.reason_label, withdrawn.agent_name) == (
                    "2",
                    None,
                    None,
                )
                assert withdrawn.queue_ids == ("5001",)  # the agent configs still answered
                await until(lambda: reads(sim)["reasons"] >= 3)  # three refreshes, all failing
                assert source.deps.component.state is ComponentState.RUNNING
                sim.clear_faults()
                await until(lambda: latest(emit)["oxe70101"].reason_label == "Meeting")  # published again
                assert latest(emit)["oxe70100"].agent_name == name(sim, "oxe70100")
        lines = [r for r in caplog.records if "directory read" in r.getMessage()]
        assert [(r.levelno, "503" in r.getMessage() or "500" in r.getMessage()) for r in lines] == [
            (logging.WARNING, True),
            (logging.INFO, False),
        ]


async def test_rti_agent_events_yield_the_canonical_state_of_the_agents_login() -> None:
    emit = MemoryEmit()
    async with O2GSimulator(agents=2, keepalive_period=0.05) as sim:
        source = make_source(sim, packages=["agent", "rti"])
        async with running(source, emit):
            await until(lambda: bool(sim.subscriptions()))
            sim.publish(
                {"eventName": "OnAgentRtiChanged", "name": "L70101", "number": "70101", "type": "Normal",
                 "serviceState": "Assigned", "phoneState": "AcdConversation", "currentPG": "5001"},
                {"eventName": "OnAgentRtiChanged", "name": "X", "number": "79999", "type": "Normal",
                 "serviceState": "Assigned", "phoneState": "Idle"},
            )  # fmt: skip
            await until(lambda: latest(emit)["oxe70101"].vendor_state == "Assigned/AcdConversation")
            busy = latest(emit)["oxe70101"]
            assert (busy.state, busy.agent_name, busy.queue_ids) == ("busy", name(sim, "oxe70101"), ("5001",))
            assert set(latest(emit)) == {"oxe70100", "oxe70101"}  # an unknown number has no canonical state

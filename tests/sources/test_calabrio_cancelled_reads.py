"""Calabrio reference data and schedule: a read cancelled by the cycle's timeout is not counted as
loaded (the next cycle reads again); a read that failed (counted, logged) waits for the refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from streamd.sim.calabrio import CalabrioSimulator
from streamd.sim.calabrio.app import SESSION_COOKIE
from streamd.sim.script import Fault
from streamd.sources.calabrio.reference import ReferenceData
from streamd.sources.calabrio.schedule import ScheduleData
from tests.helpers import Clock

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
AGENTS = "/api/rest/scheduling/agent"
SCHEDULE = "/api/rest/scheduling/schedule/activity/detail"
DATE = "2026-01-01"


@asynccontextmanager
async def signed_in(sim: CalabrioSimulator, clock: Clock[int]) -> AsyncIterator[httpx.AsyncClient]:
    sim.world.sessions["t"] = [clock(), 0]
    async with httpx.AsyncClient(base_url=sim.url, cookies={SESSION_COOKIE: "t"}) as client:
        yield client


async def cancelled_mid_read(
    sim: CalabrioSimulator, path: str, read: Callable[[], Awaitable[object]]
) -> None:
    """Start ``read`` against a stalled ``path`` and cancel it once the request reached the simulator."""
    sim.faults.add(path, Fault(200, b"[]", delay=3600))
    async with anyio.create_task_group() as tg:
        tg.start_soon(read)
        while sim.faults.pending(path):  # the stalled answer was taken: the read is under way
            await anyio.sleep(0.01)
        tg.cancel_scope.cancel()  # the poller's cycle timeout


async def test_a_cancelled_reference_read_is_read_again_and_a_failed_one_waits() -> None:
    clock = Clock(T0)
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim, signed_in(sim, clock) as client:
        data = ReferenceData("wfm", {"agent": AGENTS}, 3600.0, lambda: clock() / 1000)
        await cancelled_mid_read(sim, AGENTS, lambda: data.refresh_if_stale(client))
        await data.refresh_if_stale(client)  # the next cycle, at once
        assert sorted(data.agents) == ["101", "102"]
        clock.now += 3_600_000
        sim.fail_next(403, path=AGENTS)
        await data.refresh_if_stale(client)  # failed: counted, logged, keeps the last copy
        await data.refresh_if_stale(client)  # not again before reference_refresh
        assert [r.status for r in sim.calls(AGENTS)] == [200, 403]
        assert sorted(data.agents) == ["101", "102"]


async def test_a_cancelled_schedule_read_is_read_again_and_a_failed_one_waits() -> None:
    clock = Clock(T0)
    async with CalabrioSimulator(agents=2, clock_ms=clock) as sim, signed_in(sim, clock) as client:
        schedule = ScheduleData("wfm", SCHEDULE, 900.0, lambda: clock() / 1000)
        await cancelled_mid_read(sim, SCHEDULE, lambda: schedule.refresh_if_stale(client, DATE, []))
        await schedule.refresh_if_stale(client, DATE, [])
        assert schedule.date == DATE  # read
        clock.now += 900_000
        sim.fail_next(403, path=SCHEDULE)
        await schedule.refresh_if_stale(client, DATE, [])
        await schedule.refresh_if_stale(client, DATE, [])
        assert [r.status for r in sim.calls(SCHEDULE)] == [200, 403]

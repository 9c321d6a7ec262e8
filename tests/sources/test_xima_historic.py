"""Xima historic export against the simulator: periods, cursor across restarts, ack-then-advance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from streamd.errors import AuthError, PublishError
from streamd.events import Event
from streamd.publish.memory import MemoryEmit
from streamd.sim.xima import Fault, XimaSimulator
from streamd.sources.xima.models import HISTORIC_ROW_TYPE, HISTORIC_SUMMARY_TYPE, HistoricSummary
from streamd.telemetry import ComponentState
from tests.helpers import Clock, MemoryCursors, running, until

from .xima_helpers import make_source

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REPORT = {"key": "LT39K5C5", "every": "15m", "lag": 0, "start": "2026-01-01T00:00:00Z"}


class FailingEmit(MemoryEmit):
    """Acknowledges ``ok`` batches, then fails ``failures`` times like a Kafka outage (spool
    full), then acknowledges again."""

    def __init__(self, ok: int, failures: int = 1) -> None:
        super().__init__()
        self.ok, self.failures = ok, failures

    async def __call__(self, events: Sequence[Event]) -> None:
        if self.ok == 0 and self.failures:
            self.failures -= 1
            raise PublishError("kafka did not acknowledge")
        self.ok -= 1
        await super().__call__(events)


def periods(emit: MemoryEmit) -> list[str]:
    return [e.data.period_start for e in emit.of_type(HISTORIC_SUMMARY_TYPE)]


def historic_source(sim: XimaSimulator, cursors: MemoryCursors, clock: Clock[datetime], **report: object):  # type: ignore[no-untyped-def]
    return make_source(sim, cursors=cursors, now=clock, metrics=[], historic=[{**REPORT, **report}])


async def test_each_due_period_is_exported_once_with_rows_and_summary() -> None:
    async with XimaSimulator(agents=3) as sim:
        emit = MemoryEmit()
        async with running(historic_source(sim, MemoryCursors(), Clock(T0 + timedelta(hours=1))), emit):
            await until(lambda: len(periods(emit)) == 4)
            await anyio.sleep(0.05)  # nothing more is due
        assert periods(emit) == [f"2026-01-01T00:{m:02d}:00.000+00:00" for m in (0, 15, 30, 45)]
        assert sim.historic_calls[0][1:] == (
            "2026-01-01T00:00:00.000+00:00",
            "2026-01-01T00:14:59.999+00:00",
        )
        rows = emit.of_type(HISTORIC_ROW_TYPE)
        assert len(rows) == 4 * 3
        assert rows[0].key == "cr1:LT39K5C5"
        assert rows[0].data.values["Agent"] == "Alice Adams(201)"
        summary = emit.of_type(HISTORIC_SUMMARY_TYPE)[0].data
        assert isinstance(summary, HistoricSummary)
        assert summary.row_count == 3
        assert [c.title for c in summary.columns][:2] == ["Agent", "Inbound Calls"]


async def test_cursor_survives_a_restart_without_repeating_or_skipping_a_period() -> None:
    cursors = MemoryCursors()
    clock = Clock(T0 + timedelta(hours=1))
    async with XimaSimulator() as sim:
        first = MemoryEmit()
        async with running(historic_source(sim, cursors, clock), first):
            await until(lambda: len(periods(first)) == 4)
        assert cursors.saved[("cr1", "historic:LT39K5C5")] == "2026-01-01T01:00:00.000+00:00"
        clock.now = T0 + timedelta(hours=1, minutes=31)
        second = MemoryEmit()
        async with running(historic_source(sim, cursors, clock), second):
            await until(lambda: len(periods(second)) == 2)
            await anyio.sleep(0.05)
        assert periods(second) == ["2026-01-01T01:00:00.000+00:00", "2026-01-01T01:15:00.000+00:00"]
        starts = [c[1] for c in sim.historic_calls]
        assert len(starts) == len(set(starts)) == 6  # no period requested twice
        ids = [e.id for e in first.events + second.events]
        assert len(ids) == len(set(ids))


async def test_cursor_advances_only_after_the_events_were_acknowledged() -> None:
    cursors = MemoryCursors()
    clock = Clock(T0 + timedelta(hours=1))
    async with XimaSimulator() as sim:
        failing = FailingEmit(ok=2)
        # The failed emit ends the session (the supervisor retries it); the cursor stayed at 00:30.
        async with running(historic_source(sim, cursors, clock), failing):
            await until(lambda: len(periods(failing)) == 4)
        assert periods(failing) == [f"2026-01-01T00:{m:02d}:00.000+00:00" for m in (0, 15, 30, 45)]
        assert cursors.saved[("cr1", "historic:LT39K5C5")] == "2026-01-01T01:00:00.000+00:00"
        # the unacknowledged period was requested again; its events keep their ids
        assert [c[1] for c in sim.historic_calls].count("2026-01-01T00:30:00.000+00:00") == 2


async def test_first_run_without_start_exports_the_last_complete_period() -> None:
    async with XimaSimulator() as sim:
        emit = MemoryEmit()
        clock = Clock(T0 + timedelta(hours=2, minutes=7))
        async with running(historic_source(sim, MemoryCursors(), clock, start=None), emit):
            await until(lambda: len(periods(emit)) == 1)
            await anyio.sleep(0.05)
        assert periods(emit) == ["2026-01-01T01:45:00.000+00:00"]


async def test_report_forbidden_is_fatal() -> None:
    async with XimaSimulator() as sim:
        sim.faults.add("historic", Fault(403))
        with pytest.raises(AuthError, match="LT39K5C5"):
            await historic_source(sim, MemoryCursors(), Clock(T0 + timedelta(hours=1))).run(MemoryEmit())


async def test_daily_periods_stay_on_local_midnight_across_both_dst_changes() -> None:
    daily = {"every": "1d", "timezone": "America/Chicago"}
    cursors = MemoryCursors()
    async with XimaSimulator() as sim:
        spring = MemoryEmit()
        clock = Clock(datetime(2026, 3, 11, 12, tzinfo=UTC))
        async with running(
            historic_source(sim, cursors, clock, start="2026-03-07T00:00:00", **daily), spring
        ):
            await until(lambda: len(periods(spring)) == 4)
            await anyio.sleep(0.05)  # nothing more is due
        assert periods(spring) == [
            "2026-03-07T00:00:00.000-06:00",
            "2026-03-08T00:00:00.000-06:00",  # 23 h long
            "2026-03-09T00:00:00.000-05:00",
            "2026-03-10T00:00:00.000-05:00",
        ]
        assert sim.historic_calls[1][1:] == ("2026-03-08T00:00:00.000-06:00", "2026-03-08T23:59:59.999-05:00")
        fall = MemoryEmit()
        clock.now = datetime(2026, 11, 4, 12, tzinfo=UTC)
        cursors.saved.clear()
        async with running(historic_source(sim, cursors, clock, start="2026-10-31T00:00:00", **daily), fall):
            await until(lambda: len(periods(fall)) == 4)
            await anyio.sleep(0.05)
        assert periods(fall) == [
            "2026-10-31T00:00:00.000-05:00",
            "2026-11-01T00:00:00.000-05:00",  # 25 h long
            "2026-11-02T00:00:00.000-06:00",
            "2026-11-03T00:00:00.000-06:00",
        ]
        assert sim.historic_calls[5][1:] == ("2026-11-01T00:00:00.000-05:00", "2026-11-01T23:59:59.999-06:00")


def exported(emit: MemoryEmit) -> list[tuple[str, bool]]:
    """``(period start, settle)`` of each exported period, in order."""
    return [(e.data.period_start, e.data.settle) for e in emit.of_type(HISTORIC_SUMMARY_TYPE)]


async def test_settle_exports_each_period_once_more_with_its_late_rows_and_ids_of_its_own() -> None:
    cursors = MemoryCursors()
    p0, p15 = "2026-01-01T00:00:00.000+00:00", "2026-01-01T00:15:00.000+00:00"
    async with XimaSimulator(agents=3) as sim:
        first = MemoryEmit()
        clock = Clock(T0 + timedelta(minutes=20))  # only 00:00 is due; nothing to settle yet
        async with running(historic_source(sim, cursors, clock, settle=1), first):
            await until(lambda: len(periods(first)) == 1)
            await anyio.sleep(0.05)
        assert exported(first) == [(p0, False)]
        assert cursors.saved[("cr1", "historic:LT39K5C5")] == f"{p15}|{p0}"
        sim.world.late[p0] = ["Zed Late(299)"]  # a row of 00:00 arrives after its first export
        second = MemoryEmit()
        clock.now = T0 + timedelta(minutes=50)
        async with running(historic_source(sim, cursors, clock, settle=1), second):
            await until(lambda: len(periods(second)) == 4)
            await anyio.sleep(0.05)  # 00:30 is not settled before 00:45 was exported
        assert exported(second) == [
            (p15, False),
            (p0, True),
            ("2026-01-01T00:30:00.000+00:00", False),
            (p15, True),
        ]
        assert cursors.saved[("cr1", "historic:LT39K5C5")] == (
            "2026-01-01T00:45:00.000+00:00|2026-01-01T00:30:00.000+00:00"  # next export|next settle
        )
        third = MemoryEmit()
        async with running(historic_source(sim, cursors, clock, settle=1), third):
            await anyio.sleep(0.1)
        assert third.events == []  # a restart repeats no export and no settle pass
    rows = first.of_type(HISTORIC_ROW_TYPE) + second.of_type(HISTORIC_ROW_TYPE)
    settled = [e for e in rows if e.data.settle and e.data.period_start == p0]
    assert [e.data.values["Agent"] for e in settled][-1] == "Zed Late(299)"  # the late row
    assert len(settled) == 4
    original = {e.data.row_index: e.id for e in first.of_type(HISTORIC_ROW_TYPE)}
    assert all(e.id != original.get(e.data.row_index) for e in settled)  # ids of its own
    ids = [e.id for e in first.events + second.events]
    assert len(ids) == len(set(ids))
    assert {e.key for e in rows} == {"cr1:LT39K5C5"}


async def test_one_report_key_configured_twice_with_different_parameters() -> None:
    cursors = MemoryCursors()
    by_agent = [{"name": "Rows (Agent)", "valueType": "AGENT_LIST", "value": ["201"]}]
    async with XimaSimulator(agents=2) as sim:
        emit = MemoryEmit()
        historic = [
            {**REPORT, "id": "talk-all"},
            {**REPORT, "id": "talk-201", "parameters": by_agent},
        ]
        source = make_source(
            sim, cursors=cursors, now=Clock(T0 + timedelta(minutes=15)), metrics=[], historic=historic
        )
        async with running(source, emit):
            await until(lambda: len(periods(emit)) == 2)
    summaries = emit.of_type(HISTORIC_SUMMARY_TYPE)
    assert sorted(e.key for e in summaries) == ["cr1:talk-201", "cr1:talk-all"]
    assert {e.data.report_key for e in summaries} == {"LT39K5C5"}
    assert len({e.id for e in emit.events}) == len(emit.events)  # no id shared by the two exports
    assert set(cursors.saved) == {("cr1", "historic:talk-all"), ("cr1", "historic:talk-201")}
    sent = [b["parameters"][1:] for b in sim.app.historic_bodies]
    assert sorted(sent, key=len) == [[], by_agent]


async def test_a_403_on_one_report_fails_that_report_only() -> None:
    async with XimaSimulator(agents=2, reports=("LT39K5C5", "SECRET1")) as sim:
        sim.faults.add("historic:SECRET1", Fault(403), times=None)
        emit = MemoryEmit()
        historic = [REPORT, {**REPORT, "key": "SECRET1"}]
        clock = Clock(T0 + timedelta(hours=1))
        source = make_source(sim, now=clock, metrics=[], historic=historic, failed_retry=3600)
        async with running(source, emit):
            await until(lambda: len(periods(emit)) == 4)
            jobs = source.deps.component.jobs
            await until(lambda: jobs["historic:SECRET1"].state == ComponentState.FAILED)
            assert jobs["historic:LT39K5C5"].state == ComponentState.RUNNING
        assert "403" in jobs["historic:SECRET1"].detail
    assert {e.data.report_key for e in emit.of_type(HISTORIC_SUMMARY_TYPE)} == {"LT39K5C5"}

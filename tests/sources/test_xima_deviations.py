"""Tolerant reading end to end (issue 13): the source against a simulator whose traffic deviates.

The simulator's ``deviate`` switch makes a seeded share of its value entries, socket messages and
report rows deviate (never in the routing fields) and logs, per served entry, the JSON paths a
tolerant reader must report. Every one of them is routable, so every one must be published, in
order, with exactly those paths, and nothing may be dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from streamd.events import AgentState, Event, QueueMetric
from streamd.publish.memory import MemoryEmit
from streamd.sim.xima import Served, XimaSimulator
from streamd.sources.xima.models import (
    HISTORIC_ROW_TYPE,
    HISTORIC_SUMMARY_TYPE,
    METRIC_VALUE_TYPE,
    RealtimeMetricValue,
    UntypedValue,
)
from streamd.telemetry import REGISTRY
from tests.helpers import Clock, MemoryCursors, running, until

from .xima_helpers import make_source, values

pytestmark = pytest.mark.anyio


def deviations_counted(ce_type: str) -> float:
    return REGISTRY.get_sample_value("streamd_deviations_total", {"source": "cr1", "type": ce_type}) or 0.0


def served(sim: XimaSimulator, where: str) -> list[Served]:
    return [s for s in sim.served if s.where == where]


def assert_published_as_served(events: list[Event], entries: list[Served]) -> None:
    """Each served entry became the next vendor event: same key, exactly the logged deviations."""
    assert len(events) <= len(entries)
    for event, entry in zip(events, entries, strict=False):
        data = event.data
        assert isinstance(data, RealtimeMetricValue)
        assert (data.metric_id, data.category_value) == entry.key
        assert event.deviations == entry.paths, entry.kind


def assert_canonical_events_flow(events: list[Event]) -> None:
    """A typed GROUP value is followed by its QueueMetric, a typed agent state by its AgentState."""
    for event, after in zip(events, [*events[1:], None], strict=True):
        if event.type != METRIC_VALUE_TYPE:
            continue
        data = event.data
        assert isinstance(data, RealtimeMetricValue)
        typed = not isinstance(data.value, UntypedValue)
        if data.category_type == "GROUP":
            assert (after is not None and isinstance(after.data, QueueMetric)) == typed
        elif data.metric_id == "K0STATE1":
            assert (after is not None and isinstance(after.data, AgentState)) == typed


def published(emit: MemoryEmit, n: int) -> Callable[[], bool]:
    """A condition: exactly ``n`` vendor value events were emitted."""
    return lambda: len(values(emit)) == n


def rising_ms() -> Callable[[], int]:
    """A simulator clock in wall-clock ms that never repeats: every value version has its own stamp."""
    last = 0

    def now() -> int:
        nonlocal last
        last = max(last + 1, int(time.time() * 1000))
        return last

    return now


async def test_every_polled_entry_is_published_with_the_deviations_it_was_served_with() -> None:
    async with XimaSimulator(init_requests=0, deviate=0.5, seed=7) as sim:
        emit = MemoryEmit()
        counted = deviations_counted(METRIC_VALUE_TYPE)
        # refresh_every below the interval: every round is a snapshot, so every served entry is published
        source = make_source(sim, interval=0.05, refresh_every=0.001, agent_state_metrics=["K0STATE1"])
        async with running(source, emit):
            await until(lambda: len(values(emit)) >= 3 * len(sim.world.values))
        entries = served(sim, "values")
        assert_published_as_served(values(emit), entries)
        assert {s.kind for s in entries} >= {
            "",
            "unknown_field",
            "unknown_type",
            "bad_time",
            "double_encoded",
        }
        assert not [e for e in emit.events if e.topic == "deadletter"]
        assert_canonical_events_flow(emit.events)
        deviating = [e for e in values(emit) if e.deviations]
        assert deviating
        assert (
            len(deviating)
            <= deviations_counted(METRIC_VALUE_TYPE) - counted
            <= len([s for s in entries if s.paths])
        )


async def test_every_socket_message_is_published_with_the_deviations_it_was_pushed_with() -> None:
    async with XimaSimulator(init_requests=0, deviate=0.6, seed=3, now_ms=rising_ms()) as sim:
        emit = MemoryEmit()
        source = make_source(sim, mode="websocket", agent_state_metrics=["K0STATE1"], refresh_every=3600)
        async with running(source, emit):
            await until(lambda: len(values(emit)) == len(sim.world.values) and sim.subscribed)
            for _ in range(6):  # one step at a time: each push is read before the next one is stamped
                sim.step()
                await until(published(emit, len(sim.world.values) + len(served(sim, "ws"))))
        assert_published_as_served(values(emit)[: len(sim.world.values)], served(sim, "values"))
        pushes = served(sim, "ws")
        assert len(pushes) >= 6
        assert any(s.paths for s in pushes)
        assert_published_as_served(values(emit)[len(sim.world.values) :], pushes)
        assert not [e for e in emit.events if e.topic == "deadletter"]
        assert_canonical_events_flow(emit.events)


async def test_every_deviating_report_row_is_published() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    async with XimaSimulator(agents=6, deviate=0.7, seed=5) as sim:
        emit = MemoryEmit()
        counted = deviations_counted(HISTORIC_ROW_TYPE)
        report = {"key": "LT39K5C5", "every": "15m", "lag": 0, "start": "2026-01-01T00:00:00Z"}
        source = make_source(
            sim, cursors=MemoryCursors(), now=Clock(t0 + timedelta(minutes=30)), metrics=[], historic=[report]
        )
        async with running(source, emit):
            await until(lambda: len(emit.of_type(HISTORIC_SUMMARY_TYPE)) == 2)
        rows = emit.of_type(HISTORIC_ROW_TYPE)
        entries = served(sim, "historic")
        assert len(rows) == len(entries) == 2 * 6
        for row, entry in zip(rows, entries, strict=True):
            assert (row.data.period_start, row.data.row_index) == entry.key[1:]
            assert row.deviations == entry.paths, entry.kind
        assert {s.kind for s in entries} - {""}
        assert all(s.data.row_count == 6 and s.deviations == () for s in emit.of_type(HISTORIC_SUMMARY_TYPE))
        assert not [e for e in emit.events if e.topic == "deadletter"]
        assert deviations_counted(HISTORIC_ROW_TYPE) - counted == len([s for s in entries if s.paths])

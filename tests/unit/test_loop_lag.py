"""The event-loop lag histogram sees a blocked loop."""

from __future__ import annotations

import time

import anyio
import pytest

from streamd.telemetry import LOOP_LAG, watch_event_loop

pytestmark = pytest.mark.anyio


def _big_lags() -> float:
    return sum(
        s.value
        for m in LOOP_LAG.collect()
        for s in m.samples
        if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"
    ) - sum(
        s.value
        for m in LOOP_LAG.collect()
        for s in m.samples
        if s.name.endswith("_bucket") and s.labels["le"] == "0.05"
    )


async def test_a_blocked_loop_is_measured() -> None:
    before = _big_lags()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_event_loop, 0.01)
        await anyio.sleep(0.05)
        time.sleep(0.2)  # blocking the loop on purpose
        await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert _big_lags() - before >= 1  # one tick came > 50 ms late

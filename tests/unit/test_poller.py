"""The generic poller: interval, no pile-up, timeout, ack-then-advance cursor, early re-poll."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
import pytest

from streamd.errors import PublishError, TransientError
from streamd.events import Event
from streamd.publish.memory import MemoryEmit
from streamd.sources.poller import Poller, PollResult
from tests.helpers import MemoryCursors, SleepingClock


@dataclass
class CountingSpec:
    clock: SleepingClock
    durations: list[float] = field(default_factory=list)
    next_in: list[float | None] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    name: str = "counter"

    def load_cursor(self, saved: str | None) -> int:
        return int(saved) if saved else 0

    def dump_cursor(self, cursor: int) -> str | None:
        return str(cursor)

    async def fetch(self, cursor: int) -> PollResult[int]:
        self.seen.append(cursor)
        if self.durations:
            self.clock.now += self.durations.pop(0)
        event = Event(topic="t", type="x.t.N", source="s", key=f"s:{cursor}", data={"n": cursor})
        return PollResult([event], cursor + 1, self.next_in.pop(0) if self.next_in else None)


def _poller(spec: CountingSpec, clock: SleepingClock, **kw: object) -> Poller[int]:
    return Poller(spec, "s", interval=10, timeout=5, clock=clock, sleep=clock.sleep, rng=lambda: 0.0, **kw)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_fixed_rate_and_cursor_persisted_after_emit() -> None:
    clock = SleepingClock(100.0)
    spec = CountingSpec(clock, durations=[2, 3, 0])
    cursors = MemoryCursors()
    emit = MemoryEmit()
    connected: list[int] = []
    await _poller(spec, clock, cursors=cursors, cycles=3).session(emit, lambda: connected.append(1))
    assert spec.seen == [0, 1, 2]
    assert clock.sleeps == [8, 7]  # the next cycle starts one interval after the previous start
    assert cursors.saved[("s", "counter")] == "3"
    assert len(emit.events) == 3
    assert len(connected) == 3


@pytest.mark.anyio
async def test_restart_resumes_from_saved_cursor() -> None:
    clock = SleepingClock(100.0)
    cursors = MemoryCursors()
    cursors.save("s", "counter", "41")
    spec = CountingSpec(clock)
    await _poller(spec, clock, cursors=cursors, cycles=1).session(MemoryEmit(), lambda: None)
    assert spec.seen == [41]


@pytest.mark.anyio
async def test_overrun_skips_missed_slots_instead_of_bursting() -> None:
    clock = SleepingClock(100.0)
    spec = CountingSpec(clock, durations=[25, 0])
    await _poller(spec, clock, cycles=2).session(MemoryEmit(), lambda: None)
    assert clock.sleeps == [5]  # started at 100, took 25 -> next slot at 130, not 110 and 120


@pytest.mark.anyio
async def test_next_in_polls_early() -> None:
    clock = SleepingClock(100.0)
    spec = CountingSpec(clock, next_in=[0.5, None])
    await _poller(spec, clock, cycles=3).session(MemoryEmit(), lambda: None)
    assert clock.sleeps == [0.5, 10]


@pytest.mark.anyio
async def test_an_infinite_next_in_asks_for_no_further_cycle() -> None:
    clock = SleepingClock(100.0)
    spec = CountingSpec(clock, next_in=[math.inf])
    await _poller(spec, clock, cycles=2).session(MemoryEmit(), lambda: None)
    assert clock.sleeps == [math.inf]  # the only wait before the second cycle: forever


class FailingEmit(MemoryEmit):
    async def __call__(self, events: Sequence[Event]) -> None:
        raise PublishError("kafka down and spool full")


@pytest.mark.anyio
async def test_cursor_not_advanced_when_emit_fails() -> None:
    clock = SleepingClock(100.0)
    cursors = MemoryCursors()
    cursors.save("s", "counter", "5")
    with pytest.raises(PublishError):
        await _poller(CountingSpec(clock), clock, cursors=cursors, cycles=1).session(
            FailingEmit(), lambda: None
        )
    assert cursors.saved[("s", "counter")] == "5"


@dataclass
class HangingSpec:
    name: str = "hang"

    def load_cursor(self, saved: str | None) -> int:
        return 0

    def dump_cursor(self, cursor: int) -> str | None:
        return None

    async def fetch(self, cursor: int) -> PollResult[int]:
        await anyio.sleep_forever()
        raise AssertionError


@pytest.mark.anyio
async def test_request_timeout_is_a_transient_error() -> None:
    poller: Poller[int] = Poller(HangingSpec(), "s", interval=1, timeout=0.01, rng=lambda: 0.0, cycles=1)
    with pytest.raises(TransientError, match="no answer within"):
        await poller.session(MemoryEmit(), lambda: None)


@dataclass
class RetimingSpec:
    """Sets the next cycle's deadline during its fetch (as Alvaria does), then hangs."""

    poller: Poller[int] | None = None
    name: str = "retime"

    def load_cursor(self, saved: str | None) -> int:
        return 0

    def dump_cursor(self, cursor: int) -> str | None:
        return None

    async def fetch(self, cursor: int) -> PollResult[int]:
        assert self.poller is not None
        self.poller.timeout = 30.0
        await anyio.sleep_forever()
        raise AssertionError


@pytest.mark.anyio
async def test_a_timeout_names_the_deadline_of_its_own_cycle_not_the_next_ones() -> None:
    spec = RetimingSpec()
    poller: Poller[int] = Poller(spec, "s", interval=60, timeout=0.01, rng=lambda: 0.0, cycles=1)
    spec.poller = poller
    with pytest.raises(TransientError) as caught:
        await poller.session(MemoryEmit(), lambda: None)
    assert str(caught.value) == "retime: no answer within 0.01s"
    assert poller.timeout == 30.0  # the next cycle's deadline is kept


def test_timeout_not_below_interval_warns(caplog: pytest.LogCaptureFixture) -> None:
    Poller(HangingSpec(), "s", interval=5, timeout=5)
    assert "not below the poll interval" in caplog.text

"""The one generic poll loop: interval, jitter, per-request timeout, ack-then-advance.

Rules:

1. One cycle at a time: requests of one poller never overlap, and a slow cycle never causes a
   pile-up (the next cycle starts at the next interval boundary still in the future).
2. The cursor moves only after ``emit`` returned, i.e. after Kafka acknowledged (or the spool
   holds) every event of the cycle; then it is persisted, if the spec persists it.
3. Errors leave the loop (the session ends); the supervisor (:mod:`streamd.runtime`) decides.
4. A per-vendor :class:`PollSpec` supplies ``fetch`` and the cursor codec; nothing else.
5. Each cycle's deadline is ``timeout`` as the cycle starts; a spec may change ``timeout`` for the
   next cycle (Alvaria's follows the scopes it discovers), and a cycle that times out names the
   deadline it had.
6. ``PollResult.next_in`` sets when the next cycle starts instead of the interval: ``0`` at once,
   ``math.inf`` never (the session then waits until cancelled: O2G's status watch turned off).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio

from streamd.errors import TransientError
from streamd.events import Event
from streamd.sources.base import CursorStore, Emit

log = logging.getLogger("streamd.poller")

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class PollResult(Generic[C]):
    """What one cycle produced: the events, the cursor after them, and an optional early re-poll."""

    events: Sequence[Event]
    cursor: C
    next_in: float | None = None


class PollSpec(Protocol[C]):
    """A vendor's part of polling."""

    name: str

    def load_cursor(self, saved: str | None) -> C:
        """The cursor to start from (``saved`` is what :meth:`dump_cursor` returned last time)."""

    def dump_cursor(self, cursor: C) -> str | None:
        """Serialise a cursor for the cursor store, or None to keep it in memory only."""

    async def fetch(self, cursor: C) -> PollResult[C]:
        """Run one cycle's requests and normalize them (raise streamd errors on failure)."""


@dataclass(slots=True)
class Poller(Generic[C]):
    """Drives a :class:`PollSpec` as one supervised job's session."""

    spec: PollSpec[C]
    source: str
    interval: float
    timeout: float
    cursors: CursorStore | None = None
    jitter: float = 0.1
    clock: Callable[[], float] = anyio.current_time
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep
    rng: Callable[[], float] = random.random
    cycles: int | None = None

    def __post_init__(self) -> None:
        if self.timeout >= self.interval:
            log.warning(
                "%s/%s: request timeout %.1fs is not below the poll interval %.1fs",
                self.source,
                self.spec.name,
                self.timeout,
                self.interval,
            )

    async def session(self, emit: Emit, connected: Callable[[], None]) -> None:
        """Poll until an error (or ``cycles`` cycles, for tests)."""
        saved = (
            await anyio.to_thread.run_sync(self.cursors.load, self.source, self.spec.name)
            if self.cursors
            else None
        )
        cursor = self.spec.load_cursor(saved)
        # A random offset spreads many pollers over the interval (HA's random-offset idea).
        next_start = self.clock() + self.rng() * self.jitter * self.interval
        done = 0
        while self.cycles is None or done < self.cycles:
            await self._sleep_until(next_start)
            started = self.clock()
            timeout = self.timeout  # this cycle's: fetch may set the next one's (rule 5)
            with anyio.move_on_after(timeout) as scope:
                result = await self.spec.fetch(cursor)
            if scope.cancelled_caught:
                raise TransientError(f"{self.spec.name}: no answer within {timeout:g}s")
            if result.events:
                await emit(result.events)
            cursor = result.cursor
            if self.cursors is not None:
                dumped = self.spec.dump_cursor(cursor)
                if dumped is not None:  # SQLite, fsync'd: off the event loop
                    await anyio.to_thread.run_sync(self.cursors.save, self.source, self.spec.name, dumped)
            connected()
            done += 1
            next_start = self._next_start(started, result.next_in)

    def _next_start(self, started: float, next_in: float | None) -> float:
        if next_in is not None:
            return self.clock() + next_in
        nxt = started + self.interval
        now = self.clock()
        if nxt < now:  # the cycle overran: skip missed slots instead of bursting
            missed = int((now - started) // self.interval)
            nxt = started + (missed + 1) * self.interval
        return nxt

    async def _sleep_until(self, when: float) -> None:
        delay = when - self.clock()
        if delay > 0:
            await self.sleep(delay)

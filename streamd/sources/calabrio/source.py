"""The Calabrio ONE source: real-time activities, adherence and agent reference data.

Rules:

1. The activity poller and, when configured, the adherence poller are two jobs of the supervisor
   (:class:`streamd.runtime.Jobs`): each session opens its own httpx client with the shared
   :class:`CalabrioAuth` (the session cookie survives reconnects and is shared by both), and an
   error ends only that job's session. Adherence without permission is ``failed`` alone while
   activities go on.
2. Both are :class:`~streamd.sources.poller.Poller` specs. The activity window cursor moves and
   is saved only after ``await emit(...)`` returned (the poller's rule), so a restart resumes
   from the last acknowledged window without gap or repeat (see :mod:`.window`).
3. Reference data (agents) is read before the first window and every ``reference_refresh``; a
   failure to read it is counted and logged, and the source goes on with the last good copy
   (it only enriches values).
4. Adherence is diffed against the previous poll (in memory): the first poll after a (re)start,
   and one every ``adherence_refresh``, publishes every row as a snapshot; the others only rows
   whose adherence, conformance or out-of-adherence seconds changed.
5. On cancellation the session is logged out (``DELETE /api/rest/authorize``, shielded, 2 s).
6. A response that cannot be parsed at all is dead-lettered (counted) and the window still
   advances: re-reading the same bytes would fail the same way, and stopping would lose more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import httpx
from anyio.abc import TaskStatus

from streamd.errors import StreamdError
from streamd.events import DEADLETTER_TOPIC, Event
from streamd.runtime import Connected, Job
from streamd.sources import base
from streamd.sources.calabrio import normalize, window
from streamd.sources.calabrio.auth import auth_for, logout
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import AgentRef
from streamd.sources.calabrio.window import WindowCursor
from streamd.sources.http import check_status, httpx_errors
from streamd.sources.poller import Poller, PollResult
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.calabrio")


@dataclass(frozen=True, slots=True)
class AdherenceState:
    """The adherence poller's memory: each row's headline figures and when all were last sent."""

    fingerprints: dict[tuple[str, str], tuple[Any, ...]]
    snapshot_at: int


def wall_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def count_dead_letters(source: str, events: Sequence[Event]) -> None:
    """Count each dead-letter event among ``events`` (nothing is dropped silently)."""
    for event in events:
        if event.topic == DEADLETTER_TOPIC:
            count_error(source, "processing", event.data.error_type)


class ReferenceCache:
    """Agent reference data (``agentId -> AgentRef``), re-read every ``refresh`` seconds."""

    def __init__(self, cfg: CalabrioSourceConfig, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.clock = clock
        self.agents: dict[str, AgentRef] = {}
        self._loaded_at: float | None = None
        self._failing = False

    def get(self, agent_id: str) -> AgentRef | None:
        """The agent's reference row, if known."""
        return self.agents.get(agent_id)

    async def refresh_if_stale(self, client: httpx.AsyncClient) -> list[Event]:
        """Re-read the agent list when due; returns dead letters for unusable rows."""
        if self._loaded_at is not None and self.clock() - self._loaded_at < self.cfg.reference_refresh:
            return []
        self._loaded_at = self.clock()
        try:
            with httpx_errors():
                response = await client.get(self.cfg.agents_path)
            check_status(response, f"calabrio GET {self.cfg.agents_path}")
        except StreamdError as exc:  # enrichment only: keep the last good copy (rule 3)
            count_error(self.cfg.name, "reference", type(exc).__name__)
            if not self._failing:
                log.warning("%s: cannot read agent reference data: %s", self.cfg.name, exc)
            self._failing = True
            return []
        if self._failing:
            log.info("%s: agent reference data readable again", self.cfg.name)
        self._failing = False
        agents, dead = normalize.parse_agents(self.cfg.name, response.content)
        if agents or not dead:
            self.agents = agents
        return dead


class ActivitySpec:
    """:class:`PollSpec` of the real-time activity detail resource (window cursor)."""

    name = "activity"

    def __init__(
        self,
        cfg: CalabrioSourceConfig,
        client: httpx.AsyncClient,
        reference: ReferenceCache,
        now_ms: Callable[[], int],
    ) -> None:
        self.cfg, self.client, self.reference, self.now_ms = cfg, client, reference, now_ms
        self.overlap_ms = int(cfg.overlap * 1000)

    def load_cursor(self, saved: str | None) -> WindowCursor:
        """The saved window cursor, or a fresh one ``initial_lookback`` back."""
        cursor = window.load(saved)
        if cursor is None:
            if saved:
                log.warning("%s: unreadable activity cursor, starting afresh", self.cfg.name)
            cursor = window.start(self.now_ms(), int(self.cfg.initial_lookback * 1000))
        return cursor

    def dump_cursor(self, cursor: WindowCursor) -> str:
        """Persist every cursor (it is the restart point)."""
        return window.dump(cursor)

    async def fetch(self, cursor: WindowCursor) -> PollResult[WindowCursor]:
        """Read one window, dedupe it against the cursor, normalize the new activities."""
        dead = await self.reference.refresh_if_stale(self.client)
        now = self.now_ms()
        win = window.plan(cursor, now, self.overlap_ms, int(self.cfg.max_window * 1000))
        if win.empty:
            count_dead_letters(self.cfg.name, dead)
            return PollResult(dead, cursor)
        body: dict[str, Any] = {"agentIds": list(self.cfg.agent_ids)} if self.cfg.agent_ids else {}
        with httpx_errors():
            response = await self.client.post(
                self.cfg.activity_path, params={"fromTime": win.from_ms, "toTime": win.to_ms}, json=body
            )
        check_status(response, f"calabrio POST {self.cfg.activity_path}")
        activities, bad = normalize.parse_activities(self.cfg.name, response.content)
        dead += bad
        by_key = {a.key: a for a in activities}
        keys = window.select(cursor, win, (a.key for a in activities))
        events: list[Event] = list(dead)
        for key in sorted(keys, key=lambda k: (k[1], k[0])):
            activity = by_key[key]
            if activity.state not in normalize.STATE_MAP:
                count_error(self.cfg.name, "processing", "unknown_variant")
            events += normalize.activity_events(
                self.cfg.name, activity, self.reference.get(activity.agent_id)
            )
        count_dead_letters(self.cfg.name, dead)
        backlog = win.to_ms < now  # capped by max_window: read the next chunk right away
        return PollResult(
            events, window.advance(cursor, win, keys, self.overlap_ms), 0.0 if backlog else None
        )


class AdherenceSpec:
    """:class:`PollSpec` of the adherence resource: all pages of today, diffed (rule 4)."""

    name = "adherence"
    max_pages = 500

    def __init__(
        self, cfg: CalabrioSourceConfig, client: httpx.AsyncClient, now_ms: Callable[[], int]
    ) -> None:
        self.cfg, self.client, self.now_ms = cfg, client, now_ms

    def load_cursor(self, saved: str | None) -> AdherenceState | None:
        """Adherence state lives in memory: None = nothing published since the start."""
        return None

    def dump_cursor(self, cursor: AdherenceState | None) -> str | None:
        """Never persisted."""
        return None

    async def fetch(self, cursor: AdherenceState | None) -> PollResult[AdherenceState | None]:
        """Read every page of today's adherence; publish changed rows, or all of them as a snapshot
        after a (re)start and every ``adherence_refresh`` (so a compacted topic converges)."""
        now = self.now_ms()
        date = normalize.tenant_date(now, self.cfg.tenant_timezone)
        rows, dead = await self._read_all(date)
        snapshot = cursor is None or now - cursor.snapshot_at >= self.cfg.adherence_refresh * 1000
        previous = {} if cursor is None or snapshot else cursor.fingerprints
        fingerprints: dict[tuple[str, str], tuple[Any, ...]] = {}
        events: list[Event] = list(dead)
        when = datetime.fromtimestamp(now / 1000, UTC)
        for row in rows:
            key = (date, str(row["agentId"]))
            fingerprints[key] = normalize.adherence_fingerprint(row)
            if previous.get(key) != fingerprints[key]:
                events.append(normalize.adherence_event(self.cfg.name, row, time=when, snapshot=snapshot))
        count_dead_letters(self.cfg.name, dead)
        snapshot_at = now if snapshot or cursor is None else cursor.snapshot_at
        return PollResult(events, AdherenceState(fingerprints, snapshot_at))

    async def _read_all(self, date: str) -> tuple[list[dict[str, Any]], list[Event]]:
        size = self.cfg.adherence_page_size
        rows: list[dict[str, Any]] = []
        dead: list[Event] = []
        for page in range(1, self.max_pages + 1):
            with httpx_errors():
                response = await self.client.get(
                    self.cfg.adherence_path, params={"date": date, "pageSize": size, "pageNumber": page}
                )
            check_status(response, f"calabrio GET {self.cfg.adherence_path}")
            got, bad = normalize.parse_adherence(self.cfg.name, response.content, date)
            rows += got
            dead += bad
            if len(got) + len(bad) < size:  # the seed gives no total: a short page is the last
                break
        return rows, dead


class CalabrioSource:
    """Runtime of a ``kind: calabrio`` source (see the module rules).

    Args:
        cfg: the validated config.
        deps: application services (cursor store, component health, topic prefix).
        now_ms: epoch-ms clock for windows and dates (tests share one with the simulator).
        sleep: the pollers' sleep (tests may inject a fast one).
        cycles: stop each poller after this many cycles (tests).
    """

    def __init__(
        self,
        cfg: CalabrioSourceConfig,
        deps: base.SourceDeps,
        *,
        now_ms: Callable[[], int] = wall_ms,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        cycles: int | None = None,
    ) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.deps = deps
        self.now_ms = now_ms
        self.sleep = sleep
        self.cycles = cycles
        self.auth = auth_for(cfg)
        self.reference = ReferenceCache(cfg, time.monotonic)

    async def run(
        self, emit: base.Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Poll until cancelled; ready once each poller has polled, is retrying or failed."""
        try:
            await self.deps.jobs.run(*self.jobs(emit), task_status=task_status)
        finally:
            with anyio.move_on_after(2, shield=True):
                await self.logout()

    def jobs(self, emit: base.Emit) -> list[Job]:
        """The activity poller's job and, when configured, the adherence poller's (rule 1)."""
        jobs = [Job("activity", partial(self._poll, emit, self.activity_poller))]
        if self.cfg.adherence:
            jobs.append(Job("adherence", partial(self._poll, emit, self.adherence_poller)))
        return jobs

    def client(self) -> httpx.AsyncClient:
        """A client for the tenant with the session auth (one per session)."""
        return httpx.AsyncClient(base_url=self.cfg.url, auth=self.auth, timeout=self.cfg.timeout)

    def activity_poller(self, client: httpx.AsyncClient) -> Poller[WindowCursor]:
        """The activity poller (window cursor, persisted)."""
        spec = ActivitySpec(self.cfg, client, self.reference, self.now_ms)
        return Poller(
            spec,
            source=self.name,
            interval=self.cfg.interval,
            timeout=self.cfg.timeout,
            cursors=self.deps.cursors,
            sleep=self.sleep,
            cycles=self.cycles,
        )

    def adherence_poller(self, client: httpx.AsyncClient) -> Poller[AdherenceState | None]:
        """The adherence poller (state in memory)."""
        spec = AdherenceSpec(self.cfg, client, self.now_ms)
        return Poller(
            spec,
            source=self.name,
            interval=self.cfg.adherence_interval,
            timeout=self.cfg.timeout,
            sleep=self.sleep,
            cycles=self.cycles,
        )

    async def _poll(
        self, emit: base.Emit, poller: Callable[[httpx.AsyncClient], Poller[Any]], connected: Connected
    ) -> None:
        """One session of one poller on a client of its own."""
        async with self.client() as client:
            await poller(client).session(emit, connected)

    async def logout(self) -> None:
        """Destroy the Calabrio session, best effort (002 L540-548)."""
        await logout(self.auth)

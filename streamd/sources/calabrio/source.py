"""The Calabrio ONE source: real-time activities, adherence and agent reference data.

Rules:

1. The activity poller and, when configured, the adherence poller are two jobs of the supervisor
   (:class:`streamd.runtime.Jobs`), each with its own Calabrio session (its own
   :class:`CalabrioAuth`: the cookie survives the job's reconnects) and its own httpx client per
   session. An error ends only that job's session, and the re-logins one job's failures cause
   never replace the other's session. Adherence without permission is ``failed`` alone while
   activities go on.
2. Both are :class:`~streamd.sources.poller.Poller` specs. The activity window cursor moves and
   is saved only after ``await emit(...)`` returned (the poller's rule), so a restart resumes
   from the last acknowledged window without gap or repeat (see :mod:`.window`).
3. Reference data (agents, ``fullDetail=true``: only the full detail carries ``acdId`` and
   ``services``, 002 L671-686) is read before the first window and every
   ``reference_refresh``; a failure to read it is counted and logged, and the source goes on
   with the last good copy (it only enriches values).
4. Adherence is diffed against the previous poll (in memory): the first poll after a (re)start,
   and one every ``adherence_refresh``, publishes every row as a snapshot; the others only rows
   whose adherence, conformance or out-of-adherence seconds changed. A cycle reads at most
   ``adherence_max_pages`` pages and stops early at a page that repeats the previous one (a
   server that ignores ``pageNumber``), with one warning. A failing adherence job is retried
   no sooner than one ``adherence_interval`` (:func:`adherence_delays`): it backs off alone.
5. On cancellation both sessions are logged out (``DELETE /api/rest/authorize``, shielded, 2 s).
6. An answer that cannot be read as a whole (a 200 that is not JSON, not an array, or an HTML
   login page: :class:`~.normalize.UnreadableAnswer`) fails the cycle, and the job retries it:
   the window does not move, because the answer said nothing about the activities it should
   have carried. Only unroutable rows of a readable answer are dead letters.
7. Each activity is published on the vendor topic; its canonical :class:`AgentState` only when
   it is newer than the agent's newest published one (:func:`.window.canonical`), so a late
   activity never regresses the compacted agent-state topic, the wallboard or the RTDC sink.
8. TLS as for every vendor client (:func:`~streamd.sources.http.tls_verify`): a certificate that
   does not verify fails the job (``failed``, with the cause).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import httpx
from anyio.abc import TaskStatus

from streamd.errors import StreamdError
from streamd.events import DEADLETTER_TOPIC, Event
from streamd.retry import backoff
from streamd.runtime import Connected, Job
from streamd.sources import base
from streamd.sources.calabrio import normalize, window
from streamd.sources.calabrio.auth import CalabrioAuth, auth_for, logout
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import AgentRef
from streamd.sources.calabrio.window import WindowCursor
from streamd.sources.http import check_status, httpx_errors, tls_verify
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


def adherence_delays(interval: float) -> Iterator[float]:
    """The adherence job's retry delays (rule 4): never sooner than one ``interval`` (the poll
    would not have come earlier either), then up to nine intervals with full jitter."""
    return (interval + delay for delay in backoff(initial=interval, cap=8 * interval))


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
                response = await client.get(self.cfg.agents_path, params={"fullDetail": "true"})
            check_status(response, f"calabrio GET {self.cfg.agents_path}")
            agents, dead = normalize.parse_agents(self.cfg.name, response.content)
        except StreamdError as exc:  # enrichment only: keep the last good copy (rule 3)
            count_error(self.cfg.name, "reference", type(exc).__name__)
            if not self._failing:
                log.warning("%s: cannot read agent reference data: %s", self.cfg.name, exc)
            self._failing = True
            return []
        if self._failing:
            log.info("%s: agent reference data readable again", self.cfg.name)
        self._failing = False
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
        activities, bad = normalize.parse_activities(self.cfg.name, response.content)  # rule 6
        dead += bad
        by_key = {a.key: a for a in activities}
        keys = sorted(window.select(cursor, win, (a.key for a in activities)), key=lambda k: (k[1], k[0]))
        events: list[Event] = list(dead)
        for key, canonical in zip(keys, window.canonical(cursor, keys), strict=True):  # rule 7
            activity = by_key[key]
            if activity.state not in normalize.STATE_MAP:
                count_error(self.cfg.name, "processing", "unknown_variant")
            ref = self.reference.get(activity.agent_id)
            events += normalize.activity_events(self.cfg.name, activity, ref, canonical=canonical)
        count_dead_letters(self.cfg.name, dead)
        backlog = win.to_ms < now  # capped by max_window: read the next chunk right away
        return PollResult(
            events, window.advance(cursor, win, keys, self.overlap_ms), 0.0 if backlog else None
        )


class AdherenceSpec:
    """:class:`PollSpec` of the adherence resource: all pages of today, diffed (rule 4)."""

    name = "adherence"

    def __init__(
        self, cfg: CalabrioSourceConfig, client: httpx.AsyncClient, now_ms: Callable[[], int]
    ) -> None:
        self.cfg, self.client, self.now_ms = cfg, client, now_ms
        self.cut_short: str | None = None
        """Why the last cycle stopped before a short page (logged once per change), or None."""

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
        """Every page of ``date`` up to a short one, bounded (rule 4)."""
        size, most = self.cfg.adherence_page_size, self.cfg.adherence_max_pages
        rows: list[dict[str, Any]] = []
        dead: list[Event] = []
        previous: list[str] = []
        cut_short: str | None = f"stopped after adherence_max_pages ({most}) full pages of {size} rows"
        for page in range(1, most + 1):
            with httpx_errors():
                response = await self.client.get(
                    self.cfg.adherence_path, params={"date": date, "pageSize": size, "pageNumber": page}
                )
            check_status(response, f"calabrio GET {self.cfg.adherence_path}")
            got, bad = normalize.parse_adherence(self.cfg.name, response.content, date)
            ids = [str(row["agentId"]) for row in got]
            if ids and ids == previous:
                cut_short = f"page {page} repeats page {page - 1} (the server ignores pageNumber?)"
                break
            rows += got
            dead += bad
            previous = ids
            if len(got) + len(bad) < size:  # the seed gives no total: a short page is the last
                cut_short = None
                break
        self._report(cut_short)
        return rows, dead

    def _report(self, cut_short: str | None) -> None:
        if cut_short is not None and cut_short != self.cut_short:
            log.warning("%s: adherence: %s; the rows read so far are published", self.cfg.name, cut_short)
        elif cut_short is None and self.cut_short is not None:
            log.info("%s: adherence: every page read again", self.cfg.name)
        self.cut_short = cut_short


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
        """The activity poller's Calabrio session (rule 1)."""
        self.adherence_auth = auth_for(cfg)
        """The adherence poller's own Calabrio session (rule 1)."""
        self.reference = ReferenceCache(cfg, time.monotonic)
        self._verify: ssl.SSLContext | bool | None = None

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
        """The activity poller's job and, when configured, the adherence poller's (rules 1, 4)."""
        jobs = [Job("activity", partial(self._poll, emit, self.activity_poller, self.auth))]
        if self.cfg.adherence:
            session = partial(self._poll, emit, self.adherence_poller, self.adherence_auth)
            delays = partial(adherence_delays, self.cfg.adherence_interval)
            jobs.append(Job("adherence", session, delays=delays))
        return jobs

    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify=`` for this source, made once (rule 8).

        Raises:
            FatalError: the ``ca_file`` cannot be used (the job that asked fails).
        """
        if self._verify is None:
            self._verify = tls_verify(self.cfg, f"calabrio source {self.name}")
        return self._verify

    def client(self, auth: CalabrioAuth | None = None) -> httpx.AsyncClient:
        """A client for the tenant with a session auth (one per job session; default: activity's)."""
        return httpx.AsyncClient(
            base_url=self.cfg.url, auth=auth or self.auth, timeout=self.cfg.timeout, verify=self.verify()
        )

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
        self,
        emit: base.Emit,
        poller: Callable[[httpx.AsyncClient], Poller[Any]],
        auth: CalabrioAuth,
        connected: Connected,
    ) -> None:
        """One session of one poller on a client of its own, with its job's Calabrio session."""
        async with self.client(auth) as client:
            await poller(client).session(emit, connected)

    async def logout(self) -> None:
        """Destroy both Calabrio sessions, best effort (002 L540-548)."""
        verify = True if self._verify is None else self._verify
        await logout(self.auth, verify=verify)
        await logout(self.adherence_auth, verify=verify)

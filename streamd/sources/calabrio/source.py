"""The Calabrio ONE source: real-time activities, adherence, reference data, contact monitoring.

Rules:

1. The activity poller and, when configured, the adherence, reference and contact monitoring
   (:mod:`.monitoring`) pollers are jobs of the supervisor (:class:`streamd.runtime.Jobs`),
   each with its own Calabrio session (its own :class:`CalabrioAuth`: the cookie survives the
   job's reconnects) and its own httpx client per session. An error ends only that job's
   session, and the re-logins one job's failures cause never replace another's session. Adherence without permission is ``failed`` alone while
   activities go on.
2. All are :class:`~streamd.sources.poller.Poller` specs. The activity window cursor moves and
   is saved only after ``await emit(...)`` returned (the poller's rule), so a restart resumes
   from the last acknowledged window without gap or repeat (see :mod:`.window`).
3. Reference data (agents, ``fullDetail=true``: only the full detail carries ``acdId`` and
   ``services``, 002 L671-686; teams; service queues) is read before the first window and every
   ``reference_refresh`` (:mod:`.reference`); a failure to read a kind is counted and logged, and
   the source goes on with its last good copy. It enriches each activity with the agent's name,
   main team and service queues (:func:`enrichment`; the canonical state takes the name and the
   queue ids) and, with ``reference_publish``, the reference job publishes it on
   ``{prefix}calabrio.reference`` (key ``{source}:{kind}:{id}``).
4. Adherence is diffed against the previous poll (in memory): the first poll after a (re)start,
   and one every ``adherence_refresh``, publishes every row as a snapshot; the others only rows
   whose adherence, conformance or out-of-adherence seconds changed. A cycle reads at most
   ``adherence_max_pages`` pages and stops early at a page that repeats the previous one (a
   server that ignores ``pageNumber``), with one warning. A failing adherence job is retried
   no sooner than one ``adherence_interval`` (:func:`adherence_delays`): it backs off alone.
   Each page has ``timeout``; the cycle has ``timeout`` per page it may read, at most nine tenths
   of ``adherence_interval`` (:func:`~.adherence_job.adherence_cycle_timeout`), so a tenant of
   many pages is read whole.
   Adherence is per tenant day (midnight to midnight in ``tenant_timezone``, 002 L585): the
   date of the last poll is kept in the cursor store, and the first poll of a new day (also
   after a restart) first reads the ended day's pages once more and publishes every row of it
   marked ``"final": true`` (a snapshot), so its last minutes are never lost.
5. On cancellation every job's session is logged out (``DELETE /api/rest/authorize``, shielded, 2 s).
6. An answer that cannot be read as a whole (a 200 that is not JSON, not an array, or an HTML
   login page: :class:`~.normalize.UnreadableAnswer`) fails the cycle, and the job retries it:
   the window does not move, because the answer said nothing about the activities it should
   have carried. Only unroutable rows of a readable answer are dead letters.
7. Each activity is published on the vendor topic; its canonical :class:`AgentState` only when
   it is newer than the agent's newest published one (:func:`.window.canonical`), so a late
   activity never regresses the compacted agent-state topic, the wallboard or the RTDC sink.
8. TLS as for every vendor client (:func:`~streamd.sources.http.tls_verify`): a certificate that
   does not verify fails the job (``failed``, with the cause).
9. Real-time adherence (``realtime_adherence``, :mod:`.schedule`): the activity job reads
   today's schedule, evaluates each agent's newest state against the scheduled activity after
   every window and publishes status changes (vendor and canonical ``streamd.agent.Adherence``).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import httpx
from anyio.abc import TaskStatus

from streamd.runtime import Connected, Job
from streamd.sources import base
from streamd.sources.calabrio.activity_job import ActivitySpec, enrichment
from streamd.sources.calabrio.adherence_job import (
    AdherenceSpec,
    AdherenceState,
    adherence_cycle_timeout,
    adherence_delays,
)
from streamd.sources.calabrio.auth import CalabrioAuth, auth_for, logout
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.monitoring import ContactsSpec
from streamd.sources.calabrio.reference import ReferenceData, ReferenceSpec, ReferenceState
from streamd.sources.calabrio.schedule import DEFAULT_RULES, AdherenceTracker, ScheduleData
from streamd.sources.calabrio.window import WindowCursor
from streamd.sources.http import tls_verify
from streamd.sources.poller import Poller

__all__ = [
    "ActivitySpec",
    "AdherenceSpec",
    "AdherenceState",
    "CalabrioSource",
    "adherence_delays",
    "enrichment",
]

log = logging.getLogger("streamd.sources.calabrio")


def wall_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


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
        paths = {"agent": cfg.agents_path, "team": cfg.teams_path, "service_queue": cfg.services_path}
        self.reference = ReferenceData(
            cfg.name, {k: p for k, p in paths.items() if p}, cfg.reference_refresh, time.monotonic
        )
        """Agents, teams and service queues, shared by the jobs (rule 3)."""
        self.schedule = ScheduleData(cfg.name, cfg.schedule_path, cfg.schedule_refresh, time.monotonic)
        """Today's schedule (real-time adherence, :mod:`.schedule`)."""
        rules = {k.lower(): tuple(v) for k, v in cfg.adherence_rules.items()}
        self.tracker = AdherenceTracker(cfg.name, {**DEFAULT_RULES, **rules})
        """The agents' actual states and their published adherence (:mod:`.schedule`)."""
        self.contacts_auth = auth_for(cfg)
        """The contact monitoring job's own Calabrio session (rule 1)."""
        self.reference_auth = auth_for(cfg)
        """The reference job's own Calabrio session (rule 1)."""
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
        if self.cfg.contact_monitoring:
            jobs.append(Job("contacts", partial(self._poll, emit, self.contacts_poller, self.contacts_auth)))
        if self.cfg.reference_publish:
            jobs.append(
                Job("reference", partial(self._poll, emit, self.reference_poller, self.reference_auth))
            )
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
        realtime = (self.schedule, self.tracker) if self.cfg.realtime_adherence else None
        spec = ActivitySpec(self.cfg, client, self.reference, self.now_ms, realtime)
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
        """The adherence poller (the figures in memory, the date of the last poll in the cursor store)."""
        tracker = self.tracker if self.cfg.realtime_adherence else None
        spec = AdherenceSpec(self.cfg, client, self.now_ms, tracker)
        return Poller(
            spec,
            source=self.name,
            interval=self.cfg.adherence_interval,
            timeout=adherence_cycle_timeout(self.cfg),  # scales with the pages (rule 4)
            cursors=self.deps.cursors,
            sleep=self.sleep,
            cycles=self.cycles,
        )

    def contacts_poller(self, client: httpx.AsyncClient) -> Poller[str | None]:
        """The contact monitoring job's poller (:mod:`.monitoring`)."""
        cfg = self.cfg
        spec = ContactsSpec(self.name, client, cfg.contacts_path, cfg.recording_min_contacts, self.now_ms)
        return Poller(
            spec,
            source=self.name,
            interval=cfg.contact_monitoring_interval,
            timeout=cfg.timeout,
            sleep=self.sleep,
            cycles=self.cycles,
        )

    def reference_poller(self, client: httpx.AsyncClient) -> Poller[ReferenceState | None]:
        """The reference job's poller (state in memory, rule 3)."""
        spec = ReferenceSpec(self.name, client, self.reference, self.now_ms)
        return Poller(
            spec,
            source=self.name,
            interval=self.cfg.reference_refresh,
            timeout=self.cfg.timeout * 3,  # up to three reads (agents, teams, queues)
            jitter=0.0,  # publish at once, not up to a tenth of an hour late
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
        """Destroy the four jobs' Calabrio sessions, best effort (002 L540-548)."""
        verify = True if self._verify is None else self._verify
        await logout(self.auth, verify=verify)
        await logout(self.adherence_auth, verify=verify)
        await logout(self.reference_auth, verify=verify)
        await logout(self.contacts_auth, verify=verify)

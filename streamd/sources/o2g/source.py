"""The O2G source: one session at a time, a job of the supervisor (:class:`streamd.runtime.Jobs`).

The source wires its parts: the sessions (:mod:`.session`: connect, subscribe, snapshot, stream,
tear down), the snapshot reads (:mod:`.snapshots`), the continuity (:mod:`.continuity`), the
directory of names and labels (:mod:`.enrich`) and, in webhook mode, the receiver
(:mod:`.webhook`, registered on the daemon's HTTP port while the source runs).

Beside every session (:mod:`.status`): the server status is read when it starts and every
``status_interval`` by the ``status`` job nested in the session (the generic poller under the
supervisor: a failed read is that job's, retried one interval later; a restart or an HA
switchover ends the session: a Gap, a new subscription, a snapshot); in webhook mode no POST and
no status answer for ``idle_timeout`` ends it too. Once per run, after the first login, the
licence pre-flight (:mod:`.licenses`). Across daemon restarts the cursor store keeps until when
the stream was complete (:mod:`streamd.sources.continuity` rule 3): written when a subscription
streams, every ``RECORD_INTERVAL`` and when the source stops (advisory: a write that fails is
logged, never raised); a run that finds it starts with a ``daemon restart`` Gap before its first
snapshot.

Rules: no retry loop here (the supervisor owns it); no httpx exception is caught here; every
event passes the directory (:class:`~.enrich.Enriching`); the config's warnings are logged when
the source starts.
"""

from __future__ import annotations

import itertools
import logging
from functools import partial

import anyio
from anyio.abc import TaskGroup, TaskStatus

from streamd.errors import PublishError
from streamd.runtime import Job, Policy, run_job
from streamd.sources.base import Emit, SourceDeps
from streamd.sources.o2g.client import O2GClient
from streamd.sources.o2g.config import O2GSourceConfig
from streamd.sources.o2g.continuity import O2GContinuity
from streamd.sources.o2g.enrich import Directory, Enriching
from streamd.sources.o2g.licenses import preflight
from streamd.sources.o2g.session import TEARDOWN_DEADLINE, Sessions
from streamd.sources.o2g.snapshots import Snapshots
from streamd.sources.o2g.status import (
    HeardEmit,
    Liveness,
    StatusReads,
    StatusWatch,
    status_decision,
    watch_liveness,
)
from streamd.sources.o2g.webhook import WebhookReceiver
from streamd.sources.poller import Poller

log = logging.getLogger("streamd.sources.o2g")

VENDOR = "o2g"
STATUS_TIMEOUT_MARGIN = 1.0
"""Seconds a status read may take beyond ``request_timeout`` (httpx's own timeout comes first)."""
RECORD = "o2g.continuity"
"""The cursor-store name of the continuity record (:mod:`streamd.sources.continuity` rule 3)."""
RECORD_INTERVAL = 10.0
"""Seconds between two writes of the continuity record while streaming."""


class O2GSource:
    """Runtime of an :class:`O2GSourceConfig` (build it with ``config.build(deps)``)."""

    def __init__(
        self,
        config: O2GSourceConfig,
        deps: SourceDeps,
    ) -> None:
        self.name = config.name
        self.config = config
        self.deps = deps
        self.receiver: WebhookReceiver | None = None
        self.continuity = O2GContinuity(config.name)
        self.watch = StatusWatch(config.name)
        self.liveness: Liveness | None = None  # webhook mode: the server's last sign of life
        self.status: tuple[StatusReads, Poller[None]] | None = None  # admin logins only
        self._preflight_done = False
        self._resumed = False
        self._record_failing = False  # the last write of the continuity record failed
        self.directory = Directory(config.name, concurrency=config.snapshot_concurrency)  # names, labels
        self.snapshots = Snapshots(config.name, config, self.directory)
        # how the jobs nested in a session wait (no failed_retry: their failures go to the session)
        nested = Policy(delays=deps.jobs.policy.delays, sleep=deps.jobs.policy.sleep)
        self.sessions = Sessions(
            config, self.continuity, self.snapshots, nested, self._watches, self._save_record
        )

    async def run(self, emit: Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Stream events until cancelled; readiness once subscribed and snapshotted.

        Raises:
            FatalError: e.g. credentials rejected on the first login, subscription refused (only
                under a standalone :class:`~streamd.runtime.Jobs`; a daemon marks it failed).
        """
        emit = Enriching(emit, self.directory)  # every event passes the directory (enrich.py)
        for line in self.config.warnings():
            log.warning("o2g %s: %s", self.name, line)
        if not self.config.admin:
            self.watch.disable("the login is not an administrator (admin: false)")
        if not self._resumed:  # once per source: a later run() of it is no daemon restart
            self._resumed = True
            try:
                record = await anyio.to_thread.run_sync(self.deps.cursors.load, self.name, RECORD)
            except PublishError as exc:  # advisory, like its save: the stream goes on without it
                log.warning(
                    "o2g %s: the continuity record cannot be read (%s): no restart Gap", self.name, exc
                )
            else:
                self.continuity.resumed(record)
        if self.config.delivery == "webhook":
            secret = self.config.webhook_secret
            self.liveness = Liveness(anyio.current_time)
            self.receiver = WebhookReceiver(
                source=self.name,
                emit=HeardEmit(emit, self.liveness),
                deadline=self.config.webhook_deadline,
                max_event_size=self.config.max_event_size,
                secret=secret.get_secret_value() if secret else None,
            )
            self.receiver.react = self.continuity.react
            self.sessions.receiver = self.receiver
            self.deps.webhooks.register(VENDOR, self.name, self.receiver.handle)
        if self.watch.enabled:  # for this run's liveness
            reads = StatusReads(self.watch, self.continuity, self.liveness)
            poller = Poller(  # warns when request_timeout is not below status_interval
                reads,
                source=self.name,
                interval=self.config.status_interval,
                timeout=self.config.request_timeout + STATUS_TIMEOUT_MARGIN,
                jitter=0.0,
            )
            self.status = (reads, poller)
        try:
            await self.deps.jobs.run(
                Job("session", partial(self.sessions.session, emit)), task_status=task_status
            )
        finally:
            if self.receiver is not None:
                self.deps.webhooks.unregister(VENDOR, self.name)
            with anyio.move_on_after(TEARDOWN_DEADLINE, shield=True):
                await self._save_record()

    async def _save_record(self) -> None:
        """Keep until when the stream is known complete (:mod:`streamd.sources.continuity` rule 3).

        The record is advisory: a cursor store that cannot write it (a full disk) is logged once
        per change (failing, written again) and never ends the session.
        """
        record = self.continuity.record()
        if record is None:
            return
        try:
            await anyio.to_thread.run_sync(self.deps.cursors.save, self.name, RECORD, record)
        except PublishError as exc:
            if not self._record_failing:
                self._record_failing = True
                log.warning(
                    "o2g %s: continuity record not written (a daemon restart may show no Gap): %s",
                    self.name,
                    exc,
                )
            return
        if self._record_failing:
            self._record_failing = False
            log.info("o2g %s: continuity record written again", self.name)

    async def _keep_record(self) -> None:
        while True:
            await anyio.sleep(RECORD_INTERVAL)
            await self._save_record()

    async def _watches(self, client: O2GClient, tg: TaskGroup, emit: Emit) -> None:
        """What runs beside a session's subscription (module docstring): status, liveness, record.

        The ``status`` job is started here and waited for until its first read answered or failed.
        """
        if not self._preflight_done:
            self._preflight_done = True
            await preflight(client, self.config.packages)
        if self.status is not None and self.watch.enabled:
            reads, poller = self.status
            reads.begin(client)
            interval = self.config.status_interval
            job = Job(
                "status",
                partial(poller.session, emit),
                decide=status_decision,
                delays=lambda: itertools.repeat(interval),  # a failed read: again one interval later
                stage="status",
            )
            await tg.start(partial(run_job, job, policy=self.sessions.nested, owner=self.name))
        if self.liveness is not None:
            self.liveness.alive()  # a new session is a sign of life
            tg.start_soon(watch_liveness, self.name, self.liveness, self.config.idle_timeout, self.watch)
        tg.start_soon(self._keep_record)

"""The O2G source: one session at a time, a job of the supervisor (:class:`streamd.runtime.Jobs`).

A session (spec o2g.md §0, §5.3, §8.0):

1. connect (discovery, login, session; HA: the active server, else the other one);
2. session keepalives in the background (a failure ends the session: log in again);
3. discover the pilots (:mod:`.acd`) when ``pilot`` is subscribed or a ``pilot``/``rsi`` selector
   needs their numbers, then subscribe (chunk: open the channel at once; webhook: with the public
   URL, a POST that arrives before the answer waits for it), then: (re)activate the RTI context
   when ``rti`` is subscribed (its values then stream in); start pilot monitoring when ``pilot``
   is, whatever ``snapshot`` says, each pilot on its own (those that failed transiently are
   retried by a job beside the session); with ``snapshot: true`` read agent states
   (``GET /logins?onlyACD`` + ``GET /acd/agent/state``) and pilots over REST; then signal
   readiness. A part the login has no right or licence for is skipped with a warning. With
   ``snapshot: true`` the telephony state is asked for too (``POST /telephony/state/snapshot``,
   without ``loginName`` for ``"*"``, else per login, 004 L4555-4592): its ``OnTelephonyState``
   answers arrive on the channel and are published with ``snapshot=True`` (calls in progress
   appear, a user's call list replaces what a consumer held). Before the snapshot of a
   subscription that replaces a lost one, one ``streamd.source.Gap`` (:mod:`.continuity`);
4. chunk: reopen the channel whenever it ends (:mod:`.chunk`: at once, or with backoff within
   O2G's one-minute window), and re-snapshot after every reopen (telephony, RTI, agents,
   pilots: what a part fails with is logged, only a lost session ends the session); a
   subscription O2G says is gone is re-created (a Gap, then a snapshot) in the same session,
   once in a row (both are jobs nested in the session, whose failures the session's job
   handles); webhook: wait, the receiver does the work. System events (:mod:`.continuity`):
   ``OnCtiLinkUp``, ``OnPbxLoaded``, ``OnServerStart`` re-snapshot the same way;
5. always, also on cancellation: unsubscribe and delete the session, shielded, 2 s at most.

Beside every session (:mod:`.status`): the server status is read when it starts and every
``status_interval`` (a restart or an HA switchover ends the session: a Gap, a new subscription, a
snapshot); in webhook mode no POST and no status answer for ``idle_timeout`` ends it too. Once
per run, after the first login, the licence pre-flight (:mod:`.licenses`). Across daemon restarts
the cursor store keeps until when the stream was complete (:mod:`.continuity` rule 5): a run that
finds it starts with a ``daemon restart`` Gap before its first snapshot.

Rules: no retry loop here (the supervisor owns it); no httpx exception is caught here; every
snapshot is published with ``snapshot=True`` through ``await emit(...)`` (durable); TLS
verification is set up once, by the first session (one warning when it is off); the config's
warnings are logged when the source starts.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlencode

import anyio
from anyio.abc import TaskGroup, TaskStatus

from streamd.errors import FatalError, NormalizationError, SourceError, StreamdError
from streamd.events import Event
from streamd.retry import Decision, Fatal, Retry
from streamd.runtime import Connected, Job, Policy, describe, run_job, task_group
from streamd.sources.base import Emit, SourceDeps
from streamd.sources.http import tls_verify
from streamd.sources.o2g.acd import (
    PilotMonitor,
    activate_rti,
    agent_states,
    discover_pilots,
    retry_monitoring,
)
from streamd.sources.o2g.chunk import ChannelLost, dead_letter, read_subscription
from streamd.sources.o2g.client import O2GClient, Servers, SubscriptionGone
from streamd.sources.o2g.config import O2GSourceConfig, discovers_pilots, package_ids
from streamd.sources.o2g.continuity import Continuity
from streamd.sources.o2g.enrich import Directory, Enriching
from streamd.sources.o2g.licenses import preflight
from streamd.sources.o2g.normalize import agent_state_snapshot, pilots_snapshot
from streamd.sources.o2g.protocol import O2GRequestError, SessionExpired
from streamd.sources.o2g.status import (
    HeardEmit,
    Liveness,
    StatusWatch,
    check_status,
    watch_liveness,
    watch_status,
)
from streamd.sources.o2g.webhook import SECRET_PARAM, WebhookReceiver
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

VENDOR = "o2g"
TEARDOWN_DEADLINE = 2.0
RECORD = "o2g.continuity"
"""The cursor-store name of the continuity record (:mod:`.continuity` rule 5)."""
RECORD_INTERVAL = 10.0
"""Seconds between two writes of the continuity record while streaming."""


@dataclass(slots=True)
class _Live:
    """One session: its client, its task group, its pilot monitoring, its subscription ids."""

    client: O2GClient
    tasks: TaskGroup
    monitor: PilotMonitor
    subscriptions: list[str] = field(default_factory=list)


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
        self.servers = Servers.of(config)
        self.receiver: WebhookReceiver | None = None
        self.continuity = Continuity(config.name)
        self.watch = StatusWatch(config.name)
        self.liveness: Liveness | None = None  # webhook mode: the server's last sign of life
        self._preflight_done = False
        self._resumed = False
        self.directory = Directory(config.name, concurrency=config.snapshot_concurrency)  # names, labels
        self._verify: ssl.SSLContext | bool | None = None
        # how the jobs nested in a session wait (no failed_retry: their failures go to the session)
        self.nested = Policy(delays=deps.jobs.policy.delays, sleep=deps.jobs.policy.sleep)

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
            self.continuity.resumed(await anyio.to_thread.run_sync(self.deps.cursors.load, self.name, RECORD))
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
            self.deps.webhooks.register(VENDOR, self.name, self.receiver.handle)
        try:
            await self.deps.jobs.run(Job("session", partial(self._session, emit)), task_status=task_status)
        finally:
            if self.receiver is not None:
                self.deps.webhooks.unregister(VENDOR, self.name)
            with anyio.move_on_after(TEARDOWN_DEADLINE, shield=True):
                await self._save_record()

    async def _save_record(self) -> None:
        """Keep until when the stream is known complete (:mod:`.continuity` rule 5)."""
        record = self.continuity.record()
        if record is not None:
            await anyio.to_thread.run_sync(self.deps.cursors.save, self.name, RECORD, record)

    async def _keep_record(self) -> None:
        while True:
            await anyio.sleep(RECORD_INTERVAL)
            await self._save_record()

    async def _watches(self, client: O2GClient, tg: TaskGroup) -> None:
        """What runs beside a session's subscription (module docstring): status, liveness, record."""
        if not self._preflight_done:
            self._preflight_done = True
            await preflight(client, self.config.packages)
        await check_status(client, self.watch, self.continuity, self.liveness)
        interval = self.config.status_interval
        tg.start_soon(watch_status, client, self.watch, self.continuity, interval, self.liveness)
        if self.liveness is not None:
            self.liveness.alive()  # a new session is a sign of life
            tg.start_soon(watch_liveness, self.name, self.liveness, self.config.idle_timeout, self.watch)
        tg.start_soon(self._keep_record)

    async def _session(self, emit: Emit, connected: Callable[[], None]) -> None:
        if self._verify is None:
            self._verify = tls_verify(self.config, f"o2g {self.name}")
        async with O2GClient(self.config, self.servers, verify=self._verify) as client:
            subscriptions: list[str] = []
            try:
                await client.connect()
                async with task_group() as tg:  # a failed keepalive ends the session
                    tg.start_soon(client.keepalive_forever)
                    await self._watches(client, tg)
                    live = _Live(client, tg, PilotMonitor(client), subscriptions)
                    self.continuity.served()  # this session's own snapshot covers earlier requests
                    tg.start_soon(self._on_demand, live, emit)
                    if {"agent", "rti"} & set(self.config.packages):  # enrich.py rule 2
                        snapshots = self.config.snapshot and "agent" in self.config.packages
                        tg.start_soon(partial(self.directory.keep_fresh, client, emit, snapshots=snapshots))
                    await self._subscribed(live, emit, connected)
                    tg.cancel_scope.cancel()
            except Exception as exc:
                self.continuity.lost(f"session lost: {describe(exc)}")
                raise
            finally:
                with anyio.move_on_after(TEARDOWN_DEADLINE, shield=True):
                    await self._teardown(client, subscriptions)

    async def _subscribed(self, live: _Live, emit: Emit, connected: Connected) -> None:
        if self.config.delivery == "webhook":
            await self._webhook(live, emit, connected)
            return
        job = Job(
            "subscription",
            partial(self._subscription, live, emit, connected),
            decide=_resubscribe,
            delays=lambda: itertools.repeat(0.0),
            stage="chunk",
            escalate_after=2,  # gone again before its channel opened: the session is given up
        )
        await run_job(job, policy=self.nested, owner=self.name)

    async def _subscription(
        self, live: _Live, emit: Emit, connected: Connected, resubscribed: Connected
    ) -> None:
        pilots = await self._pilots(live)
        sub = await live.client.subscribe(pilots=pilots)
        live.subscriptions[:] = [sub.id]
        if sub.polling_url is None:
            raise FatalError(f"o2g {self.name}: the subscription has no polling URL")

        def ready() -> None:
            connected()
            resubscribed()  # its channel opened: the next "gone" is not "gone again"

        on_open = partial(self._ready, live, emit, ready)
        try:
            await read_subscription(
                live.client,
                sub.polling_url,
                emit,
                on_open=on_open,
                on_reopen=partial(self._resnapshot, live, emit, "chunk channel reopened"),
                react=self.continuity.react,
                policy=self.nested,
            )
        except SubscriptionGone as exc:
            log.info("o2g %s: subscription gone (%s)", self.name, exc)
            self.continuity.lost(f"subscription gone: {exc}")
            raise
        except ChannelLost as exc:
            self.continuity.lost(str(exc), exc.since)
            raise

    async def _webhook(self, live: _Live, emit: Emit, connected: Connected) -> None:
        assert self.receiver is not None
        assert self.config.webhook_public_url is not None
        url = self.config.webhook_public_url
        if self.config.webhook_secret is not None:
            query = urlencode({SECRET_PARAM: self.config.webhook_secret.get_secret_value()})
            url += ("&" if "?" in url else "?") + query
        pilots = await self._pilots(live)
        token = live.client.auth.token
        self.receiver.session_tokens = {token} if token else set()
        with self.receiver.subscribing():  # O2G may POST before it answers
            sub = await live.client.subscribe(webhook_url=url, pilots=pilots)
            live.subscriptions[:] = [sub.id]
            self.receiver.subscription_ids = {sub.id}
        await self._ready(live, emit, connected)
        await anyio.sleep_forever()  # the receiver works; keepalive failures end the session

    async def _pilots(self, live: _Live) -> list[str] | None:
        """Discover the pilots when needed: their numbers for the selectors, the ones to monitor."""
        packages = set(self.config.packages)
        if "pilot" not in packages and not discovers_pilots(self.config):
            return None
        found = await discover_pilots(live.client)
        if "pilot" in packages:
            wanted = package_ids(self.config, "pilot")
            live.monitor.add(found.nodes if "*" in wanted else {p: found.nodes.get(p) for p in wanted})
        if not found.nodes and discovers_pilots(self.config):
            log.warning("o2g %s: no pilot found on any node: no pilot/rsi events this session", self.name)
        return list(found.nodes)

    async def _ready(self, live: _Live, emit: Emit, connected: Callable[[], None]) -> None:
        if (gap := self.continuity.gap()) is not None:
            log.warning("o2g %s: events may be missing: %s", self.name, gap.data.reason)
            await emit([gap])  # before the snapshot: consumers rebuild their state from it
        if "rti" in self.config.packages:
            await self._part("rti activation", self._activate_rti, live.client)
        if "pilot" in self.config.packages:
            await self._monitor_pilots(live)
        if self.config.snapshot:
            await self._part("telephony", self._telephony_snapshot, live.client)
            events = await self.snapshot(live.client)
            if events:
                await emit(events)
        self.continuity.streaming()
        await self._save_record()
        connected()

    async def _resnapshot(self, live: _Live, emit: Emit, why: str) -> None:
        """Snapshot again (module rule 4): each part on its own, only a lost session propagates."""
        log.info("o2g %s: %s: re-snapshot", self.name, why)
        client = live.client
        if "rti" in self.config.packages:
            await self._kept("rti", self._rti_snapshot, client)
        if not self.config.snapshot:
            return
        await self._kept("telephony", self._telephony_snapshot, client)
        events: list[Event] = []
        if "agent" in self.config.packages:
            events += await self._kept("agent states", self._agent_snapshot, client)
        if "pilot" in self.config.packages:
            events += await self._kept("pilots", self._pilot_snapshot, client)
        if events:
            await emit(events)

    async def _on_demand(self, live: _Live, emit: Emit) -> None:
        """Re-snapshot whenever a system event asked for it (:mod:`.continuity` rule 2)."""
        while True:
            await self.continuity.wanted().wait()
            self.continuity.served()
            await self._resnapshot(live, emit, "asked by a system event")

    async def _kept(
        self, what: str, read: Callable[[O2GClient], Awaitable[list[Event]]], client: O2GClient
    ) -> list[Event]:
        """A re-snapshot part: what it fails with but a lost session is logged and counted."""
        try:
            return await read(client)
        except SessionExpired:
            raise
        except SourceError as exc:
            log.warning("o2g %s: re-snapshot of %s failed: %s", self.name, what, exc)
            count_error(self.name, "snapshot", type(exc).__name__)
            return []

    async def _telephony_snapshot(self, client: O2GClient) -> list[Event]:
        """Ask for every monitored user's telephony state; the answers come as events."""
        if "telephony" not in self.config.packages:
            return []
        url = client.base_url + "/telephony/state/snapshot"
        logins = package_ids(self.config, "telephony")
        if "*" in logins:  # an administrator, all users at once (004 L4564-4570)
            await client.request("POST", url, "telephony snapshot")
            return []
        for login in logins:
            try:
                await client.request("POST", url, "telephony snapshot", params={"loginName": login})
            except O2GRequestError as exc:  # an unknown login: skip it (spec §7.4)
                log.warning("o2g %s: no telephony snapshot for %s: %s", self.name, login, exc)
        return []

    async def _rti_snapshot(self, client: O2GClient) -> list[Event]:
        await client.request("POST", client.base_url + "/acd/rti/snapshot", "rti snapshot")
        return []  # its values arrive as events on the channel

    async def _monitor_pilots(self, live: _Live) -> None:
        """Start monitoring every pilot; retry those that failed transiently in a job of their own."""
        monitor = live.monitor
        await monitor.start()
        if monitor.pending and not monitor.retrying:
            monitor.retrying = True
            job = Job(
                "pilot monitoring", monitor.keep_trying, decide=retry_monitoring, stage=None
            )  # counted per pilot
            live.tasks.start_soon(partial(run_job, job, policy=self.nested, owner=self.name))

    async def snapshot(self, client: O2GClient) -> list[Event]:
        """Current agent states and pilot status read over REST, as ``snapshot=True`` events.

        A missing right or licence (a fatal answer for that read) skips that part with a
        warning; a lost session propagates.
        """
        events: list[Event] = []
        packages = set(self.config.packages)
        if "agent" in packages:
            events.extend(await self._part("agent states", self._agent_snapshot, client))
        if "pilot" in packages:
            events.extend(await self._part("pilots", self._pilot_snapshot, client))
        return events

    async def _part(
        self, what: str, read: Callable[[O2GClient], Awaitable[list[Event]]], client: O2GClient
    ) -> list[Event]:
        try:
            return await read(client)
        except FatalError as exc:  # e.g. NOT_ALLOWED: no licence for this resource
            log.warning("o2g %s: snapshot of %s skipped: %s", self.name, what, exc)
            count_error(self.name, "snapshot", type(exc).__name__)
            return []

    async def _activate_rti(self, client: O2GClient) -> list[Event]:
        await activate_rti(client)  # its snapshot arrives as events on the channel
        return []

    async def _agent_snapshot(self, client: O2GClient) -> list[Event]:
        events: list[Event] = []
        states = await agent_states(client)
        await self.directory.refresh(client, states)  # before the snapshot is published (enrich.py)
        for login, state in states.items():
            try:
                events.extend(agent_state_snapshot(self.name, login, state))
            except NormalizationError as exc:
                events.append(dead_letter(self.name, "snapshot", exc.error_type, str(exc), repr(state)))
        return events

    async def _pilot_snapshot(self, client: O2GClient) -> list[Event]:
        events: list[Event] = []
        for node, body in (await discover_pilots(client)).bodies.items():  # a failing node is skipped
            try:
                events.extend(pilots_snapshot(self.name, node, body))
            except NormalizationError as exc:
                events.append(dead_letter(self.name, "snapshot", exc.error_type, str(exc), repr(body)))
        return events

    async def _teardown(self, client: O2GClient, subscription: list[str]) -> None:
        if client.session is None:
            return
        for sid in subscription:
            try:
                await client.unsubscribe(sid)
            except StreamdError as exc:
                log.debug("o2g %s: unsubscribe %s: %s", self.name, sid, exc)
        try:
            await client.close_session()
        except StreamdError as exc:
            log.debug("o2g %s: session delete: %s", self.name, exc)
        if self.receiver is not None:
            self.receiver.subscription_ids -= set(subscription)
            self.receiver.session_tokens.discard(client.auth.token or "")


def _resubscribe(exc: BaseException) -> Decision:
    """Subscribe anew when the subscription is gone; anything else is the session's to handle."""
    return Retry() if isinstance(exc, SubscriptionGone) else Fatal()

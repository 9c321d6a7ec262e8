"""One O2G session and its subscription, the ``session`` job of an O2G source (spec o2g.md §0, §5.3, §8.0).

A session:

1. connect (discovery, login, session; HA: the active server, else the other one);
2. session keepalives in the background (a failure ends the session: log in again), and what the
   source runs beside every session (the ``status`` job nested in it, whose first read is waited
   for; liveness; the continuity record: :mod:`.source`);
3. discover the pilots (:mod:`.acd`) when ``pilot`` is subscribed or a ``pilot``/``rsi`` selector
   needs their numbers, then subscribe (chunk: open the channel at once; webhook: with the public
   URL, a POST that arrives before the answer waits for it), then: (re)activate the RTI context
   when ``rti`` is subscribed (its values then stream in); start pilot monitoring when ``pilot``
   is, whatever ``snapshot`` says, each pilot on its own (those that failed transiently are
   retried by a job beside the session); with ``snapshot: true`` the telephony state, agent
   states and pilots (:mod:`.snapshots`); then signal readiness. Before the snapshot of a
   subscription that replaces a lost one, one ``streamd.source.Gap`` (:mod:`.continuity`);
4. chunk: reopen the channel whenever it ends (:mod:`.chunk`: at once, or with backoff within
   O2G's one-minute window), and re-snapshot after every reopen (:mod:`.snapshots` rule 3); a
   subscription O2G says is gone is re-created (a Gap, then a snapshot) in the same session,
   once in a row (both are jobs nested in the session, whose failures the session's job
   handles); webhook: wait, the receiver does the work. System events (:mod:`.continuity`):
   ``OnCtiLinkUp``, ``OnPbxLoaded``, ``OnServerStart`` re-snapshot the same way;
5. always, also on cancellation: unsubscribe and delete the session, shielded, 2 s at most.

Rules: no retry loop here (the supervisor owns it); no httpx exception is caught here; TLS
verification is set up once, by the first session (one warning when it is off); every loss of
the stream is recorded with :meth:`~streamd.sources.continuity.Continuity.lost`.
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
from anyio.abc import TaskGroup

from streamd.errors import FatalError, StreamdError
from streamd.retry import Decision, Fatal, Retry
from streamd.runtime import Connected, Job, Policy, describe, run_job, task_group
from streamd.sources.base import Emit
from streamd.sources.http import tls_verify
from streamd.sources.o2g.acd import PilotMonitor, discover_pilots, retry_monitoring
from streamd.sources.o2g.chunk import ChannelLost, read_subscription
from streamd.sources.o2g.client import O2GClient, Servers, SubscriptionGone
from streamd.sources.o2g.config import O2GSourceConfig, discovers_pilots, package_ids
from streamd.sources.o2g.continuity import O2GContinuity
from streamd.sources.o2g.snapshots import Snapshots
from streamd.sources.o2g.webhook import SECRET_PARAM, WebhookReceiver

log = logging.getLogger("streamd.sources.o2g")

TEARDOWN_DEADLINE = 2.0

Watches = Callable[[O2GClient, TaskGroup, Emit], Awaitable[None]]
"""What the source starts beside a session once it is connected (:mod:`.source`): the status
job (nested in the session), the webhook liveness, the continuity record."""


@dataclass(slots=True)
class Live:
    """One session: its client, its task group, its pilot monitoring, its subscription ids."""

    client: O2GClient
    tasks: TaskGroup
    monitor: PilotMonitor
    subscriptions: list[str] = field(default_factory=list)


class Sessions:
    """The sessions of one O2G source, one at a time (module docstring).

    Attributes:
        receiver: the webhook receiver in webhook mode (set by the source before its first session).
        nested: how the jobs nested in a session wait (no ``failed_retry``: their failures go to
            the session).
    """

    def __init__(
        self,
        config: O2GSourceConfig,
        continuity: O2GContinuity,
        snapshots: Snapshots,
        nested: Policy,
        watches: Watches,
        save_record: Callable[[], Awaitable[None]],
    ) -> None:
        self.name = config.name
        self.config = config
        self.servers = Servers.of(config)
        self.continuity = continuity
        self.snapshots = snapshots
        self.nested = nested
        self.receiver: WebhookReceiver | None = None
        self._watches = watches
        self._save_record = save_record
        self._verify: ssl.SSLContext | bool | None = None

    async def session(self, emit: Emit, connected: Callable[[], None]) -> None:
        """One session (steps 1-5); returns never, ends with what ended it."""
        if self._verify is None:
            self._verify = tls_verify(self.config, f"o2g {self.name}")
        async with O2GClient(self.config, self.servers, verify=self._verify) as client:
            subscriptions: list[str] = []
            try:
                await client.connect()
                async with task_group() as tg:  # a failed keepalive ends the session
                    tg.start_soon(client.keepalive_forever)
                    await self._watches(client, tg, emit)
                    live = Live(client, tg, PilotMonitor(client), subscriptions)
                    self.continuity.served()  # this session's own snapshot covers earlier requests
                    tg.start_soon(self._on_demand, live, emit)
                    if {"agent", "rti"} & set(self.config.packages):  # enrich.py rule 2
                        snapshots = self.config.snapshot and "agent" in self.config.packages
                        directory = self.snapshots.directory
                        tg.start_soon(partial(directory.keep_fresh, client, emit, snapshots=snapshots))
                    await self._subscribed(live, emit, connected)
                    tg.cancel_scope.cancel()
            except Exception as exc:
                self.continuity.lost(f"session lost: {describe(exc)}")
                raise
            finally:
                with anyio.move_on_after(TEARDOWN_DEADLINE, shield=True):
                    await self._teardown(client, subscriptions)

    async def _subscribed(self, live: Live, emit: Emit, connected: Connected) -> None:
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
        self, live: Live, emit: Emit, connected: Connected, resubscribed: Connected
    ) -> None:
        pilots = await self._pilots(live)
        sub = await live.client.subscribe(pilots=pilots)
        live.subscriptions[:] = [sub.id]
        if sub.polling_url is None:
            raise FatalError(f"o2g {self.name}: the subscription has no polling URL")

        def ready() -> None:
            connected()
            resubscribed()  # its channel opened: the next "gone" is not "gone again"

        try:
            await read_subscription(
                live.client,
                sub.polling_url,
                emit,
                on_open=partial(self._ready, live, emit, ready),
                on_reopen=partial(self.snapshots.resnapshot, live.client, emit, "chunk channel reopened"),
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

    async def _webhook(self, live: Live, emit: Emit, connected: Connected) -> None:
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

    async def _pilots(self, live: Live) -> list[str] | None:
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

    async def _ready(self, live: Live, emit: Emit, connected: Callable[[], None]) -> None:
        if (gap := self.continuity.gap()) is not None:
            log.warning("o2g %s: events may be missing: %s", self.name, gap.data.reason)
            await emit([gap])  # before the snapshot: consumers rebuild their state from it
            self.continuity.gap_sent(gap)  # durable: else the next snapshot gets it again
        snapshots = self.snapshots
        if "rti" in self.config.packages:
            await snapshots.part("rti activation", snapshots.activate_rti, live.client)
        if "pilot" in self.config.packages:
            await self._monitor_pilots(live)
        if self.config.snapshot:
            await snapshots.part("telephony", snapshots.telephony, live.client)
            events = await snapshots.snapshot(live.client)
            if events:
                await emit(events)
        self.continuity.streaming()
        await self._save_record()
        connected()

    async def _on_demand(self, live: Live, emit: Emit) -> None:
        """Re-snapshot whenever a system event asked for it (:mod:`.continuity` rule 2)."""
        while True:
            await self.continuity.wanted().wait()
            self.continuity.served()
            await self.snapshots.resnapshot(live.client, emit, "asked by a system event")

    async def _monitor_pilots(self, live: Live) -> None:
        """Start monitoring every pilot; retry those that failed transiently in a job of their own."""
        monitor = live.monitor
        await monitor.start()
        if monitor.pending and not monitor.retrying:
            monitor.retrying = True
            job = Job(
                "pilot monitoring", monitor.keep_trying, decide=retry_monitoring, stage=None
            )  # counted per pilot
            live.tasks.start_soon(partial(run_job, job, policy=self.nested, owner=self.name))

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

"""The O2G source: one session at a time, a job of the supervisor (:class:`streamd.runtime.Jobs`).

A session (spec o2g.md §0, §5.3, §8.0):

1. connect (discovery, login, session; HA: the active server, else the other one);
2. session keepalives in the background (a failure ends the session: log in again);
3. subscribe (chunk: open the channel at once, then snapshot; webhook: subscribe with the
   public URL, then snapshot), then signal readiness. The snapshot: the RTI context is
   (re)activated when ``rti`` is subscribed (its values then stream in), agent states
   (``GET /logins?onlyACD`` + ``GET /acd/agent/state``) and pilots (``GET /pbxs`` +
   ``GET /acd/{node}/pilots``, each configured pilot's monitoring started) are read over REST.
   A part the login has no right or licence for is skipped with a warning;
4. chunk: reopen the channel whenever it ends; a subscription that is gone is re-created
   (and re-snapshotted) in the same session, once (both are jobs nested in the session, whose
   failures the session's job handles); webhook: wait, the receiver does the work;
5. always, also on cancellation: unsubscribe and delete the session, shielded, 2 s at most.

Rules: no retry loop here (the supervisor owns it); no httpx exception is caught here; every
snapshot is published with ``snapshot=True`` through ``await emit(...)`` (durable).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import urlencode

import anyio
from anyio.abc import TaskStatus

from streamd.errors import FatalError, NormalizationError, StreamdError
from streamd.events import Event
from streamd.retry import Decision, Fatal, Retry
from streamd.runtime import Connected, Job, Policy, run_job, task_group
from streamd.sources.base import Emit, SourceDeps
from streamd.sources.o2g.chunk import dead_letter, read_subscription
from streamd.sources.o2g.client import O2GClient, Servers, SubscriptionGone
from streamd.sources.o2g.config import O2GSourceConfig
from streamd.sources.o2g.normalize import agent_state_snapshot, pilots_snapshot
from streamd.sources.o2g.webhook import SECRET_PARAM, WebhookReceiver
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.o2g")

VENDOR = "o2g"
TEARDOWN_DEADLINE = 2.0


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

    async def run(self, emit: Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Stream events until cancelled; readiness once subscribed and snapshotted.

        Raises:
            FatalError: e.g. credentials rejected on the first login, subscription refused (only
                under a standalone :class:`~streamd.runtime.Jobs`; a daemon marks it failed).
        """
        if self.config.delivery == "webhook":
            secret = self.config.webhook_secret
            self.receiver = WebhookReceiver(
                source=self.name,
                emit=emit,
                deadline=self.config.webhook_deadline,
                max_event_size=self.config.max_event_size,
                secret=secret.get_secret_value() if secret else None,
            )
            self.deps.webhooks.register(VENDOR, self.name, self.receiver.handle)
        try:
            await self.deps.jobs.run(Job("session", partial(self._session, emit)), task_status=task_status)
        finally:
            if self.receiver is not None:
                self.deps.webhooks.unregister(VENDOR, self.name)

    async def _session(self, emit: Emit, connected: Callable[[], None]) -> None:
        async with O2GClient(self.config, self.servers) as client:
            subscription: list[str] = []
            try:
                await client.connect()
                async with task_group() as tg:  # a failed keepalive ends the session
                    tg.start_soon(client.keepalive_forever)
                    await self._subscribed(client, emit, connected, subscription)
                    tg.cancel_scope.cancel()
            finally:
                with anyio.move_on_after(TEARDOWN_DEADLINE, shield=True):
                    await self._teardown(client, subscription)

    async def _subscribed(
        self, client: O2GClient, emit: Emit, connected: Callable[[], None], subscription: list[str]
    ) -> None:
        if self.config.delivery == "webhook":
            await self._webhook(client, emit, connected, subscription)
            return
        job = Job(
            "subscription",
            partial(self._subscription, client, emit, connected, subscription),
            decide=_resubscribe,
            delays=lambda: itertools.repeat(0.0),
            stage="chunk",
            escalate_after=2,  # gone again right after subscribing anew: the session is given up
        )
        await run_job(job, policy=Policy(), owner=self.name)

    async def _subscription(
        self,
        client: O2GClient,
        emit: Emit,
        connected: Connected,
        subscription: list[str],
        _: Connected,
    ) -> None:
        sub = await client.subscribe()
        subscription[:] = [sub.id]
        if sub.polling_url is None:
            raise FatalError(f"o2g {self.name}: the subscription has no polling URL")
        try:
            await read_subscription(
                client, sub.polling_url, emit, on_open=partial(self._ready, client, emit, connected)
            )
        except SubscriptionGone as exc:
            log.info("o2g %s: subscription gone (%s)", self.name, exc)
            raise

    async def _webhook(
        self, client: O2GClient, emit: Emit, connected: Callable[[], None], subscription: list[str]
    ) -> None:
        assert self.receiver is not None
        assert self.config.webhook_public_url is not None
        url = self.config.webhook_public_url
        if self.config.webhook_secret is not None:
            query = urlencode({SECRET_PARAM: self.config.webhook_secret.get_secret_value()})
            url += ("&" if "?" in url else "?") + query
        sub = await client.subscribe(webhook_url=url)
        subscription[:] = [sub.id]
        self.receiver.subscription_ids = {sub.id}
        self.receiver.session_tokens = {client.auth.token} if client.auth.token else set()
        await self._ready(client, emit, connected)
        await anyio.sleep_forever()  # the receiver works; keepalive failures end the session

    async def _ready(self, client: O2GClient, emit: Emit, connected: Callable[[], None]) -> None:
        if "rti" in self.config.packages:
            await self._part("rti activation", self._activate_rti, client)
        if self.config.snapshot:
            events = await self.snapshot(client)
            if events:
                await emit(events)
        connected()

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
        await client.activate_rti()  # its snapshot arrives as events on the channel
        return []

    async def _agent_snapshot(self, client: O2GClient) -> list[Event]:
        events: list[Event] = []
        for login, state in (await client.agent_states()).items():
            try:
                events.extend(agent_state_snapshot(self.name, login, state))
            except NormalizationError as exc:
                events.append(dead_letter(self.name, "snapshot", exc.error_type, str(exc), repr(state)))
        return events

    async def _pilot_snapshot(self, client: O2GClient) -> list[Event]:
        events: list[Event] = []
        configured = self.config.package_ids.get("pilot", self.config.ids)
        for node, body in (await client.pilots()).items():
            for pilot in body.get("pilotList") or []:
                number = str(pilot.get("number", ""))
                if number and ("*" in configured or number in configured):
                    await client.monitor_pilot(number)  # pilot events flow only when monitored
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

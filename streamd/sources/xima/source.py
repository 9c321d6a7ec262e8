"""The Xima source: realtime values (poll or websocket) and historic exports, each a supervised job.

Rules:

1. ``run`` opens one ``httpx.AsyncClient`` (base URL, Bearer auth, timeout) shared by the jobs and
   hands them to the supervisor (:class:`streamd.runtime.Jobs`): ``realtime`` (unless
   ``metrics: []``) and one poller ``historic:{id}`` per historic report (``id``: the report key
   unless set). It signals readiness once every job is running, retrying or failed.
2. Each job is retried on its own, and one that fails for good (a report answering 403) is
   ``failed`` alone: the other jobs go on. ``/readyz`` lists the jobs under the source.
3. In websocket mode, :class:`~.websocket.WebsocketUnavailable` switches this source to polling for
   the rest of its life when ``websocket_fallback`` is on (logged once); otherwise it is fatal.
   The source's continuity outlives sessions (:mod:`.websocket` rule 6): a fall-back after the
   socket streamed publishes one ``streamd.source.Gap`` before the first poll's snapshot, unless
   the baseline of the refused reconnect already did (a Gap whose emit raised is published by
   the next attempt).
4. No retry loops here: sessions raise streamd errors and the supervisor decides.
5. With ``calls:`` a job ``calls`` registers the call-finished receiver (:mod:`.webhook`) on
   ``/webhooks/xima/{name}`` for as long as it runs (ready at once: Xima pushes when calls end).
6. TLS (``verify_tls``, ``ca_file``) is set up once (:func:`~streamd.sources.http.tls_verify`: one
   warning when verification is off) and used by the REST client and the websocket alike.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from datetime import datetime
from functools import partial

import anyio
import httpx
from anyio.abc import TaskStatus

from streamd.runtime import Connected, Job
from streamd.sources.base import Emit, SourceDeps
from streamd.sources.continuity import Continuity
from streamd.sources.http import tls_verify
from streamd.sources.poller import Poller
from streamd.sources.xima.auth import BearerAuth
from streamd.sources.xima.client import XimaClient
from streamd.sources.xima.config import XimaSourceConfig
from streamd.sources.xima.historic import HistoricSpec
from streamd.sources.xima.periods import utc_now
from streamd.sources.xima.realtime import RealtimeCore, RealtimePollSpec
from streamd.sources.xima.webhook import VENDOR, CallsReceiver
from streamd.sources.xima.websocket import RealtimeWebsocket, WebsocketUnavailable

log = logging.getLogger("streamd.sources.xima")


class XimaSource:
    """Runtime of one ``kind: xima`` source."""

    def __init__(
        self,
        cfg: XimaSourceConfig,
        deps: SourceDeps,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cfg = cfg
        self.deps = deps
        self.name = cfg.name
        self.mode = cfg.mode
        self._transport = transport
        self._now = now
        self._poller: Poller[None] | None = None
        self._continuity = Continuity(cfg.name, "xima")
        self._verify: ssl.SSLContext | bool = True

    async def run(self, emit: Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every job until cancelled; ready once each is running, retrying or failed."""
        cfg = self.cfg
        self._verify = tls_verify(cfg, f"xima {cfg.name}")
        async with httpx.AsyncClient(
            base_url=cfg.url,
            auth=BearerAuth(cfg.api_key),
            timeout=cfg.timeout,
            verify=self._verify,
            transport=self._transport,
            headers={"accept": "application/json"},
        ) as http:
            client = XimaClient(http, cfg.name)
            await self.deps.jobs.run(*self.jobs(emit, client), task_status=task_status)

    def jobs(self, emit: Emit, client: XimaClient) -> list[Job]:
        """The realtime job (unless ``metrics: []``), one job per historic report, the calls receiver."""
        cfg = self.cfg
        jobs: list[Job] = []
        if cfg.metrics != []:
            jobs.append(Job("realtime", partial(self._realtime, emit, RealtimeCore(cfg, client))))
        for report in cfg.historic:
            spec = HistoricSpec(report, client, cfg.name, now=self._now)
            # no start-up jitter: exports are scheduled by the period clock (PollResult.next_in)
            poller = Poller(spec, cfg.name, report.every, report.timeout + 5.0, self.deps.cursors, jitter=0.0)
            jobs.append(Job(spec.name, partial(poller.session, emit)))
        if cfg.calls is not None:
            jobs.append(Job("calls", partial(self._calls, CallsReceiver(cfg.name, cfg.calls, emit))))
        return jobs

    async def _calls(self, receiver: CallsReceiver, connected: Connected) -> None:
        """Serve call-finished pushes until stopped (rule 5)."""
        self.deps.webhooks.register(VENDOR, self.name, receiver.handle)
        try:
            connected()
            await anyio.sleep_forever()
        finally:
            self.deps.webhooks.unregister(VENDOR, self.name)

    async def _realtime(self, emit: Emit, core: RealtimeCore, connected: Connected) -> None:
        if self.mode == "websocket":
            ws = RealtimeWebsocket(core, self.cfg.ws_root(), self._verify, self._continuity)
            try:
                await ws.session(emit, connected)
                return
            except WebsocketUnavailable as exc:
                if not self.cfg.websocket_fallback:
                    raise
                log.warning("xima %s: %s; falling back to polling", self.name, exc)
                self.mode = "poll"
        if (gap := self._continuity.gap()) is not None:  # rule 3: before the first poll
            await emit([gap])  # raised: owed again by the next attempt
            self._continuity.gap_sent(gap)
        if self._poller is None:
            self._poller = Poller(RealtimePollSpec(core), self.name, self.cfg.interval, self.cfg.timeout)
        await self._poller.session(emit, connected)

"""The Xima source: realtime values (poll or websocket) and historic exports in one task group.

Rules:

1. ``run`` opens one ``httpx.AsyncClient`` (base URL, Bearer auth, timeout) and one task group with
   one ``run_forever`` per job: the realtime session (unless ``metrics: []``) and one poller per
   historic report. It signals readiness once every job is running or retrying.
2. The realtime job uses the source's component (``/readyz``); each historic report gets its own
   component ``{name}/historic:{key}`` for its logs and gauge (with ``metrics: []`` the first report
   uses the source's component instead).
3. In websocket mode, :class:`~.websocket.WebsocketUnavailable` switches this source to polling for
   the rest of its life when ``websocket_fallback`` is on (logged once); otherwise it is fatal.
4. No retry loops here: sessions raise streamd errors and ``run_forever`` decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial

import anyio
import httpx
from anyio.abc import TaskStatus

from streamd.errors import StreamdError
from streamd.retry import Session, backoff, run_forever
from streamd.sources.base import Emit, SourceDeps
from streamd.sources.poller import Poller
from streamd.sources.xima.auth import BearerAuth
from streamd.sources.xima.client import XimaClient
from streamd.sources.xima.config import XimaSourceConfig
from streamd.sources.xima.historic import HistoricSpec, utc_now
from streamd.sources.xima.realtime import RealtimeCore, RealtimePollSpec
from streamd.sources.xima.websocket import RealtimeWebsocket, WebsocketUnavailable
from streamd.telemetry import Component

log = logging.getLogger("streamd.sources.xima")


@contextmanager
def _unwrap_errors() -> Iterator[None]:
    """Re-raise a task group's streamd error itself, so ``run`` raises what its jobs raised."""
    try:
        yield
    except BaseExceptionGroup as group:
        matched, _ = group.split(StreamdError)
        if matched is None:
            raise
        first: BaseException = matched
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from group


class XimaSource:
    """Runtime of one ``kind: xima`` source."""

    def __init__(
        self,
        cfg: XimaSourceConfig,
        deps: SourceDeps,
        *,
        delays: Callable[[], Iterator[float]] = backoff,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cfg = cfg
        self.deps = deps
        self.name = cfg.name
        self.mode = cfg.mode
        self._delays = delays
        self._transport = transport
        self._now = now
        self._poller: Poller[None] | None = None

    async def run(self, emit: Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every job until cancelled; ``task_status.started()`` once all are running or retrying."""
        cfg = self.cfg
        async with httpx.AsyncClient(
            base_url=cfg.url,
            auth=BearerAuth(cfg.api_key),
            timeout=cfg.timeout,
            verify=cfg.verify_tls,
            transport=self._transport,
            headers={"accept": "application/json"},
        ) as http:
            client = XimaClient(http, cfg.name)
            with _unwrap_errors():
                await self._jobs(emit, client, task_status)

    async def _jobs(self, emit: Emit, client: XimaClient, task_status: TaskStatus[None]) -> None:
        cfg = self.cfg
        async with anyio.create_task_group() as tg:
            if cfg.metrics != []:
                core = RealtimeCore(cfg, client)
                session = partial(self._realtime, emit, core)
                await tg.start(self._forever, session, self.deps.component)
            for i, report in enumerate(cfg.historic):
                spec = HistoricSpec(report, client, cfg.name, now=self._now)
                # no start-up jitter: exports are scheduled by the period clock (PollResult.next_in)
                poller = Poller(
                    spec, cfg.name, report.every, report.timeout + 5.0, self.deps.cursors, jitter=0.0
                )
                own = i == 0 and cfg.metrics == []  # the source's own component when nothing else has it
                component = self.deps.component if own else Component(f"{cfg.name}/{spec.name}")
                await tg.start(self._forever, partial(poller.session, emit), component)
            task_status.started()

    async def _forever(
        self,
        session: Session,
        component: Component,
        *,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        await run_forever(session, component=component, delays=self._delays, task_status=task_status)

    async def _realtime(self, emit: Emit, core: RealtimeCore, connected: Callable[[], None]) -> None:
        if self.mode == "websocket":
            ws = RealtimeWebsocket(core, self.cfg.ws_root())
            try:
                await ws.session(emit, connected)
                return
            except WebsocketUnavailable as exc:
                if not self.cfg.websocket_fallback:
                    raise
                log.warning("xima %s: %s; falling back to polling", self.name, exc)
                self.mode = "poll"
        if self._poller is None:
            self._poller = Poller(RealtimePollSpec(core), self.name, self.cfg.interval, self.cfg.timeout)
        await self._poller.session(emit, connected)

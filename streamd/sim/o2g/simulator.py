"""The simulated O2G server: the world, its faults and its routes, served on loopback.

Rules:

1. :class:`O2GSimulator` is an async context manager: entering starts the HTTP server (and the
   traffic when ``rate > 0``), leaving ends every channel and webhook delivery, then the server.
2. Every answered request is in :attr:`O2GSimulator.requests`
   (:class:`~streamd.sim.script.RequestLog`); every webhook POST's answer in
   :attr:`O2GSimulator.webhook_log`.
3. Sessions past their TTL and chunk subscriptions unread for ``reopen_window`` seconds are
   reaped every 50 ms.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import anyio.abc
import httpx

from streamd.sim.o2g.app import O2GApp
from streamd.sim.o2g.channel import QUIET_CUT
from streamd.sim.o2g.directory import O2GDirectory
from streamd.sim.o2g.faults import O2GFaults
from streamd.sim.o2g.system import O2GSystem
from streamd.sim.script import LoggedRequest, RequestLog
from streamd.sim.server import serving

log = logging.getLogger("streamd.sim.o2g")


class O2GSimulator(O2GFaults):
    """A fake O2G server with realistic agent/call traffic and scriptable faults."""

    def __init__(
        self,
        *,
        agents: int = 10,
        pilots: int = 2,
        nodes: int = 1,
        rate: float = 0.0,
        username: str = "admin",
        password: str = "admin",
        session_ttl: float = 1800.0,
        keepalive_period: float = 60.0,
        webhook_cookie: str = "value",
        events_per_chunk: int = 512,
        stamp: str | None = None,
        deviate: float = 0.0,
        seed: int | None = 0,
        reopen_window: float = 60.0,
        legacy: bool = False,
        scheme: str = "http",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(
            agents=agents,
            pilots=pilots,
            nodes=nodes,
            session_ttl=session_ttl,
            reopen_window=reopen_window,
            stamp=stamp,
            deviate=deviate,
            seed=seed,
        )
        self.username, self.password = username, password
        self.keepalive_period, self.rate = keepalive_period, rate
        self.webhook_cookie = webhook_cookie  # "value": Cookie: <id>; "named": Cookie: subscriptionId=<id>
        self.events_per_chunk = events_per_chunk  # at most this many queued events per HTTP chunk
        self.host, self.port = host, port
        self.server_id = host
        self.legacy = legacy  # older than 2.7.2: pilot monitoring only as /acd/pilotmonitoring/{node}/{pilot}
        self.scheme = scheme  # of the URLs it returns ("https" behind a TLS-terminating proxy)
        self.private_url: str | None = None  # the base of the private URLs it returns (None: as reached)
        self.system = O2GSystem()
        self.directory = O2GDirectory()  # users, agent configs, withdraw reasons (directory.py)
        self.webhook_log: list[tuple[str, int]] = []
        self.prepared: list[dict[str, Any]] = []
        self.closing = False
        self.log = RequestLog(O2GApp(self).starlette())
        self._serving: AbstractAsyncContextManager[str] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._traffic_running = False
        self._http: httpx.AsyncClient | None = None
        self.url = ""

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request answered so far, in order (rule 2)."""
        return self.log.entries

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> O2GSimulator:
        self._http = httpx.AsyncClient(timeout=5.0)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        logging.getLogger("uvicorn.error").addFilter(QUIET_CUT)
        self._serving = serving(self.log, host=self.host, port=self.port)
        self.url = await self._serving.__aenter__()
        self._tg.start_soon(self._reaper)
        if self.rate > 0:
            self.start_traffic()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._tg is not None
        assert self._serving is not None
        assert self._http is not None
        self.closing = True
        for sub in self.all_subs():
            sub.wake.set()
        await self._serving.__aexit__(None, None, None)
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._http.aclose()

    async def serve_forever(self) -> None:
        """Run until cancelled (for ``streamd demo`` / ``streamd simulate``)."""
        async with self:
            log.warning("O2G simulator on %s (user %s / %s)", self.url, self.username, self.password)
            await anyio.sleep_forever()

    def source_config(self, name: str, **fields: Any) -> dict[str, Any]:
        """The ``sources:`` entry (a dict) that streams from this simulator: chunk delivery of the
        demo packages for every user; ``fields`` override or add config fields."""
        return {
            "kind": "o2g",
            "name": name,
            "url": self.url,
            "username": self.username,
            "password": self.password,
            "packages": DEMO_PACKAGES,
            "ids": ["*"],
            "delivery": "chunk",
        } | fields

    def start_soon(self, job: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
        """Run ``job(http)`` in the simulator's task group (a webhook delivery)."""
        assert self._tg is not None
        assert self._http is not None
        http = self._http

        async def run() -> None:
            await job(http)

        self._tg.start_soon(run)

    # -- restarts and switchovers (module :mod:`.system`) ----------------------------------------

    def restart(self) -> None:
        """O2G restarts: a new ``startDate`` and every session lost (it answers at once)."""
        self.system.restart()
        self.expire_sessions()

    def switch_primary(self) -> None:
        """HA switchover: the backup server is the active one now; every session is lost."""
        self.system.ha = True
        self.system.switch_primary()
        self.expire_sessions()

    # -- traffic -------------------------------------------------------------------------

    def start_traffic(self) -> None:
        """Generate ``rate`` events per second from now on (once)."""
        if not self._traffic_running:
            assert self._tg is not None
            self._traffic_running = True
            self._tg.start_soon(self._traffic)

    async def _traffic(self) -> None:
        """Generate ``rate`` events per second, paced by the clock (sleeps overshoot; this does not)."""
        budget, last = 0.0, time.monotonic()
        while True:
            await anyio.sleep(0.001 if self.rate >= 1000 else 0.01 if self.rate >= 100 else 0.1)
            now = time.monotonic()
            budget, last = budget + self.rate * (now - last), now
            if budget >= 1 and not self.down:
                produced = self.generate(int(budget))
                budget -= len(produced)  # a tick may yield a few events more: owed back
            elif self.rate <= 0:
                budget = 0.0

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(0.05)
            self.reap(time.monotonic())


DEMO_PACKAGES = ["telephony", "agent", "pilot"]
"""The packages the simulator generates traffic for."""


@contextlib.asynccontextmanager
async def demo_source(
    agents: int, *, rate: float = 20.0, name: str = "o2g-sim"
) -> AsyncIterator[dict[str, Any]]:
    """Start a simulator and yield the ``sources:`` entry (a dict) that streams from it.

    This is the ``streamd demo`` hook (``DemoSimulator``): ``async with demo_source(20) as cfg``.
    """
    async with O2GSimulator(agents=agents, rate=rate, seed=None) as sim:
        yield sim.source_config(name)


async def serve_forever(
    *, host: str = "127.0.0.1", port: int = 0, agents: int = 20, rate: float = 5.0, **kwargs: Any
) -> None:
    """Run a simulator until cancelled (``python -m streamd.sim.o2g --port 8091``)."""
    await O2GSimulator(host=host, port=port, agents=agents, rate=rate, **kwargs).serve_forever()

"""The Xima simulator: the world, its routes, its faults and its pushes, served on 127.0.0.1.

Rules:

1. Finished calls are queued for the WebService profiles only while there is one; the queue
   holds :data:`OUTBOX_SIZE` calls at most (a target slower than the calls: the newest are not
   requested, counted in :attr:`XimaSimulator.calls_not_sent`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from streamd.sim.server import serving
from streamd.sim.xima.app import XimaApp
from streamd.sim.xima.deviations import Deviator, Served
from streamd.sim.xima.faults import XimaFaults
from streamd.sim.xima.socket import SocketHub
from streamd.sim.xima.webservice import WebServiceProfile, WebServicePusher
from streamd.sim.xima.world import Key, XimaWorld

OUTBOX_SIZE = 1000
"""How many finished calls may wait for the WebService profiles (rule 1)."""


class XimaSimulator:
    """``async with XimaSimulator() as sim:`` serves on ``sim.url`` until the block ends.

    ``sim.world`` is the contact centre, ``sim.faults`` what goes wrong, ``sim.log`` every request
    answered, ``sim.webservice`` the call-finished pushes (``profiles``).
    """

    def __init__(
        self,
        *,
        api_key: str = "sim-key",
        agents: int = 4,
        groups: tuple[str, ...] = ("Sales", "Support"),
        seed: int = 1,
        init_requests: int = 1,
        initializing_status: int = 206,
        reports: tuple[str, ...] = ("LT39K5C5",),
        tick: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        now_ms: Callable[[], int] | None = None,
        deviate: float = 0.0,
        group_state_metrics: bool = False,
        profiles: Sequence[WebServiceProfile] = (),
    ) -> None:
        self.api_key = api_key
        self.deviator = Deviator(deviate, seed)
        self.world = XimaWorld(
            agents=agents, groups=groups, seed=seed, now_ms=now_ms, group_state_metrics=group_state_metrics
        )
        self.faults = XimaFaults()
        self.hub = SocketHub(self.world, self.faults, self.deviator, lambda: self.api_key)
        self.app = XimaApp(
            self.world,
            self.faults,
            self.deviator,
            self.hub,
            key=lambda: self.api_key,
            init_requests=init_requests,
            initializing_status=initializing_status,
            reports=set(reports),
        )
        self.log = self.app.asgi()
        self.webservice = WebServicePusher()
        self.webservice.profiles.extend(profiles)
        self.tick = tick
        self.host, self.port = host, port
        self.url = ""
        self.ws_url = ""
        self._stack: AsyncExitStack | None = None
        self._tasks = anyio.CancelScope()
        self.calls_not_sent = 0
        """Finished calls never requested: the profiles' queue was full (rule 1)."""
        self._outbox: MemoryObjectSendStream[dict[str, str]] | None = None

    @property
    def served(self) -> list[Served]:
        """What was served while ``deviate`` is on (:mod:`.deviations`)."""
        return self.deviator.served

    @property
    def historic_calls(self) -> list[tuple[str, str, str]]:
        """``(report key, start, end)`` of every report run."""
        return self.app.historic_calls

    @property
    def subscribed(self) -> bool:
        """Whether a websocket subscription is open."""
        return self.hub.subscribed

    def step(self, n: int = 1) -> list[Key]:
        """Advance the world ``n`` times; push the changes to the sockets and the finished calls to
        the WebService profiles (in order); returns the keys that changed."""
        before = self.world.finished_calls
        changed = self.world.step(n)
        self.hub.push(changed)
        new = self.world.finished_calls - before
        if self._outbox is not None and self.webservice.profiles and new:  # served, and a profile
            calls = list(self.world.calls)[-new:]
            self.calls_not_sent += new - len(calls)  # more than the world keeps in one step
            for call in calls:
                try:
                    self._outbox.send_nowait(call)
                except anyio.WouldBlock:
                    self.calls_not_sent += 1
        return changed

    @property
    def calls_waiting(self) -> int:
        """Finished calls queued for the WebService profiles, not requested yet (rule 1)."""
        return 0 if self._outbox is None else self._outbox.statistics().current_buffer_used

    def push(self, keys: Sequence[Key]) -> None:
        """Send the current values of ``keys`` to the subscribed sockets (after a test set them)."""
        self.hub.push(keys)

    async def __aenter__(self) -> XimaSimulator:
        async with AsyncExitStack() as stack:
            self.url = await stack.enter_async_context(
                serving(
                    self.log, host=self.host, port=self.port, ws=self.hub.protocol(), ws_ping_interval=None
                )
            )
            self.ws_url = "ws" + self.url.removeprefix("http")
            stack.push_async_callback(self.webservice.aclose)
            self._outbox, calls = anyio.create_memory_object_stream[dict[str, str]](OUTBOX_SIZE)
            stack.enter_context(self._outbox)
            stack.enter_context(calls)
            tg = await stack.enter_async_context(anyio.create_task_group())
            self._tasks = tg.cancel_scope
            tg.start_soon(self._post_calls, calls)
            if self.tick:
                tg.start_soon(self._ticker, self.tick)
            self._stack = stack.pop_all()
        return self

    async def _post_calls(self, calls: MemoryObjectReceiveStream[dict[str, str]]) -> None:
        async for call in calls:
            await self.webservice.send(call)

    async def _ticker(self, every: float) -> None:
        while True:
            await anyio.sleep(every)
            self.step()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._stack is not None
        self.hub.close_all()
        self._tasks.cancel()
        await self._stack.__aexit__(exc_type, exc, tb)


async def serve_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    agents: int = 8,
    tick: float = 1.0,
    api_key: str = "sim-key",
    deviate: float = 0.0,
    profiles: Sequence[WebServiceProfile] = (),
    group_state_metrics: bool = False,
    started: Callable[[XimaSimulator], None] | None = None,
) -> None:
    """Run a simulator with changing data until cancelled (``python -m streamd.sim.xima``).

    Args:
        host: interface to bind.
        port: TCP port (0 = ephemeral; read it from the ``started`` callback's ``sim.url``).
        agents: number of simulated agents.
        tick: seconds between data changes.
        api_key: the key the simulator accepts.
        deviate: the share of served entries and rows that deviate from the document.
        profiles: WebService Integration profiles (a request per finished call).
        group_state_metrics: add one agent-group metric per group.
        started: called with the running simulator (e.g. to print its URL).
    """
    async with XimaSimulator(
        host=host,
        port=port,
        agents=agents,
        tick=tick,
        api_key=api_key,
        deviate=deviate,
        profiles=profiles,
        group_state_metrics=group_state_metrics,
    ) as sim:
        if started is not None:
            started(sim)
        await anyio.sleep_forever()


@asynccontextmanager
async def demo_source(agents: int, name: str = "cr1") -> AsyncIterator[dict[str, Any]]:
    """``streamd demo``: start a ticking simulator; yield the ``kind: xima`` source config for it.

    The source subscribes by websocket (falling back to polling), maps the simulator's agent-state
    metric to canonical ``AgentState`` (with the agents' queues from the agent-group metrics) and
    exports the 15-minute historic report.
    """
    async with XimaSimulator(agents=agents, tick=1.0, group_state_metrics=True) as sim:
        yield {
            "kind": "xima",
            "name": name,
            "url": sim.url,
            "api_key": sim.api_key,
            "mode": "websocket",
            "interval": "2s",
            "timeout": "1500ms",
            "metrics": "all",
            "refresh_every": "1m",
            "agent_state_metrics": ["K0STATE1"],
            "agent_group_metrics": dict(sim.world.group_states),
            "historic": [{"key": "LT39K5C5", "every": "15m", "lag": "0s"}],
        }

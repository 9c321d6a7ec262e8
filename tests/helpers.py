"""Test doubles and waits shared by every vendor's source tests (no broker, no daemon).

Rules: everything here is deterministic and fast — clocks only move when a test (or a fake sleep)
moves them, waits poll with a hard ``fail_after`` limit, and a running source is always cancelled
when its block ends (task groups live in async context managers the test enters, never in fixtures).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.errors import PublishError
from streamd.events import Event
from streamd.publish.memory import MemoryEmit
from streamd.retry import backoff
from streamd.runtime import Jobs
from streamd.sources.base import CursorStore, Source, SourceDeps, WebhookHandler, WebhookRegistry

T = TypeVar("T")


class MemoryCursors:
    """A tiny in-memory CursorStore (the daemon's is SQLite-backed; same protocol)."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], str] = {}

    def load(self, source: str, name: str) -> str | None:
        return self.saved.get((source, name))

    def save(self, source: str, name: str, value: str) -> None:
        self.saved[(source, name)] = value


class MemoryWebhooks:
    """A WebhookRegistry that only records the handlers; ``app()`` serves them on
    ``/webhooks/{vendor}/{source}`` (GET and POST: the handler itself decides what it accepts)."""

    def __init__(self) -> None:
        self.handlers: dict[tuple[str, str], WebhookHandler] = {}

    def register(self, vendor: str, source: str, handler: WebhookHandler) -> None:
        self.handlers[(vendor, source)] = handler

    def unregister(self, vendor: str, source: str) -> None:
        self.handlers.pop((vendor, source), None)

    def app(self) -> Starlette:
        """A Starlette app routing to the registered handlers (404 when none)."""

        async def route(request: Request) -> Response:
            handler = self.handlers.get((request.path_params["vendor"], request.path_params["source"]))
            return Response(status_code=404) if handler is None else await handler(request)

        return Starlette(routes=[Route("/webhooks/{vendor}/{source}", route, methods=["GET", "POST"])])


def source_deps(
    name: str,
    *,
    cursors: CursorStore | None = None,
    webhooks: WebhookRegistry | None = None,
    delays: Callable[[], Iterator[float]] = backoff,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    failed_retry: float | None = None,
) -> SourceDeps:
    """``SourceDeps`` for a source named ``name`` with in-memory cursors and webhooks.

    Its jobs are standalone: a fatal error is raised from ``run`` (unless ``failed_retry``), and
    retries wait ``delays`` with ``sleep``.
    """
    return SourceDeps(
        jobs=Jobs.standalone(name, delays=delays, sleep=sleep, failed_retry=failed_retry),
        cursors=cursors if cursors is not None else MemoryCursors(),
        webhooks=webhooks if webhooks is not None else MemoryWebhooks(),
    )


class Clock(Generic[T]):
    """A clock that returns ``now`` until the test moves it (any type: float, int ms, datetime)."""

    def __init__(self, now: T) -> None:
        self.now = now

    def __call__(self) -> T:
        return self.now


class SleepingClock(Clock[float]):
    """A float clock whose ``sleep`` records the delay and moves ``now`` instead of waiting.

    ``pause`` (seconds of real time, or None) lets other tasks and a loopback server run on each sleep.
    """

    def __init__(self, now: float, *, pause: float | None = None) -> None:
        super().__init__(now)
        self.pause = pause
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        if self.pause is not None:
            await anyio.sleep(self.pause)


async def no_sleep(_: float) -> None:
    """A ``sleep`` that only yields to the event loop."""
    await anyio.sleep(0)


@asynccontextmanager
async def running(
    source: Source, emit: MemoryEmit, *, start_timeout: float | None = None
) -> AsyncIterator[None]:
    """Run ``source`` for the duration of the block: started (ready), then cancelled.

    ``start_timeout`` bounds how long the source may take to signal readiness.
    """
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(start_timeout):
            await tg.start(source.run, emit)
        yield
        tg.cancel_scope.cancel()


async def until(condition: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005) -> None:
    """Wait until ``condition()`` is truthy (checked every ``interval``; fails after ``timeout``)."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(interval)


class GatedEmit(MemoryEmit):
    """Durable ``emit(...)`` (snapshots, REST baselines) passes; ``push`` waits for ``gate``:
    a pipeline that is backed up."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.waiting = 0

    async def push(self, events: Sequence[Event]) -> None:
        self.waiting += 1
        await self.gate.wait()
        await super().push(events)


class FirstGapFails(MemoryEmit):
    """The first emit that carries a Gap raises, as a pipeline that cannot make it durable."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = 0

    async def __call__(self, events: Sequence[Event]) -> None:
        if not self.failed and any(e.type == "streamd.source.Gap" for e in events):
            self.failed += 1
            raise PublishError("the spool is full")
        await super().__call__(events)

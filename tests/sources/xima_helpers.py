"""Shared helpers for the Xima source tests (the source runs against the simulator on 127.0.0.1)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, cast

import anyio

from streamd.config_core import KafkaConfig
from streamd.events import Event
from streamd.publish.memory import MemoryEmit
from streamd.sim.xima import XimaSimulator
from streamd.sources.base import CursorStore, SourceDeps, WebhookRegistry
from streamd.sources.xima.config import XimaSourceConfig
from streamd.sources.xima.models import METRIC_VALUE_TYPE
from streamd.sources.xima.source import XimaSource
from streamd.telemetry import Component


class MemoryCursors:
    """A tiny in-memory CursorStore (the daemon's is SQLite-backed; same protocol)."""

    def __init__(self) -> None:
        self.saved: dict[tuple[str, str], str] = {}

    def load(self, source: str, name: str) -> str | None:
        return self.saved.get((source, name))

    def save(self, source: str, name: str, value: str) -> None:
        self.saved[(source, name)] = value


def make_source(
    sim: XimaSimulator,
    *,
    cursors: CursorStore | None = None,
    now: Callable[[], datetime] | None = None,
    delays: Callable[[], Iterator[float]] = lambda: itertools.repeat(0.0),
    **cfg: Any,
) -> XimaSource:
    """A source for ``sim`` with test-friendly timings (override any config field)."""
    fields: dict[str, Any] = {
        "kind": "xima",
        "name": "cr1",
        "url": sim.url,
        "api_key": sim.api_key,
        "interval": 0.2,
        "timeout": 2,
        "initializing_retry": 0.01,
        "ping_interval": 0.05,
        "ping_timeout": 0.2,
    }
    fields.update(cfg)
    config = XimaSourceConfig.model_validate(fields)
    deps = SourceDeps(
        component=Component("cr1"),
        cursors=cursors or MemoryCursors(),
        webhooks=cast(WebhookRegistry, None),
        kafka=KafkaConfig(),
        topic_prefix="streamd.",
    )
    extra: dict[str, Any] = {"now": now} if now is not None else {}
    return XimaSource(config, deps, delays=delays, **extra)


@asynccontextmanager
async def running(source: XimaSource, emit: MemoryEmit) -> AsyncIterator[None]:
    """Run ``source`` for the duration of the block (started, then cancelled)."""
    async with anyio.create_task_group() as tg:
        await tg.start(source.run, emit)
        yield
        tg.cancel_scope.cancel()


def values(emit: MemoryEmit) -> list[Event]:
    """The realtime metric value events emitted so far."""
    return emit.of_type(METRIC_VALUE_TYPE)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (polls every few ms; fails after ``timeout``)."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.005)

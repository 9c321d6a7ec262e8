"""Shared helpers for the O2G source tests (the source runs against the simulator on 127.0.0.1)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from streamd.publish.memory import MemoryEmit
from streamd.sim.o2g import O2GSimulator
from streamd.sources.o2g.config import O2GSourceConfig
from streamd.sources.o2g.source import O2GSource
from tests import helpers
from tests.helpers import source_deps


def call(ref: str, pilot: str = "60141", caller: str = "600") -> dict[str, Any]:
    """An ``OnPilotCallCreated`` event as the simulator publishes it."""
    return {
        "eventName": "OnPilotCallCreated",
        "pilot": pilot,
        "caller": caller,
        "callRef": ref,
        "cause": "NEW_CALL",
    }


def call_refs(emit: MemoryEmit) -> list[str]:
    """The ``callRef`` of every ``OnPilotCallCreated`` emitted so far, in order."""
    return [e.data["callRef"] for e in emit.of_type("o2g.pilot.OnPilotCallCreated")]


async def until(predicate: Callable[[], Any], timeout: float = 1.5) -> None:
    """Wait until ``predicate()`` holds (O2G's loopback tests are quick: 1.5 s by default)."""
    await helpers.until(predicate, timeout, interval=0.01)


async def subscribed(sim: O2GSimulator, pilot: str = "60141") -> None:
    """Wait until ``sim`` has a subscription and ``pilot`` is monitored: only then do its pilot
    events exist (004 L14343-14360; the simulator drops those of pilots nobody monitors)."""
    await until(lambda: bool(sim.subscriptions()) and pilot in sim.monitored_pilots)


def make_source(sim: O2GSimulator, *, delay: float = 0.0, **overrides: Any) -> O2GSource:
    """An O2G source on ``sim`` (retries wait ``delay`` seconds); ``overrides`` are config fields."""
    fields: dict[str, Any] = {
        "name": "pbx1",
        "url": sim.url,
        "username": sim.username,
        "password": sim.password,
        "packages": ["agent", "pilot", "telephony"],
        "idle_timeout": 1.0,
        "request_timeout": 2.0,
    }
    fields.update(overrides)
    config = O2GSourceConfig.model_validate(fields)
    return O2GSource(config, source_deps("pbx1", delays=lambda: itertools.repeat(delay)))


def running(source: O2GSource, emit: MemoryEmit) -> AbstractAsyncContextManager[None]:
    """Run ``source`` for the block; it must be ready (snapshot done) within 2 s."""
    return helpers.running(source, emit, start_timeout=2)


async def publish_and_expect(
    sim: O2GSimulator, emit: MemoryEmit, refs: list[str], pilot: str = "60141"
) -> None:
    """Publish a pilot call per ref once ``pilot`` is monitored; wait until all were emitted."""
    await subscribed(sim, pilot)
    sim.publish(*(call(r, pilot) for r in refs))
    await until(lambda: set(refs) <= set(call_refs(emit)))


async def resubscribed_after(sim: O2GSimulator, lose: Callable[[], None]) -> None:
    """Call ``lose()`` (it ends the current subscription) and wait until another one is active."""
    first = sim.subscriptions()
    lose()
    await until(lambda: bool(sim.subscriptions()) and sim.subscriptions() != first)


def logins(sim: O2GSimulator) -> int:
    """Successful logins so far."""
    return sum(1 for r in sim.requests if r.path == "/api/rest/authenticate" and r.status == 200)

"""Shared helpers for the O2G source tests (the source runs against the simulator on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from streamd.publish.memory import MemoryEmit
from tests import helpers


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

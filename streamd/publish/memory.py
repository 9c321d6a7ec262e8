"""An in-memory :class:`~streamd.sources.base.Emit`: collects events instead of sending them.

Used by source tests that check what a source emits without a broker, and by ``--dry-run``.
It is a real implementation of the protocol: ``__call__`` returns once the events are stored.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from streamd.events import Event


class MemoryEmit:
    """Collects every emitted event in order; ``wait_for(n)`` waits until ``n`` have arrived."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = anyio.Event()

    async def __call__(self, events: Sequence[Event]) -> None:
        """Store the events (durable for this purpose)."""
        self._store(events)

    async def push(self, events: Sequence[Event]) -> None:
        """Store the events."""
        self._store(events)

    def _store(self, events: Sequence[Event]) -> None:
        self.events.extend(events)
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, count: int, *, timeout: float = 5.0) -> list[Event]:  # noqa: ASYNC109
        """Wait until at least ``count`` events were emitted; return them all."""
        with anyio.fail_after(timeout):
            while len(self.events) < count:
                await self._changed.wait()
        return list(self.events)

    def of_type(self, ce_type: str) -> list[Event]:
        """The events whose ``type`` equals ``ce_type``."""
        return [e for e in self.events if e.type == ce_type]

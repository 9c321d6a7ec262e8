"""Components started and stopped one at a time (the cluster hands units to a replica and takes
them back; see docs/architecture.md "Several replicas").

Rules:

1. :meth:`Switchboard.start` returns at once: the component runs as a task of the switchboard's
   task group, in a cancel scope of its own. A start is never awaited for readiness, so a
   rebalance is never held up by a vendor that is slow to answer.
2. :meth:`Switchboard.stop` cancels that scope and waits until the component has finished its
   clean-up (an O2G unsubscribe, shielded and bounded by the source itself). A component stopped
   before its task began is cancelled at its first await (its clean-up still runs).
3. What a component raises besides cancellation is not caught here: its supervisor already turned
   expected failures into states, so anything else is a bug and reaches the root task group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

Run = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class _Running:
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


class Switchboard:
    """Runs named components in ``tg`` and stops them individually (module rules)."""

    def __init__(self, tg: TaskGroup) -> None:
        self._tg = tg
        self._running: dict[str, _Running] = {}

    @property
    def running(self) -> frozenset[str]:
        """Names of the components started and not stopped."""
        return frozenset(self._running)

    def start(self, name: str, run: Run) -> None:
        """Run ``run()`` as component ``name`` until :meth:`stop` (rule 1).

        Raises:
            ValueError: ``name`` is already running.
        """
        if name in self._running:
            raise ValueError(f"{name} is already running")
        entry = self._running[name] = _Running()
        self._tg.start_soon(self._run, entry, run, name=f"component {name}")

    async def stop(self, name: str) -> None:
        """Cancel component ``name`` and wait for its clean-up (rule 2); nothing if not running."""
        entry = self._running.pop(name, None)
        if entry is None:
            return
        entry.scope.cancel()
        with anyio.CancelScope(shield=True):
            await entry.done.wait()

    async def stop_all(self) -> None:
        """Stop every running component, concurrently."""
        async with anyio.create_task_group() as tg:
            for name in list(self._running):
                tg.start_soon(self.stop, name)

    @staticmethod
    async def _run(entry: _Running, run: Run) -> None:
        try:
            with entry.scope:
                await run()
        finally:
            entry.done.set()

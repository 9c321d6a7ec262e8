"""Stop signals: SIGTERM, SIGINT and SIGHUP stop the daemon cleanly, from its first instruction on.

Rules:

1. SIGTERM, SIGINT and SIGHUP all ask for the same clean stop (SIGHUP does not reload the config:
   a restart reads it; the default action of SIGHUP would end the process at once, without
   unsubscribing from the vendors). The first one asks for the ordered stop within
   ``shutdown_grace``; every later one asks to hurry (the daemon cuts the grace short).
2. ``streamd run`` enters :func:`catch_early_signals` before it loads the config: a stop signal
   that arrives before the event loop watches signals is kept (not the default action, exit 143)
   and handed to :func:`watch_signals` first; one that arrives after the loop stopped watching
   (the last steps of the exit) is kept and ignored. Leaving the block restores the previous
   handlers.
3. :func:`watch_signals` calls ``on_signal(signum)`` for each signal, in the order received.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import anyio
from anyio.abc import TaskStatus

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""The signals that stop streamd (rule 1)."""

_early: list[int] = []  # signals kept by catch_early_signals, not yet handed to watch_signals
_catching: list[bool] = []  # non-empty inside catch_early_signals


def _keep(signum: int, _: FrameType | None) -> None:
    _early.append(signum)


@contextmanager
def catch_early_signals() -> Iterator[list[int]]:
    """Keep the stop signals that arrive while :func:`watch_signals` does not run (rule 2).

    Yields:
        The signals kept so far and not yet handed over (``streamd run`` checks it before it starts
        the event loop: a stop requested while the config loads means "do not start").
    """
    previous = {s: signal.signal(s, _keep) for s in STOP_SIGNALS}
    _catching.append(True)
    try:
        yield _early
    finally:
        _catching.pop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        _early.clear()


async def watch_signals(
    on_signal: Callable[[int], None], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Call ``on_signal(signum)`` for every stop signal until cancelled, those kept early first.

    Ready (``task_status``) once the event loop's handlers are installed: from then on no stop
    signal has its default action.
    """
    try:
        with anyio.open_signal_receiver(*STOP_SIGNALS) as received:
            task_status.started()
            while _early:
                on_signal(_early.pop(0))
            async for signum in received:
                on_signal(signum)
    finally:  # the loop's handlers are gone (the default actions are back): keep signals again
        if _catching:
            for s in STOP_SIGNALS:
                signal.signal(s, _keep)

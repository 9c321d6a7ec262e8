"""Retry policy: the one place that decides how long to wait, and the one loop that owns "forever".

Rules (STYLE 4):

1. :func:`backoff` yields delays with full jitter, geometric growth and a cap.
2. :func:`classify` maps an exception to :class:`Retry`, :class:`Wait` (server-given delay)
   or :class:`Fatal`. Sources never decide this themselves.
3. :func:`run_forever` runs a *session* again and again; the backoff resets after a session
   that called ``connected()``. It logs the first failure at WARNING, retries at DEBUG and the
   recovery at INFO. A fatal error propagates (the daemon stops with one clear line).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC

import anyio
from anyio.abc import TaskStatus

from streamd.errors import BackOff, FatalError, PublishError, SourceError, StreamdError
from streamd.telemetry import Component, ComponentState, count_error

log = logging.getLogger("streamd.retry")


def backoff(
    initial: float = 0.5,
    factor: float = 2.0,
    cap: float = 60.0,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Endless delays with full jitter: ``uniform(0, min(cap, initial * factor**n))``."""
    ceiling = initial
    while True:
        yield rng() * ceiling
        ceiling = min(cap, ceiling * factor)


@dataclass(frozen=True, slots=True)
class Retry:
    """Retry after the next backoff delay."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Retry after exactly ``seconds`` (the server said so)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Fatal:
    """Do not retry."""


Decision = Retry | Wait | Fatal


def classify(exc: BaseException) -> Decision:
    """Decide what to do about a failed session."""
    if isinstance(exc, BackOff):
        return Wait(max(0.0, exc.delay))
    if isinstance(exc, FatalError):
        return Fatal()
    if isinstance(exc, SourceError | PublishError | OSError | TimeoutError):
        return Retry()  # PublishError: Kafka and the spool refused; a poller's cursor has not moved
    return Fatal()


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


Session = Callable[[Callable[[], None]], Awaitable[None]]


async def run_forever(
    session: Session,
    *,
    component: Component,
    decide: Callable[[BaseException], Decision] = classify,
    delays: Callable[[], Iterator[float]] = backoff,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``session(connected)`` until cancelled, reconnecting per :func:`classify`.

    ``connected()`` marks the session healthy: the first call signals readiness, each call
    resets the backoff and logs the recovery once.

    Raises:
        FatalError: when a session fails in a way retrying cannot fix.
    """
    started = False
    healthy = False
    waits = delays()

    def connected() -> None:
        nonlocal started, healthy, waits
        healthy = True
        waits = delays()
        component.set(ComponentState.RUNNING)
        if not started:
            started = True
            task_status.started()

    while True:
        healthy = False
        try:
            await session(connected)
            exc: BaseException = SourceError("session ended")
        except (StreamdError, OSError, TimeoutError) as e:  # PublishError is a StreamdError
            exc = e
        except BaseExceptionGroup as group:  # a session running tasks of its own
            exc = leading_error(group)
        decision = decide(exc)
        if isinstance(decision, Fatal):
            component.set(ComponentState.FAILED, _describe(exc))
            if not isinstance(exc, FatalError):
                raise FatalError(_describe(exc)) from exc
            raise exc
        count_error(component.name, "session", type(exc).__name__)
        delay = decision.seconds if isinstance(decision, Wait) else next(waits)
        if component.state is not ComponentState.RETRYING:
            component.set(ComponentState.RETRYING, _describe(exc))
        log.debug("%s: retrying in %.2fs after %s", component.name, delay, _describe(exc))
        if not started and not healthy:
            # Readiness means "running or retrying": a source that is retrying is not blocking.
            started = True
            task_status.started()
        await sleep(delay)


def leading_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a failed task group stands for: a fatal one first, else the first expected one.

    Raises:
        BaseExceptionGroup: the group itself when it holds anything unexpected (a bug) or a
            cancellation, so that it reaches the root task group unchanged.
    """
    leaves: list[BaseException] = []

    def flatten(g: BaseExceptionGroup[BaseException]) -> None:
        for e in g.exceptions:
            flatten(e) if isinstance(e, BaseExceptionGroup) else leaves.append(e)

    flatten(group)
    if not all(isinstance(e, StreamdError | OSError | TimeoutError) for e in leaves):
        raise group
    fatal = [e for e in leaves if isinstance(classify(e), Fatal)]
    return (fatal or leaves)[0]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]

"""Retry policy: the one place that decides how long to wait.

Rules:

1. :func:`backoff` yields delays with full jitter, geometric growth and a cap.
2. :func:`classify` maps an exception to :class:`Retry`, :class:`Wait` (server-given delay)
   or :class:`Fatal`. Sources never decide this themselves.
3. The loop that applies them is the supervisor's (:func:`streamd.runtime.run_job`): sessions
   are retried there, never in a source.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC

from streamd.errors import BackOff, FatalError, PublishError, SourceError


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

"""Start-up steps that must succeed before anything else runs (the Kafka producer, the Schema
Registry): :func:`retry_until` retries them until their deadline, then fails with one clear line."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from streamd.errors import FatalError
from streamd.logs import folded
from streamd.retry import Fatal, backoff, classify
from streamd.runtime.failures import EXPECTED, describe
from streamd.runtime.job import Delays

log = logging.getLogger("streamd.runtime")

T = TypeVar("T")


async def retry_until(
    attempt: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    setting: str | None = None,
    quiet: Sequence[str] = (),
    delays: Delays = backoff,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = anyio.current_time,
) -> T:
    """Call ``attempt`` until it returns, retrying expected errors for ``within`` seconds.

    Rules:

    1. Waits follow ``delays``, the last one cut short at the deadline, where one last attempt is
       made: the whole ``within`` is used, never more waiting than it.
    2. While it retries, what the libraries named in ``quiet`` log is folded into this function's
       own lines (:func:`streamd.logs.folded`): the give-up line quotes their last line, and a
       success after failed attempts logs one line saying how long it took.

    Raises:
        FatalError: ``"{what} unreachable: gave up after {waited}s ({setting}: {within}s, N attempts):
            {last error}"`` with the time really waited, once an attempt at the deadline failed;
            a fatal error of ``attempt`` at once.
    """
    started = clock()
    deadline = started + within
    waits = delays()
    attempts = 0
    with folded(*quiet) as noise:
        while True:
            attempts += 1
            try:
                result = await attempt()
            except EXPECTED as exc:
                if isinstance(classify(exc), Fatal):
                    raise
                remaining = deadline - clock()
                if remaining <= 0:
                    limit = f"{setting or 'within'}: {within:g}s, {attempts} attempts"
                    library = noise.summary("/".join(quiet))
                    raise FatalError(
                        f"{what} unreachable: gave up after {clock() - started:.1f}s ({limit}): "
                        f"{describe(exc)}{f' ({library})' if library else ''}"
                    ) from None
                delay = min(next(waits), remaining)
                log.debug("%s not reachable yet (%s); retrying in %.1fs", what, describe(exc), delay)
                await sleep(delay)
            else:
                if attempts > 1:
                    log.info("%s reachable after %.1fs (%d attempts)", what, clock() - started, attempts)
                return result

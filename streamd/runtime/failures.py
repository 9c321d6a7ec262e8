"""The one place that looks inside exception groups (an error reaches exactly one place).

Rules:

1. A task group that fails raises an ``ExceptionGroup``. :func:`leading_error` turns it into the
   one error it stands for: a fatal one first, else the first expected one (a streamd error, an
   ``OSError`` or a ``TimeoutError``), so whoever retries can classify it like any other error.
2. A group that holds anything unexpected (a bug) is raised unchanged: its traceback must show.
3. Code that runs tasks of its own uses :func:`task_group` and sees plain exceptions; nothing
   else in streamd catches ``ExceptionGroup``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from streamd.errors import FatalError, StreamdError

EXPECTED: tuple[type[BaseException], ...] = (StreamdError, OSError, TimeoutError)
"""What a session may fail with and be retried for; anything else is a bug and propagates."""


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """Every exception inside ``group`` (nested groups flattened), in order."""
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def leading_error(
    group: BaseExceptionGroup[BaseException], expected: tuple[type[BaseException], ...] = EXPECTED
) -> BaseException:
    """The error a failed task group stands for: a fatal one first, else the first expected one.

    Args:
        group: what the task group raised.
        expected: the exceptions that may be picked (the default: streamd, OS and timeout errors).

    Raises:
        BaseExceptionGroup: the group itself when it holds anything unexpected (a bug) or a
            cancellation, so that it reaches the root task group unchanged.
    """
    found = leaves(group)
    if not found or not all(isinstance(e, expected) for e in found):
        raise group
    return next((e for e in found if isinstance(e, FatalError)), found[0])


@asynccontextmanager
async def task_group(expected: tuple[type[BaseException], ...] = EXPECTED) -> AsyncIterator[TaskGroup]:
    """An anyio task group whose failure surfaces as the leading error itself, not as a group.

    The first task to fail cancels the others (anyio's rule); the error raised is the one
    :func:`leading_error` picks, so callers catch streamd errors as if there were one task.

    Args:
        expected: what may surface unwrapped (a module's own control-flow exception, too).

    Raises:
        BaseExceptionGroup: when a task failed with something unexpected (a bug).
    """
    try:
        async with anyio.create_task_group() as tg:
            yield tg
    except BaseExceptionGroup as group:
        raise leading_error(group, expected) from None


def describe(exc: BaseException) -> str:
    """One line (at most 300 characters) saying what went wrong, for health details and logs."""
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


def error_type(exc: BaseException) -> str:
    """The bounded ``error_type`` metric label of ``exc``: its own, else its class name."""
    own = getattr(exc, "error_type", None)
    return own if isinstance(own, str) else type(exc).__name__

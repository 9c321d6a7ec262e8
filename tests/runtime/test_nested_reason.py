"""A job's reason names its own failure, also when a nested job had it retrying before
(streamd/runtime rule 6: nested jobs report through their parent's health)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial

import anyio
import pytest

from streamd.errors import TransientError
from streamd.runtime import Job, Jobs, Policy, run_job, task_group
from streamd.telemetry import Component, ComponentState

pytestmark = pytest.mark.anyio


async def test_a_job_retrying_because_of_a_nested_job_names_its_own_failure_when_it_fails() -> None:
    component = Component("pbx")
    nested_failed = anyio.Event()
    retried = anyio.Event()
    attempts = 0

    async def held(seconds: float) -> None:
        """The nested job's wait before its next attempt: it never ends."""
        nested_failed.set()
        await anyio.sleep_forever()

    async def channel(connected: Callable[[], None]) -> None:
        raise TransientError("channel closed")

    async def session(connected: Callable[[], None]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:
            retried.set()
            await anyio.sleep_forever()
        connected()
        async with task_group() as tg:
            tg.start_soon(partial(run_job, Job("channel", channel), policy=Policy(sleep=held)))
            await nested_failed.wait()
            assert (component.state, component.detail) == (ComponentState.RETRYING, "channel closed")
            raise TransientError("session expired")

    async def no_wait(seconds: float) -> None:
        await anyio.sleep(0)

    policy = Policy(delays=lambda: itertools.repeat(0.0), sleep=no_wait)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(Jobs(component, policy).run, Job("session", session)))
        with anyio.fail_after(5):
            await retried.wait()
        state = (component.state, component.detail)
        tg.cancel_scope.cancel()
    assert state == (ComponentState.RETRYING, "session expired")

"""retry.py: backoff, classify, Retry-After parsing and run_forever, with injected delays."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import anyio
import pytest

from streamd.errors import (
    AuthError,
    BackOff,
    FatalError,
    NormalizationError,
    PublishError,
    TransientError,
    VendorProtocolError,
)
from streamd.retry import Fatal, Retry, Wait, backoff, classify, parse_retry_after, run_forever
from streamd.telemetry import Component, ComponentState


def test_backoff_full_jitter_grows_to_cap() -> None:
    delays = list(itertools.islice(backoff(initial=1, factor=2, cap=5, rng=lambda: 1.0), 6))
    assert delays == [1, 2, 4, 5, 5, 5]
    assert list(itertools.islice(backoff(rng=lambda: 0.0), 3)) == [0, 0, 0]


@pytest.mark.parametrize(
    ("exc", "decision"),
    [
        (TransientError("x"), Retry()),
        (VendorProtocolError("x"), Retry()),
        (OSError("reset"), Retry()),
        (TimeoutError(), Retry()),
        (BackOff("429", 7.5), Wait(7.5)),
        (BackOff("429", -1), Wait(0.0)),
        (AuthError("401"), Fatal()),
        (FatalError("400"), Fatal()),
        (NormalizationError("x"), Fatal()),
        (PublishError("spool full"), Retry()),
        (ValueError("bug"), Fatal()),
    ],
)
def test_classify(exc: BaseException, decision: object) -> None:
    assert classify(exc) == decision


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=lambda: now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=lambda: now) == 0.0


def _session(script: list[BaseException | None], calls: list[int]) -> Callable[..., object]:
    async def session(connected: Callable[[], None]) -> None:
        calls.append(1)
        step = script.pop(0)
        if step is None:
            connected()
            await anyio.sleep_forever()
        connected() if isinstance(step, VendorProtocolError) else None
        raise step

    return session


@pytest.mark.anyio
async def test_run_forever_retries_then_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    slept: list[float] = []
    component = Component("src")

    async def sleep(d: float) -> None:
        slept.append(d)

    script: list[BaseException | None] = [TransientError("down"), BackOff("429", 3), None]
    caplog.set_level(logging.DEBUG)
    async with anyio.create_task_group() as tg:
        await tg.start(
            lambda task_status: run_forever(
                _session(script, calls),  # type: ignore[arg-type]
                component=component,
                delays=lambda: itertools.repeat(0.25),
                sleep=sleep,
                task_status=task_status,
            )
        )
        while component.state is not ComponentState.RUNNING:
            await anyio.sleep(0)
        tg.cancel_scope.cancel()
    assert len(calls) == 3
    assert slept == [0.25, 3]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the first failure only: one line per transition
    assert any("retrying -> running" in r.getMessage() for r in caplog.records)


@pytest.mark.anyio
async def test_run_forever_fatal_propagates_and_marks_failed() -> None:
    component = Component("src")
    with pytest.raises(AuthError):
        await run_forever(
            _session([AuthError("bad credentials")], []),  # type: ignore[arg-type]
            component=component,
            delays=lambda: itertools.repeat(0),
        )
    assert component.state is ComponentState.FAILED
    assert "bad credentials" in component.detail


@pytest.mark.anyio
async def test_run_forever_wraps_unexpected_library_error_as_fatal() -> None:
    with pytest.raises(FatalError, match="boom"):
        await run_forever(
            _session([NormalizationError("boom")], []),  # type: ignore[arg-type]
            component=Component("src"),
            delays=lambda: itertools.repeat(0),
        )


@pytest.mark.anyio
async def test_backoff_resets_after_a_healthy_session() -> None:
    handed: list[int] = []
    counter = itertools.count()

    def delays() -> itertools.repeat[float]:
        handed.append(next(counter))
        return itertools.repeat(0.0)

    script: list[BaseException | None] = [
        TransientError("a"),
        VendorProtocolError("b"),
        TransientError("c"),
        None,
    ]
    component = Component("src")
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: run_forever(
                _session(script, []),  # type: ignore[arg-type]
                component=component,
                delays=delays,
            )
        )
        while script:
            await anyio.sleep(0)
        tg.cancel_scope.cancel()
    # initial generator + one fresh generator per connected() call (the VendorProtocolError session and the last)
    assert len(handed) == 3


@pytest.mark.anyio
async def test_session_task_group_errors_are_unwrapped() -> None:
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(d)

    attempts = iter([[TransientError("a"), BackOff("429", 2)], [AuthError("denied"), TransientError("b")]])

    async def session(connected: Callable[[], None]) -> None:
        async def fail(exc: BaseException) -> None:
            raise exc

        async with anyio.create_task_group() as tg:
            for exc in next(attempts):
                tg.start_soon(fail, exc)

    with pytest.raises(AuthError, match="denied"):
        await run_forever(
            session, component=Component("src"), delays=lambda: itertools.repeat(0.5), sleep=sleep
        )
    assert slept == [0.5]  # the first group's leading error was the transient one


@pytest.mark.anyio
async def test_unexpected_error_in_a_group_is_not_swallowed() -> None:
    async def session(connected: Callable[[], None]) -> None:
        async def fail() -> None:
            raise KeyError("bug")

        async with anyio.create_task_group() as tg:
            tg.start_soon(fail)

    with pytest.raises(BaseExceptionGroup):
        await run_forever(session, component=Component("src"), delays=lambda: itertools.repeat(0))

"""The supervisor (streamd.runtime), with injected sleeps and clocks: retry, slow retry of a failed
job, health aggregation and readiness, the stop grace, and exception groups unwrapped in one place."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from functools import partial

import anyio
import pytest

from streamd.errors import AuthError, BackOff, FatalError, NormalizationError, PublishError, TransientError
from streamd.retry import Fatal, Retry
from streamd.runtime import (
    Job,
    Jobs,
    Policy,
    Supervisor,
    aggregate,
    leading_error,
    retry_until,
    run_job,
    task_group,
)
from streamd.telemetry import Component, ComponentState, Health, JobHealth
from tests.helpers import SleepingClock

pytestmark = pytest.mark.anyio

Script = list[BaseException | None]
S = ComponentState


def scripted(script: Script, calls: list[int] | None = None) -> Callable[[Callable[[], None]], object]:
    """A session that fails with the script's next error, or (None) connects and runs forever."""

    async def session(connected: Callable[[], None]) -> None:
        if calls is not None:
            calls.append(1)
        step = script.pop(0)
        if step is None:
            connected()
            await anyio.sleep_forever()
        raise step

    return session


class Sleeps:
    """An injected ``sleep``: records each delay, returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await anyio.sleep(0)


async def wait_for(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.sleep(0)


# -- retry ------------------------------------------------------------------------------------


async def test_transient_errors_are_retried_with_backoff_and_a_server_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    sleeps = Sleeps()
    component = Component("src")
    jobs = Jobs(component, Policy(delays=lambda: itertools.repeat(0.25), sleep=sleeps))
    caplog.set_level(logging.DEBUG)
    script: Script = [TransientError("down"), BackOff("429", 3), None]
    async with anyio.create_task_group() as tg:
        await tg.start(partial(jobs.run, Job("main", scripted(script, calls))))
        assert component.state is S.RETRYING  # readiness after the first failure: not blocking
        await wait_for(lambda: component.state is S.RUNNING)
        tg.cancel_scope.cancel()
    assert len(calls) == 3
    assert sleeps.delays == [0.25, 3]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == ["source src: starting -> retrying (down)"]
    assert any(r.getMessage() == "source src: retrying -> running" for r in caplog.records)


async def test_backoff_resets_after_a_healthy_session() -> None:
    handed: list[int] = []
    counter = itertools.count()

    def delays() -> itertools.repeat[float]:
        handed.append(next(counter))
        return itertools.repeat(0.0)

    calls = 0

    async def session(connected: Callable[[], None]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            connected()  # healthy for a while, then lost
        if calls < 4:
            raise TransientError(f"attempt {calls}")
        connected()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        await tg.start(partial(run_job, Job("j", session), policy=Policy(delays=delays, sleep=Sleeps())))
        await wait_for(lambda: calls == 4)
        tg.cancel_scope.cancel()
    assert len(handed) == 3  # the first generator, then one per connected() call


async def test_a_fatal_error_is_raised_by_standalone_jobs_and_marks_the_component_failed() -> None:
    jobs = Jobs.standalone("src", delays=lambda: itertools.repeat(0))
    with pytest.raises(AuthError, match="bad credentials"):
        await jobs.run(Job("main", scripted([AuthError("bad credentials")])))
    assert jobs.component.state is S.FAILED
    assert jobs.component.detail == "bad credentials"


async def test_an_unexpected_streamd_error_is_fatal_as_itself() -> None:
    jobs = Jobs.standalone("src", delays=lambda: itertools.repeat(0))
    with pytest.raises(NormalizationError, match="boom"):  # not retried, not re-wrapped
        await jobs.run(Job("main", scripted([NormalizationError("boom")])))


async def test_a_bug_is_never_retried() -> None:
    calls: list[int] = []
    jobs = Jobs.standalone("src", delays=lambda: itertools.repeat(0), failed_retry=1.0)
    with pytest.RaisesGroup(KeyError):  # whole, with its traceback: it reaches the root task group
        await jobs.run(Job("main", scripted([KeyError("bug")], calls)))
    assert len(calls) == 1


async def test_a_session_that_returns_is_retried() -> None:
    calls = 0

    async def session(connected: Callable[[], None]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            connected()
            await anyio.sleep_forever()

    sleeps = Sleeps()
    async with anyio.create_task_group() as tg:
        policy = Policy(delays=lambda: itertools.repeat(0.5), sleep=sleeps)
        await tg.start(partial(run_job, Job("j", session), policy=policy))
        await wait_for(lambda: calls == 3)
        tg.cancel_scope.cancel()
    assert sleeps.delays == [0.5, 0.5]


async def test_a_nested_job_escalates_to_its_parent_after_failures_in_a_row() -> None:
    calls: list[int] = []
    script: Script = [TransientError("a"), TransientError("b"), TransientError("c")]
    job = Job("channel", scripted(script, calls), delays=lambda: itertools.repeat(0.0), escalate_after=3)
    with pytest.raises(TransientError, match="c"):
        await run_job(job, policy=Policy(sleep=Sleeps()))
    assert len(calls) == 3


async def test_a_nested_job_hands_what_it_does_not_handle_to_its_parent_unchanged() -> None:
    def only_transient(exc: BaseException) -> Retry | Fatal:
        return Retry() if isinstance(exc, TransientError) else Fatal()

    job = Job("sub", scripted([TransientError("again"), BackOff("later", 5)]), decide=only_transient)
    with pytest.raises(BackOff, match="later"):  # not marked failed, not wrapped: the parent decides
        await run_job(job, policy=Policy(delays=lambda: itertools.repeat(0.0), sleep=Sleeps()))


# -- slow retry of a failed job (failure isolation) ------------------------------------------


async def test_a_failed_job_is_retried_on_the_slow_schedule_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sleeps = Sleeps()
    component = Component("src")
    policy = Policy(delays=lambda: itertools.repeat(0.25), failed_retry=300.0, sleep=sleeps)
    script: Script = [AuthError("refused"), AuthError("still refused"), TransientError("flaky"), None]
    caplog.set_level(logging.INFO)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(Jobs(component, policy).run, Job("main", scripted(script))))
        await wait_for(lambda: component.state is S.RUNNING)
        tg.cancel_scope.cancel()
    assert sleeps.delays == [300.0, 300.0, 0.25]
    lines = [r.getMessage() for r in caplog.records if r.name == "streamd"]
    assert lines == [
        "source src: starting -> failed (refused)",
        "source src: still failed (still refused)",
        "source src: failed -> retrying (flaky)",
        "source src: retrying -> running",
    ]


async def test_one_failed_job_degrades_only_itself() -> None:
    component = Component("src")
    policy = Policy(delays=lambda: itertools.repeat(0.0), failed_retry=300.0, sleep=Sleeps())
    polls = 0

    async def healthy(connected: Callable[[], None]) -> None:
        nonlocal polls
        connected()
        while True:
            polls += 1
            await anyio.sleep(0)

    async def refused(connected: Callable[[], None]) -> None:
        raise AuthError("HTTP 403 on report R1")

    async with anyio.create_task_group() as tg:
        await tg.start(partial(Jobs(component, policy).run, Job("realtime", healthy), Job("R1", refused)))
        before = polls
        await wait_for(lambda: polls > before + 10)  # the healthy job goes on
        assert component.state is S.RETRYING
        assert component.detail == "R1 failed: HTTP 403 on report R1"
        assert component.jobs["R1"].state is S.FAILED
        assert component.jobs["realtime"].state is S.RUNNING
        tg.cancel_scope.cancel()


# -- health aggregation and readiness ---------------------------------------------------------


def job(name: str, state: ComponentState, detail: str = "") -> JobHealth:
    return JobHealth(name, state, detail)


def test_aggregate_of_jobs() -> None:
    assert aggregate([job("a", S.FAILED, "x")]) == (S.FAILED, "x")
    assert aggregate([job("a", S.RUNNING), job("b", S.RUNNING)]) == (S.RUNNING, "")
    assert aggregate([job("a", S.RUNNING), job("b", S.STARTING)]) == (S.STARTING, "")
    assert aggregate([job("a", S.FAILED, "401"), job("b", S.FAILED, "401")]) == (S.FAILED, "a, b: 401")
    assert aggregate([job("a", S.FAILED, "403"), job("b", S.RETRYING, "503"), job("c", S.RUNNING)]) == (
        S.RETRYING,
        "a failed: 403; b: 503",
    )
    assert aggregate([job("a", S.RETRYING, "503"), job("b", S.STARTING)]) == (S.RETRYING, "a: 503")


def health(readiness: str, **states: tuple[str, ComponentState]) -> Health:
    h = Health(readiness=readiness)  # type: ignore[arg-type]
    for name, (kind, state) in states.items():
        h.add(name, kind).set(state)
    return h


@pytest.mark.parametrize(
    ("readiness", "states", "ready"),
    [
        ("any", {"a": S.RUNNING, "b": S.FAILED}, True),
        ("any", {"a": S.RETRYING, "b": S.FAILED}, True),
        ("any", {"a": S.FAILED, "b": S.FAILED}, False),
        ("any", {"a": S.STARTING, "b": S.RUNNING}, True),
        ("all", {"a": S.RUNNING, "b": S.FAILED}, False),
        ("all", {"a": S.RUNNING, "b": S.RETRYING}, True),
        ("all", {"a": S.RUNNING, "b": S.STARTING}, False),
    ],
)
def test_readiness_all_or_any_source(readiness: str, states: dict[str, ComponentState], ready: bool) -> None:
    h = health(readiness, kafka=("publisher", S.RUNNING), **{k: ("source", v) for k, v in states.items()})
    assert h.ready() is ready


def test_readiness_needs_the_publisher_ignores_feeds_and_never_holds_while_draining() -> None:
    assert health("any", kafka=("publisher", S.RUNNING)).ready()  # no sources configured
    assert health("any", kafka=("publisher", S.RETRYING), a=("source", S.RUNNING)).ready()  # spooling
    assert not health("any", kafka=("publisher", S.STARTING), a=("source", S.RUNNING)).ready()
    assert health("all", kafka=("publisher", S.RUNNING), wallboard=("feed", S.FAILED)).ready()
    assert not health("all", kafka=("publisher", S.RUNNING), s=("sink", S.FAILED)).ready()
    assert health("any", kafka=("publisher", S.RUNNING), s=("sink", S.FAILED)).ready()
    draining = health("any", kafka=("publisher", S.RUNNING), a=("source", S.RUNNING))
    Supervisor(draining).stop()
    assert not draining.ready()


def test_stop_marks_everything_but_the_publisher_and_the_failed_draining() -> None:
    h = health("any", kafka=("publisher", S.RUNNING), a=("source", S.RUNNING), b=("source", S.FAILED))
    Supervisor(h).stop()
    assert {n: c.state for n, c in h.components.items()} == {
        "kafka": S.RUNNING,
        "a": S.DRAINING,
        "b": S.FAILED,
    }
    assert h.draining


async def test_jobs_reporting_while_they_are_cancelled_do_not_undo_draining() -> None:
    sup = Supervisor(policy=Policy(delays=lambda: itertools.repeat(0.0), sleep=Sleeps()))
    jobs = sup.jobs("src")
    async with anyio.create_task_group() as tg:
        await tg.start(partial(jobs.run, Job("a", scripted([None])), Job("b", scripted([None]))))
        sup.stop()
        for j in jobs.component.jobs.values():
            j.set(S.RETRYING, "closed by the stop")
        tg.cancel_scope.cancel()
    assert jobs.component.state is S.DRAINING


# -- the stop grace ---------------------------------------------------------------------------


async def test_grace_waits_for_work_that_finishes_in_time() -> None:
    done, scope = anyio.Event(), anyio.CancelScope()
    grace = Supervisor().grace(30.0)

    async def finish() -> None:
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish)
        assert await grace.wait(done, scope, "events in flight")
    assert not scope.cancel_called
    assert 0 < grace.remaining() <= 30.0


async def test_grace_cancels_work_still_running_when_it_ends_and_lets_it_clean_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done, scope, cleaned = anyio.Event(), anyio.CancelScope(), []

    async def work() -> None:
        try:
            with scope:
                await anyio.sleep_forever()
        finally:
            cleaned.append(True)  # e.g. the pipeline spooling what it holds
            done.set()

    grace = Supervisor().grace(0.01)
    async with anyio.create_task_group() as tg:
        tg.start_soon(work)
        assert not await grace.wait(done, scope, "events in flight: spooling them")
    assert cleaned == [True]
    assert grace.remaining(floor=1.0) == 1.0
    assert "shutdown grace 0.0s elapsed with events in flight" in caplog.text


async def test_hurry_ends_the_grace_at_once_and_bounded_steps_move_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second stop signal: the step waiting on the grace (the pipeline) is cancelled now, the
    next one bounded by it (the producer's flush, shielded, with a floor) gets no time at all."""
    sup = Supervisor()
    done, scope, cleaned = anyio.Event(), anyio.CancelScope(), []

    async def work() -> None:
        try:
            with scope:
                await anyio.sleep_forever()
        finally:
            cleaned.append(True)
            done.set()

    grace = sup.grace(3600.0)
    assert sup.grace(1.0) is grace  # one grace per stop
    with anyio.fail_after(5):  # not the 3600 s of the grace
        async with anyio.create_task_group() as tg:
            tg.start_soon(work)
            tg.start_soon(_hurry_soon, sup)
            assert not await grace.wait(done, scope, "events in flight: spooling them")
    assert cleaned == [True]
    assert grace.cut
    assert grace.remaining(floor=1.0) == 0.0
    assert "shutdown cut short with events in flight" in caplog.text
    assert "elapsed" not in caplog.text
    with grace.bound(floor=1.0, shield=True) as bound:
        await anyio.sleep_forever()  # the flush: cancelled at once, not after the floor
    assert bound.cancelled_caught


async def _hurry_soon(sup: Supervisor) -> None:
    await anyio.sleep(0)
    sup.hurry()


async def test_a_shielded_step_bounded_by_the_grace_moves_on_when_it_is_cut() -> None:
    sup = Supervisor()
    grace = sup.grace(3600.0)
    reached, outer, finished = anyio.Event(), anyio.CancelScope(), []

    async def flush() -> None:
        with outer, grace.bound(floor=1.0, shield=True) as bound:
            reached.set()
            await anyio.sleep_forever()
        finished.append(bound.cancelled_caught)

    with anyio.fail_after(5):  # not the 3600 s of the grace
        async with anyio.create_task_group() as tg:
            tg.start_soon(flush)
            await reached.wait()
            outer.cancel()  # shielded: an ordinary cancellation does not end it...
            for _ in range(10):
                await anyio.sleep(0)
            assert finished == []
            sup.hurry()  # ...the grace being cut does
    assert finished == [True]


async def test_hurry_before_the_grace_starts_gives_a_grace_already_over() -> None:
    sup = Supervisor()
    sup.hurry()
    grace = sup.grace(3600.0)
    assert grace.cut
    assert grace.remaining(floor=1.0) == 0.0
    with grace.bound(floor=1.0) as bound:
        await anyio.sleep_forever()
    assert bound.cancelled_caught


# -- exception groups, unwrapped in one place -------------------------------------------------


def test_leading_error_prefers_a_fatal_one_and_keeps_bugs_whole() -> None:
    fatal = AuthError("denied")
    group = ExceptionGroup("g", [TransientError("t"), ExceptionGroup("h", [fatal])])
    assert leading_error(group) is fatal
    transient = TransientError("first")
    assert leading_error(ExceptionGroup("g", [transient, OSError("second")])) is transient
    bug = ExceptionGroup("g", [fatal, KeyError("bug")])
    with pytest.raises(ExceptionGroup) as info:
        leading_error(bug)
    assert info.value is bug


async def _in_task_group(*errors: BaseException) -> None:
    async def fail(exc: BaseException) -> None:
        raise exc

    async with task_group() as tg:
        for exc in errors:
            tg.start_soon(fail, exc)


async def test_task_group_surfaces_the_leading_error_itself() -> None:
    with pytest.raises(FatalError, match="gone"):
        await _in_task_group(TransientError("t"), FatalError("gone"))
    with pytest.RaisesGroup(KeyError):
        await _in_task_group(KeyError("bug"))


async def test_a_session_running_tasks_of_its_own_is_classified_by_its_leading_error() -> None:
    sleeps = Sleeps()
    attempts = iter([[TransientError("a"), BackOff("429", 2)], [AuthError("denied"), TransientError("b")]])

    async def session(connected: Callable[[], None]) -> None:
        async def fail(exc: BaseException) -> None:
            raise exc

        async with anyio.create_task_group() as tg:  # a plain anyio group: run_job unwraps it
            for exc in next(attempts):
                tg.start_soon(fail, exc)

    jobs = Jobs.standalone("src", delays=lambda: itertools.repeat(0.5), sleep=sleeps)
    with pytest.raises(AuthError, match="denied"):
        await jobs.run(Job("main", session))
    assert sleeps.delays == [0.5]  # the first group's leading error was the transient one


async def test_a_bug_in_a_sessions_group_is_not_swallowed() -> None:
    async def session(connected: Callable[[], None]) -> None:
        async def fail() -> None:
            raise KeyError("bug")

        async with anyio.create_task_group() as tg:
            tg.start_soon(fail)

    jobs = Jobs.standalone("src", delays=lambda: itertools.repeat(0), failed_retry=1.0)
    with pytest.raises(ExceptionGroup):
        await jobs.run(Job("main", session))


async def test_a_job_may_declare_every_exception_retryable() -> None:
    calls: list[int] = []
    job = Job(
        "feed",
        scripted([KeyError("bug"), ValueError("bug"), None], calls),
        decide=lambda _: Retry(),
        catch=(Exception,),
    )
    async with anyio.create_task_group() as tg:
        policy = Policy(delays=lambda: itertools.repeat(0.0), sleep=Sleeps())
        await tg.start(partial(run_job, job, policy=policy))
        await wait_for(lambda: len(calls) == 3)
        tg.cancel_scope.cancel()


# -- start-up: retried until a deadline ------------------------------------------------------


async def test_retry_until_returns_once_the_attempt_succeeds() -> None:
    clock = SleepingClock(0.0)
    outcomes: list[BaseException | str] = [PublishError("refused"), OSError("reset"), "connected"]

    async def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    got = await retry_until(
        attempt, within=10, what="Kafka", delays=lambda: iter([1.0, 2.0]), sleep=clock.sleep, clock=clock
    )
    assert got == "connected"
    assert clock.sleeps == [1.0, 2.0]


async def test_retry_until_gives_up_with_one_line_at_its_deadline() -> None:
    clock = SleepingClock(0.0)

    async def attempt() -> None:
        raise PublishError("KafkaConnectionError: connect failed")

    with pytest.raises(FatalError) as info:
        await retry_until(
            attempt,
            within=5,
            what="Kafka at k:9092",
            setting="kafka.startup_timeout",
            delays=lambda: itertools.repeat(2.0),
            sleep=clock.sleep,
            clock=clock,
        )
    assert str(info.value) == (
        "Kafka at k:9092 unreachable: gave up after 5.0s (kafka.startup_timeout: 5s, 4 attempts): "
        "KafkaConnectionError: connect failed"
    )
    assert clock.sleeps == [2.0, 2.0, 1.0]  # the third wait is cut at the deadline: a last attempt there


async def test_retry_until_folds_what_the_library_logs_into_its_own_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SleepingClock(0.0)
    library = logging.getLogger("aiokafka.conn")
    outcomes = iter([True, True, False])

    async def attempt() -> str:
        if next(outcomes):
            library.error('Unable connect to "k:9092": [Errno 111] refused')
            raise PublishError("KafkaConnectionError: Unable to bootstrap")
        return "connected"

    caplog.set_level(logging.DEBUG)
    got = await retry_until(
        attempt, within=5, what="Kafka", quiet=("aiokafka",), sleep=clock.sleep, clock=clock
    )
    assert got == "connected"
    assert [r.name for r in caplog.records if r.name.startswith("aiokafka")] == []  # folded
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == [
        f"Kafka reachable after {sum(clock.sleeps):.1f}s (3 attempts)"
    ]
    library.error("after the start-up step")  # the library speaks for itself again
    assert [r.getMessage() for r in caplog.records if r.name == "aiokafka.conn"] == [
        "after the start-up step"
    ]

    outcomes = iter(itertools.repeat(True))
    with pytest.raises(FatalError) as info:
        await retry_until(
            attempt,
            within=1,
            what="Kafka",
            quiet=("aiokafka",),
            delays=lambda: itertools.repeat(0.5),
            sleep=clock.sleep,
            clock=clock,
        )
    assert str(info.value) == (
        "Kafka unreachable: gave up after 1.0s (within: 1s, 3 attempts): KafkaConnectionError: Unable to "
        'bootstrap (aiokafka logged 3 lines, the last: Unable connect to "k:9092": [Errno 111] refused)'
    )


async def test_retry_until_does_not_retry_a_fatal_error() -> None:
    async def attempt() -> None:
        raise FatalError("kafka.security: cannot load the TLS files")

    with pytest.raises(FatalError, match="TLS files"):
        await retry_until(attempt, within=5, what="Kafka", sleep=Sleeps())

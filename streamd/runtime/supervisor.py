"""The supervisor: every long-running job of streamd is run, retried and reported here.

A *job* is one session function, ``session(connected)``, that runs until it fails (a source's
connection, one poller, a sink's consumer, the wallboard feed, the spool drain). A *component* is
what ``/readyz`` and ``streamd_component_state`` show (a source, a sink, the publisher, the feed);
it has one job or several (the Xima realtime values and each historic report, each Alvaria query,
the Calabrio activity and adherence pollers).

Rules:

1. :func:`run_job` is the one retry loop. A failure is classified (``retry.classify`` unless the
   job says otherwise): retry after the next backoff delay, or after the server-given one; the
   backoff resets once a session calls ``connected()``. Exception groups are unwrapped first
   (:mod:`.failures`), so a session may run tasks of its own.
2. Failure isolation (Kafka Connect's failed task, but retried by itself): a fatal error marks the
   job ``failed`` with its reason and, under a daemon's :class:`Policy`, the job is tried again every
   ``failed_retry`` seconds while every other job goes on. Without ``failed_retry`` (a standalone
   :class:`Jobs`, as in unit tests and embedders) the fatal error is raised to the caller.
3. A component's state is the aggregate of its jobs' (:func:`aggregate`): all failed -> failed; any
   failed or retrying -> retrying, naming those jobs (``a: reason; b failed: reason``); any
   starting -> starting; else running. The
   component logs one line per transition and exports the gauge; jobs themselves are silent and
   listed in ``/readyz``.
4. The stop: :meth:`Supervisor.stop` marks everything ``draining``; one :class:`Grace` bounds every
   later step of the ordered shutdown with one deadline. :meth:`Supervisor.hurry` (a second stop
   signal) ends that grace at once: every step bounded by it moves on now (the pipeline still
   spools what it holds; shielded clean-ups with bounds of their own, such as an O2G unsubscribe,
   still run).
5. Start-up steps that must succeed before anything else runs (the Kafka producer) are retried by
   :func:`retry_until` until their deadline, then fail with one clear line.
6. A job run by :func:`run_job` without ``health`` inside another job's session (a *nested* job,
   e.g. O2G's chunk channel inside its session) reports through its parent's: while it retries
   the parent shows ``retrying`` with the nested job's reason, and once it is connected again
   the parent is ``running`` again if it was before; its failures go to the parent as errors.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

import anyio
from anyio.abc import TaskStatus

from streamd.errors import FatalError, SourceError
from streamd.logs import folded
from streamd.retry import Decision, Fatal, Wait, backoff, classify
from streamd.runtime.failures import EXPECTED, describe, error_type, leading_error, task_group
from streamd.telemetry import Component, ComponentState, Health, JobHealth, count_error

log = logging.getLogger("streamd.runtime")

T = TypeVar("T")
Connected = Callable[[], None]
Session = Callable[[Connected], Awaitable[None]]
Delays = Callable[[], Iterator[float]]

FAILED_RETRY = 300.0
"""Default seconds between attempts of a failed job (the ``failed_retry`` config field)."""


class Reporter(Protocol):
    """Where a job reports its state (a :class:`JobHealth` or a whole :class:`Component`)."""

    @property
    def state(self) -> ComponentState: ...

    def set(self, state: ComponentState, detail: str = "") -> None: ...


_RUNNING_JOB: ContextVar[Reporter | None] = ContextVar("streamd_running_job", default=None)
"""The health of the job whose session is running in this context (module rule 6)."""


class _Nested:
    """A nested job's health (module rule 6): it forwards its retries to its parent's."""

    def __init__(self, parent: Reporter) -> None:
        self.parent = parent
        self.retrying = False
        self.before = parent.state

    @property
    def state(self) -> ComponentState:
        return ComponentState.RETRYING if self.retrying else ComponentState.RUNNING

    def set(self, state: ComponentState, detail: str = "") -> None:
        if state is ComponentState.RETRYING:
            if not self.retrying:
                self.retrying, self.before = True, self.parent.state
            self.parent.set(state, detail)
        elif state is ComponentState.RUNNING and self.retrying:
            self.retrying = False
            if self.before is ComponentState.RUNNING:
                self.parent.set(ComponentState.RUNNING)


@dataclass(frozen=True, slots=True)
class Policy:
    """How jobs are retried.

    Attributes:
        delays: fresh backoff delays (after a healthy session the generator is made anew).
        failed_retry: seconds between attempts of a failed job; None raises the fatal error.
        sleep: how to wait (tests inject one that records the delays).
    """

    delays: Delays = backoff
    failed_retry: float | None = None
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep


@dataclass(frozen=True, slots=True)
class Job:
    """One supervised session.

    Attributes:
        name: unique within its component (shown in ``/readyz``).
        session: ``session(connected)``; runs until it fails, calls ``connected()`` when healthy.
        decide: what to do about a failure (default :func:`streamd.retry.classify`).
        delays: this job's backoff, instead of the policy's.
        stage: the ``stage`` label of the errors counted for each failure (None: the session
            counts what it must itself).
        escalate_after: raise the error after this many failures in a row without
            ``connected()`` (for a job nested in another job's session: its parent decides).
        catch: the exceptions a session may fail with; anything else propagates (a bug).
    """

    name: str
    session: Session
    decide: Callable[[BaseException], Decision] = classify
    delays: Delays | None = None
    stage: str | None = "session"
    escalate_after: int | None = None
    catch: tuple[type[BaseException], ...] = EXPECTED


async def run_job(
    job: Job,
    *,
    policy: Policy,
    health: Reporter | None = None,
    owner: str = "",
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``job`` until cancelled: the one retry loop of streamd (module rules 1 and 2).

    Readiness (``task_status``) is signalled on the first ``connected()`` or the first failure.

    Raises:
        Exception: the job's error when it is fatal and ``policy.failed_retry`` is None, or when
            it failed ``job.escalate_after`` times in a row.
    """
    if health is None and (parent := _RUNNING_JOB.get()) is not None:
        health = _Nested(parent)  # module rule 6
    token = _RUNNING_JOB.set(health)
    try:
        await _run(job, policy, health, owner, task_status)
    finally:
        _RUNNING_JOB.reset(token)


async def _run(
    job: Job, policy: Policy, health: Reporter | None, owner: str, task_status: TaskStatus[None]
) -> None:
    label = owner or job.name
    delays = job.delays or policy.delays
    waits = delays()
    failures = 0
    started = False

    def ready() -> None:
        nonlocal started
        if not started:
            started = True
            task_status.started()

    def connected() -> None:
        nonlocal waits, failures
        waits, failures = delays(), 0
        if health is not None:
            health.set(ComponentState.RUNNING)
        ready()

    while True:
        exc = await _attempt(job, connected)
        failures += 1
        decision = job.decide(exc)
        if job.escalate_after is not None and failures >= job.escalate_after:
            raise exc  # the parent job decides (and counts)
        if isinstance(decision, Fatal):
            if health is not None:
                health.set(ComponentState.FAILED, describe(exc))
            if policy.failed_retry is None:
                raise exc
            _count(label, job, exc)
            ready()
            log.debug("%s/%s: failed, next attempt in %gs", label, job.name, policy.failed_retry)
            await policy.sleep(policy.failed_retry)
            waits, failures = delays(), 0
            continue
        _count(label, job, exc)
        delay = decision.seconds if isinstance(decision, Wait) else next(waits)
        if health is not None and health.state is not ComponentState.RETRYING:
            health.set(ComponentState.RETRYING, describe(exc))
        log.debug("%s/%s: retrying in %.2fs after %s", label, job.name, delay, describe(exc))
        ready()  # readiness means "running or retrying": a retrying job does not block the start
        await policy.sleep(delay)


def _count(label: str, job: Job, exc: BaseException) -> None:
    if job.stage is not None:
        count_error(label, job.stage, error_type(exc))


async def _attempt(job: Job, connected: Connected) -> BaseException:
    """Run one session; the error it ended with (a session that returns is an error too)."""
    try:
        await job.session(connected)
    except BaseExceptionGroup as group:  # a session running tasks of its own
        return leading_error(group, job.catch)
    except job.catch as exc:
        return exc
    return SourceError(f"{job.name}: session ended")


def aggregate(jobs: Sequence[JobHealth]) -> tuple[ComponentState, str]:
    """A component's state from its jobs' (module rule 3), with the reason naming the jobs."""
    if len(jobs) == 1:
        return jobs[0].state, jobs[0].detail
    failed = [j for j in jobs if j.state is ComponentState.FAILED]
    if failed and len(failed) == len(jobs):
        return ComponentState.FAILED, _summary(failed, mark_failed=False)
    troubled = [j for j in jobs if j.state in (ComponentState.FAILED, ComponentState.RETRYING)]
    if troubled:
        return ComponentState.RETRYING, _summary(troubled, mark_failed=True)
    if any(j.state is ComponentState.STARTING for j in jobs):
        return ComponentState.STARTING, ""
    return ComponentState.RUNNING, ""


def _summary(jobs: Sequence[JobHealth], *, mark_failed: bool) -> str:
    """``a, b: reason; c failed: other reason`` (jobs with the same reason share it)."""
    groups: dict[tuple[bool, str], list[str]] = {}
    for j in jobs:
        groups.setdefault((mark_failed and j.state is ComponentState.FAILED, j.detail), []).append(j.name)
    return "; ".join(
        f"{', '.join(names)}{' failed' if failed else ''}: {detail}"
        for (failed, detail), names in groups.items()
    )


@dataclass(slots=True)
class Jobs:
    """A component's handle on the supervisor: runs its jobs, aggregates their health into it."""

    component: Component
    policy: Policy = field(default_factory=Policy)

    @classmethod
    def standalone(
        cls,
        name: str,
        kind: str = "source",
        *,
        delays: Delays = backoff,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        failed_retry: float | None = None,
    ) -> Jobs:
        """Jobs outside a daemon (tests, embedders): a fatal error is raised unless ``failed_retry``."""
        return cls(Component(name, kind), Policy(delays=delays, failed_retry=failed_retry, sleep=sleep))

    async def run(self, *jobs: Job, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every job until cancelled; ready once each is running, retrying or failed.

        Raises:
            ValueError: two jobs share a name.
            Exception: a job's fatal error, when the policy has no ``failed_retry`` (the other
                jobs are cancelled first).
        """
        if len({j.name for j in jobs}) != len(jobs):
            raise ValueError(f"{self.component.name}: job names must be unique")
        healths = [JobHealth(j.name) for j in jobs]
        for h in healths:
            h.on_change = partial(self._aggregate, healths)
        self.component.jobs = {h.name: h for h in healths} if len(jobs) > 1 else {}
        try:
            async with task_group() as tg:
                for job, health in zip(jobs, healths, strict=True):
                    run = partial(run_job, job, policy=self.policy, health=health, owner=self.component.name)
                    await tg.start(run)
                task_status.started()
        except EXPECTED as exc:  # only without failed_retry: the component itself has failed
            self.component.set(ComponentState.FAILED, describe(exc))
            raise

    def _aggregate(self, healths: Sequence[JobHealth]) -> None:
        if self.component.state is ComponentState.DRAINING:
            return  # stopping: what the jobs report while they are cancelled changes nothing
        state, detail = aggregate(healths)
        self.component.set(state, detail)


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


@dataclass(slots=True)
class Grace:
    """One deadline shared by the steps of an ordered stop (the ``shutdown_grace``).

    Attributes:
        seconds: the grace it started with.
        ends: when it ends (now, once :meth:`end` cut it short).
        cut: True once :meth:`end` was called (a second stop signal).
    """

    seconds: float
    ends: float
    cut: bool = False
    _scopes: set[anyio.CancelScope] = field(default_factory=set, repr=False)

    def end(self) -> None:
        """End the grace now: every step bounded by it (:meth:`bound`, :meth:`wait`) moves on."""
        self.cut = True
        self.ends = min(self.ends, anyio.current_time())
        for scope in list(self._scopes):
            scope.deadline = self.ends

    @contextmanager
    def bound(self, *, floor: float = 0.0, shield: bool = False) -> Iterator[anyio.CancelScope]:
        """A cancel scope that ends with the grace (at ``floor`` seconds from now at the earliest,
        unless the grace was cut); ``shield`` protects it from any other cancellation."""
        deadline = self.ends if self.cut else max(self.ends, anyio.current_time() + floor)
        with anyio.CancelScope(deadline=deadline, shield=shield) as scope:
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    async def wait(self, done: anyio.Event, cancel: anyio.CancelScope, what: str) -> bool:
        """Wait for ``done`` until the grace ends; past it cancel ``cancel`` and wait for ``done``.

        Returns:
            True when ``done`` came in time; False when the work had to be cancelled (it then
            finishes its shielded clean-up, e.g. the pipeline spools what it holds).
        """
        with self.bound():
            await done.wait()
            return True
        if self.cut:
            log.warning("shutdown cut short with %s", what)
        else:
            log.error("shutdown grace %.1fs elapsed with %s", self.seconds, what)
        cancel.cancel()
        await done.wait()
        return False

    def remaining(self, floor: float = 0.0) -> float:
        """Seconds left (at least ``floor``, unless the grace was cut: then 0)."""
        if self.cut:
            return 0.0
        return max(floor, self.ends - anyio.current_time())


class Supervisor:
    """Registers components, hands out their :class:`Jobs`, and marks the stop.

    Args:
        health: where components are registered (``/readyz``).
        policy: how every component's jobs are retried (``failed_retry`` set in a daemon).

    Attributes:
        hurried: True once :meth:`hurry` was called.
    """

    def __init__(self, health: Health | None = None, policy: Policy | None = None) -> None:
        self.health = health if health is not None else Health()
        self.policy = policy if policy is not None else Policy()
        self.hurried = False
        self._grace: Grace | None = None

    def jobs(self, name: str, kind: str = "source") -> Jobs:
        """Register component ``name`` and return its handle."""
        return Jobs(self.health.add(name, kind), self.policy)

    def stop(self) -> None:
        """Report draining: ``/readyz`` turns 503, every component but the publisher and the
        failed ones goes ``draining`` (their jobs are about to be cancelled)."""
        self.health.draining = True
        for c in self.health.components.values():
            if c.kind != "publisher" and c.state is not ComponentState.FAILED:
                c.set(ComponentState.DRAINING)

    def grace(self, seconds: float) -> Grace:
        """The stop's grace: ``seconds`` from the first call; later calls return the same one
        (already ended after :meth:`hurry`)."""
        if self._grace is None:
            self._grace = Grace(seconds, anyio.current_time() + seconds)
            if self.hurried:
                self._grace.end()
        return self._grace

    def hurry(self) -> None:
        """Stop at once (module rule 4): the grace ends now, or as soon as it starts."""
        self.hurried = True
        if self._grace is not None:
            self._grace.end()

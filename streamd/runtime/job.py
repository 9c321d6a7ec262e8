"""The one retry loop: :func:`run_job` runs a :class:`Job` (one session function) until cancelled.

A *job* is one session function, ``session(connected)``, that runs until it fails (a source's
connection, one poller, a sink's consumer, the wallboard feed, the spool drain). Components and
their jobs' health are :mod:`.supervisor`'s.

Rules:

1. :func:`run_job` is the one retry loop. A failure is classified (``retry.classify`` unless the
   job says otherwise): retry after the next backoff delay, or after the server-given one; the
   backoff resets once a session calls ``connected()``. Exception groups are unwrapped first
   (:mod:`.failures`), so a session may run tasks of its own.
2. Failure isolation (Kafka Connect's failed task, but retried by itself): a fatal error marks the
   job ``failed`` with its reason and, under a daemon's :class:`Policy`, the job is tried again every
   ``failed_retry`` seconds while every other job goes on. Without ``failed_retry`` (a standalone
   ``Jobs``, as in unit tests and embedders) the fatal error is raised to the caller.
3. A retrying job reports its reason once, on its first failure: failing again while retrying
   changes nothing (no log line per retry), unless what is shown is not its own reason (a nested
   job's, rule 4): then its own failure replaces it.
4. A job run by :func:`run_job` without ``health`` inside another job's session (a *nested* job,
   e.g. O2G's chunk channel inside its session) reports through its parent's: while it retries
   the parent shows ``retrying`` with the nested job's reason, and once it is connected again
   the parent is ``running`` again if it was before; its failures go to the parent as errors.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

import anyio
from anyio.abc import TaskStatus

from streamd.errors import SourceError
from streamd.retry import Decision, Fatal, Wait, backoff, classify
from streamd.runtime.failures import EXPECTED, describe, error_type, leading_error
from streamd.telemetry import ComponentState, count_error

log = logging.getLogger("streamd.runtime")

Connected = Callable[[], None]
Session = Callable[[Connected], Awaitable[None]]
Delays = Callable[[], Iterator[float]]

FAILED_RETRY = 300.0
"""Default seconds between attempts of a failed job (the ``failed_retry`` config field)."""


class Reporter(Protocol):
    """Where a job reports its state (a :class:`JobHealth` or a whole :class:`Component`)."""

    @property
    def state(self) -> ComponentState: ...

    @property
    def detail(self) -> str: ...

    def set(self, state: ComponentState, detail: str = "") -> None: ...


_RUNNING_JOB: ContextVar[Reporter | None] = ContextVar("streamd_running_job", default=None)
"""The health of the job whose session is running in this context (module rule 4)."""


class _Nested:
    """A nested job's health (module rule 4): it forwards its retries to its parent's."""

    def __init__(self, parent: Reporter) -> None:
        self.parent = parent
        self.retrying = False
        self.before = parent.state

    @property
    def state(self) -> ComponentState:
        return ComponentState.RETRYING if self.retrying else ComponentState.RUNNING

    @property
    def detail(self) -> str:
        return self.parent.detail

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
    """Run ``job`` until cancelled: the one retry loop of streamd (module rules 1 to 3).

    Readiness (``task_status``) is signalled on the first ``connected()`` or the first failure.

    Raises:
        Exception: the job's error when it is fatal and ``policy.failed_retry`` is None, or when
            it failed ``job.escalate_after`` times in a row.
    """
    if health is None and (parent := _RUNNING_JOB.get()) is not None:
        health = _Nested(parent)  # module rule 4
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
    shown = ""  # the reason this job last reported while retrying (module rule 3)

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
        if health is not None and (health.state is not ComponentState.RETRYING or health.detail != shown):
            shown = describe(exc)  # module rule 3: once, or over a nested job's reason
            health.set(ComponentState.RETRYING, shown)
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

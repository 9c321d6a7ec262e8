"""The supervisor: components, their jobs' health, and the stop.

A *component* is what ``/readyz`` and ``streamd_component_state`` show (a source, a sink, the
publisher, the feed); it has one job or several (the Xima realtime values and each historic
report, each Alvaria query, the Calabrio activity and adherence pollers), each run by
:func:`streamd.runtime.job.run_job`, the one retry loop.

Rules:

1. A component's state is the aggregate of its jobs' (:func:`aggregate`): all failed -> failed; any
   failed or retrying -> retrying, naming those jobs (``a: reason; b failed: reason``); any
   starting -> starting; else running. The
   component logs one line per transition and exports the gauge; jobs themselves are silent and
   listed in ``/readyz``.
2. The stop: :meth:`Supervisor.stop` marks everything ``draining``; one :class:`Grace` bounds every
   later step of the ordered shutdown with one deadline. :meth:`Supervisor.hurry` (a second stop
   signal) ends that grace at once: every step bounded by it moves on now (the pipeline still
   spools what it holds; shielded clean-ups with bounds of their own, such as an O2G unsubscribe,
   still run).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import anyio
from anyio.abc import TaskStatus

from streamd.retry import backoff
from streamd.runtime.failures import EXPECTED, describe, task_group
from streamd.runtime.job import Delays, Job, Policy, run_job
from streamd.telemetry import Component, ComponentState, Health, JobHealth

log = logging.getLogger("streamd.runtime")


def aggregate(jobs: Sequence[JobHealth]) -> tuple[ComponentState, str]:
    """A component's state from its jobs' (module rule 1), with the reason naming the jobs."""
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
        """Stop at once (module rule 2): the grace ends now, or as soon as it starts."""
        self.hurried = True
        if self._grace is not None:
            self._grace.end()

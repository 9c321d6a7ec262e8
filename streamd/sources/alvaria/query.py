"""One Alvaria query as a ``PollSpec``: GET its scopes, diff each against the last acknowledged
snapshot, build the events.

Rules:

1. A cycle GETs the due scopes of the query at most ``scope_concurrency`` at a time, each within the
   query's ``timeout``; cycles of one query never overlap (the generic poller runs one at a time
   and skips missed slots, so a slow answer never causes a pile-up).
2. One scope never stalls the others (:mod:`.scopes`): a scope that fails or does not answer in
   time backs off alone while the rest of its query is published; the query fails (and the
   supervisor retries it) only when no scope answers.
3. The cursor is the per-scope :class:`ScopeState` map, kept in memory: the poller hands the new
   state back only after ``emit`` returned, and a restarted session resumes from the last
   acknowledged state (``load_cursor``), so a failed publish re-diffs instead of losing changes.
4. What stops a whole query: a 429 (the source-wide gate, :mod:`.client` rule 4: ``BackOff``), the
   token endpoint's refusals and a certificate that does not verify (fatal), and a 403 on every
   scope (a wrong API key, an org-wide query refused: ``AuthError``). A token endpoint that fails
   or is slow fails the cycle before any scope is asked (one error line, not one per scope).
5. Bad bodies and unroutable rows never crash the source: they become ``DeadLetter`` events and
   are counted (``count_error(source, "processing", error_type)``); :mod:`.scope_events` builds
   every event of a polled scope. A routable row is published
   however else it deviates from its model (tolerant reading, :mod:`.diff` rule 3).
6. presence per worktype: a user who drops off one worktype's list but is still on another's is
   not logged out (the vendor event ``RowRemoved`` is published; the canonical state is not).
7. channelActivity's queue age ticks: every poll publishes each present row's canonical
   ``longest_wait_seconds`` (:func:`~.normalize.queue_age_events`), also when nothing else of the
   row changed (the vendor topic only carries changes and snapshots).
8. Discovered scopes (config rule 5; presence: the worktypes, org-wide while none is listed):
   each cycle polls what the source's :class:`~.discovery.ScopeDirectory` lists now (another
   query may have read it); a scope it no longer lists is dropped with its acknowledged snapshot
   (nothing is published as removed: its rows are unknown, not gone), a new one is polled in the
   cycle that read the listing (or, past that cycle's deadline, in the next: rule 9).
9. A cycle's deadline (:meth:`QuerySpec.cycle_timeout`) budgets what it will do: one ``timeout``
   per batch of scopes, plus one for the token fetch and one for the scope listing when the
   cycle is expected to need them (no token yet, or one that expires by then; a listing due by
   then). Each cycle sets the next one's (``retime``), so a slow token or listing never fails a
   poll that is otherwise in time. When a listing brings more batches than the running cycle's
   deadline covers (the first listing of many teams), that cycle polls nothing and the next one
   starts at once (``next_in=0``) with a deadline that does. A token the server revokes is
   fetched again inside the request that met the 401, within that request's own ``timeout``.
10. Agents' queue ids learnt by the other queries (:mod:`.requeue`): userActivity, and presence
    when it reports logons, publish an agent's state again when only its ``queue_ids`` changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import anyio
import orjson

from streamd.errors import AuthError, NormalizationError, SourceError, TransientError
from streamd.events import Event, utcnow
from streamd.jsonwire import loads
from streamd.retry import backoff
from streamd.runtime import task_group
from streamd.sources.alvaria.client import AlvariaClient, ScopeRefused, what_of
from streamd.sources.alvaria.config import SCOPE_KIND_OF, AlvariaSourceConfig, QueryName
from streamd.sources.alvaria.diff import DiffResult, ScopeState, diff_snapshot, needs_full
from streamd.sources.alvaria.discovery import ScopeDirectory
from streamd.sources.alvaria.models import ROW_READERS
from streamd.sources.alvaria.requeue import Requeue
from streamd.sources.alvaria.scope_events import AgentWorkTypes, ScopeEvents
from streamd.sources.alvaria.scopes import Scope, ScopeHealth
from streamd.sources.alvaria.shapes import SHAPES, Key, extract_rows
from streamd.sources.http import CertificateError
from streamd.sources.poller import PollResult

Cursor = Mapping[str | None, ScopeState]
Delays = Callable[[], Iterator[float]]


def scopes_of(config: AlvariaSourceConfig, query: QueryName) -> list[str | None]:
    """The scopes one cycle of ``query`` polls as configured (None = one org-wide request; a
    discovered kind starts empty)."""
    if config.discovered_kind(query) is not None:
        return []
    kind = SCOPE_KIND_OF.get(query)
    if kind is not None:
        return list(config.static_scopes(kind))
    return list(config.presence_work_type_ids) or [None]


@dataclass(frozen=True, slots=True)
class _Polled:
    """One scope's diff in this cycle, waiting for its events (built once every scope is in)."""

    scope: Scope
    result: DiffResult
    observed: datetime
    full: bool


class QuerySpec:
    """The ``PollSpec`` of one query: GET its scopes, diff, build events."""

    def __init__(
        self,
        query: QueryName,
        *,
        config: AlvariaSourceConfig,
        client: AlvariaClient,
        clock: Callable[[], float],
        wallclock: Callable[[], datetime] = utcnow,
        delays: Delays | None = None,
        directory: ScopeDirectory | None = None,
        work_types: AgentWorkTypes | None = None,
    ) -> None:
        self.name: str = query
        self.query = query
        self.config = config
        self.client = client
        self.clock = clock
        self.wallclock = wallclock
        self.shape = SHAPES[query]
        self.scopes = scopes_of(config, query)
        self.timeout = config.timeout_of(query)
        interval = config.interval_of(query)
        delays = delays or partial(backoff, initial=interval, cap=max(60.0, interval))
        self.health = ScopeHealth(
            source=config.name, query=query, scopes=self.scopes, clock=clock, delays=delays
        )
        self._check = ROW_READERS[query].check
        report_logon = "userActivity" not in config.enabled_queries()
        self.work_types = work_types or AgentWorkTypes()
        """The users' worktypes, shared with the source's other queries (presence keeps it)."""
        self.events = ScopeEvents(query, config, self._check, report_logon, self.work_types)
        self._acked: Cursor = {}
        self.requeue: Requeue | None = None
        """Agent states published again when only their queue ids changed (:mod:`.requeue`)."""
        if config.canonical and (query == "userActivity" or (query == "presence" and report_logon)):
            self.requeue = Requeue(config.name, self.work_types, self.events.current)
        self.discovered = config.discovered_kind(query)
        if self.discovered is not None and directory is None:
            raise ValueError(f"{query} discovers its {self.discovered}: it needs the source's ScopeDirectory")
        self.directory = directory
        self._planned: int | None = None
        """The batches of scopes the deadline last given to the poller covers (rule 9)."""
        self.retime: Callable[[float], None] | None = None
        """Called with the new :meth:`cycle_timeout` when discovery changed the scopes."""

    def cycle_timeout(self, *, steady: bool = False) -> float:
        """The poller's deadline of the next cycle (rule 9): every batch of scopes within its own
        ``timeout``, plus one ``timeout`` for the token fetch and one for the scope listing when
        the next cycle will need them (``steady``: without either, as in most cycles).
        """
        batches = self._batches()
        interval = self.config.interval_of(self.query)
        if not steady:
            self._planned = batches
            by = self.clock() + 2 * interval  # the next cycle's start, generously
            batches += self.client.token_due(by)
            if self.discovered is not None and self.directory is not None:
                batches += self.directory.due(self.discovered, by)
        return batches * self.timeout + max(0.1 * interval, 0.05)

    def _batches(self) -> int:
        batches = math.ceil(len(self.scopes) / self.config.scope_concurrency)
        return max(batches, 1) if self.discovered is not None else batches  # unread: one batch

    def load_cursor(self, saved: str | None) -> Cursor:
        """The last acknowledged state (in memory only; a restart starts with a snapshot)."""
        return self._acked

    def dump_cursor(self, cursor: Cursor) -> str | None:
        """Snapshots are not persisted."""
        return None

    async def fetch(self, cursor: Cursor) -> PollResult[Cursor]:
        """Poll the due scopes once (after the token fetch and the listing it needs, rule 9) and
        return the changes since ``cursor``."""
        self._acked = cursor  # the poller only hands back a cursor once its events were emitted
        if self.requeue is not None:
            self.requeue.ack(cursor)
        planned = self._planned
        await self._prepare()
        if self.discovered is not None and self.directory is not None:
            self._rescope(self.directory.current(self.discovered))
            cursor = {s: v for s, v in cursor.items() if s in self.scopes}  # dropped scopes are gone
            if planned is not None and self._batches() > planned:  # rule 9: more than budgeted
                return PollResult([], cursor, next_in=0.0)
        due = self.health.due()
        answers = await self._answers(due)
        for scope in due:  # what stops the whole query (rule 4)
            outcome = answers[scope]
            if isinstance(outcome, AuthError | CertificateError):
                raise outcome
        self.client.gate.check(what_of(self.query, None))
        state = dict(cursor)
        events: list[Event] = []
        polled, failed_now = self._settle(answers, state, events)
        if self.health.forbidden_everywhere():
            refused = ", ".join(map(str, self.scopes))
            raise AuthError(
                f"alvaria GET {self.query}: HTTP 403 for every scope ({refused}): "
                "check the API key and the client's permissions"
            )
        failure = self.health.verdict(failed_now)
        if failure is not None:
            raise failure
        if self.query == "presence" and self.scopes != [None]:
            self.work_types.update(state)
        if self.query == "channelActivity":
            self.work_types.update_channels(state)
        present = self._present(state)
        for p in polled:
            events += self.events.of(p.result, p.scope, p.observed, p.full, present)
        if self.requeue is not None:
            events += self.requeue.events(state, events, self.wallclock())
        if self.retime is not None:
            self.retime(self.cycle_timeout())  # the next cycle's token fetch or listing (rule 9)
        return PollResult(events, state)

    async def _prepare(self) -> None:
        """Read the scope listing when due, and fetch the token when the cycle needs one first, each
        within ``timeout`` (both are budgeted in :meth:`cycle_timeout`, rule 9)."""
        kind, directory = self.discovered, self.directory
        listing = kind is not None and directory is not None and directory.due(kind)
        if (listing or self.health.due()) and self.client.token_due():
            with anyio.move_on_after(self.timeout) as waited:
                await self.client.ensure_token()
            if waited.cancelled_caught:
                raise TransientError(f"alvaria token endpoint: no answer within {self.timeout:g}s")
        if listing and kind is not None and directory is not None:
            with anyio.move_on_after(self.timeout) as waited:
                await directory.scopes(kind)
            if waited.cancelled_caught:
                raise TransientError(f"alvaria {kind} listing: no answer within {self.timeout:g}s")

    def _rescope(self, listed: list[str]) -> None:
        """Poll the scopes discovery lists now (rule 8; presence: org-wide while none is listed)."""
        scopes: list[Scope] = list(listed)
        if not scopes and self.query == "presence":
            scopes = [None]
        if scopes != self.scopes:
            self.scopes = scopes
            self.health.rescope(scopes)
            if self.retime is not None:
                self.retime(self.cycle_timeout())

    def _settle(
        self, answers: dict[Scope, bytes | SourceError], state: dict[Scope, ScopeState], events: list[Event]
    ) -> tuple[list[_Polled], list[Scope]]:
        """Record each scope's outcome and diff the answers: ``(diffs, scopes that failed now)``."""
        polled: list[_Polled] = []
        failed_now: list[Scope] = []
        for scope, outcome in answers.items():
            if isinstance(outcome, ScopeRefused):
                self.health.refuse(scope, outcome)
            elif isinstance(outcome, SourceError):
                self.health.fail(scope, outcome)
                failed_now.append(scope)
            else:
                self.health.answered(scope)
                done = self._diff(scope, outcome, state.get(scope, ScopeState()), events)
                if done is not None:
                    state[scope] = done.result.state
                    polled.append(done)
        return polled, failed_now

    async def _answers(self, due: list[Scope]) -> dict[Scope, bytes | SourceError]:
        """Every due scope's body or error: at most ``scope_concurrency`` at once, each in time."""
        answers: dict[Scope, bytes | SourceError] = {}
        limiter = anyio.CapacityLimiter(self.config.scope_concurrency)
        async with task_group() as tg:  # the tasks never raise a streamd error: they record it
            for scope in due:
                tg.start_soon(self._answer, scope, limiter, answers)
        return {scope: answers[scope] for scope in due}  # in config order

    async def _answer(
        self, scope: Scope, limiter: anyio.CapacityLimiter, answers: dict[Scope, bytes | SourceError]
    ) -> None:
        async with limiter:
            with anyio.move_on_after(self.timeout):
                try:
                    answers[scope] = await self.client.scope_data(self.query, scope)
                except SourceError as exc:  # an outcome of this scope, decided on in fetch
                    answers[scope] = exc
                return
            what = what_of(self.query, scope)
            answers[scope] = TransientError(f"{what}: no answer within {self.timeout:g}s")

    def _diff(self, scope: Scope, body: bytes, prev: ScopeState, events: list[Event]) -> _Polled | None:
        """Diff one scope's answer; an unreadable answer becomes a dead letter (and None)."""
        observed = self.wallclock()
        try:
            rows = extract_rows(self.query, loads(body))
        except (orjson.JSONDecodeError, NormalizationError) as exc:
            error_type = getattr(exc, "error_type", "invalid_json")
            events.append(self.events.dead(error_type, f"{self.query} {scope or ''}: {exc}", body))
            return None
        full = needs_full(prev, self.clock(), self.config.refresh_every)
        result = diff_snapshot(
            self.shape,
            prev,
            rows,
            scope=scope,
            full=full,
            now=self.clock(),
            empty_polls_before_removal=self.config.empty_polls_before_removal,
            check=self._check,
        )
        if result.held_empty and prev.empty_streak == 0:
            self.health.held_empty(scope)
        return _Polled(scope, result, observed, full)

    def _present(self, state: Mapping[Scope, ScopeState]) -> frozenset[Key]:
        """presence: the users on any worktype's list (rule 6); empty for other queries."""
        if self.query != "presence" or len(self.scopes) < 2:
            return frozenset()
        return frozenset(key for scope_state in state.values() for key in scope_state.rows)

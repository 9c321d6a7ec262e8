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
   scope (a wrong API key, an org-wide query refused: ``AuthError``).
5. Bad bodies and unroutable rows never crash the source: they become ``DeadLetter`` events and
   are counted (``count_error(source, "processing", error_type)``). A routable row is published
   however else it deviates from its model (tolerant reading, :mod:`.diff` rule 3).
6. presence per worktype: a user who drops off one worktype's list but is still on another's is
   not logged out (the vendor event ``RowRemoved`` is published; the canonical state is not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import orjson

from streamd.errors import AuthError, NormalizationError, SourceError, TransientError
from streamd.events import DeadLetter, Event, utcnow
from streamd.jsonwire import loads
from streamd.retry import backoff
from streamd.runtime import task_group
from streamd.sources.alvaria.client import AlvariaClient, ScopeRefused, what_of
from streamd.sources.alvaria.config import AlvariaSourceConfig, QueryName
from streamd.sources.alvaria.diff import (
    SHAPES,
    BadRow,
    DiffResult,
    Key,
    ScopeState,
    diff_snapshot,
    needs_full,
    row_events,
)
from streamd.sources.alvaria.models import ROW_READERS
from streamd.sources.alvaria.normalize import (
    channel_activity_events,
    presence_events,
    team_activity_events,
    user_activity_events,
)
from streamd.sources.alvaria.scopes import Scope, ScopeHealth
from streamd.sources.http import CertificateError
from streamd.sources.poller import PollResult
from streamd.telemetry import count_error

Cursor = Mapping[str | None, ScopeState]
Delays = Callable[[], Iterator[float]]


def scopes_of(config: AlvariaSourceConfig, query: QueryName) -> list[str | None]:
    """The scopes one cycle of ``query`` polls (None = one org-wide request)."""
    if query in ("teamActivity", "userActivity"):
        return list(config.team_ids)
    if query == "channelActivity":
        return list(config.work_type_ids)
    if query == "listActivity":
        return list(config.contact_lists)
    return list(config.presence_work_type_ids) or [None]


def extract_rows(query: str, body: Any) -> list[Any]:
    """The rows of a decoded answer (listActivity's single object is one row).

    Raises:
        NormalizationError: the answer does not have the documented shape.
    """
    if not isinstance(body, dict):
        raise NormalizationError(f"{query}: the answer is not a JSON object", "invalid_body")
    if query == "listActivity":
        return [body]
    field = "users" if query == "presence" else "rows"
    rows = body.get(field)
    if rows is None:
        return []  # every wrapper field is optional in the seed; no rows = an empty snapshot
    if not isinstance(rows, list):
        raise NormalizationError(f"{query}: {field} is not a list", "invalid_body")
    return rows


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
        self.report_logon = "userActivity" not in config.enabled_queries()
        interval = config.interval_of(query)
        delays = delays or partial(backoff, initial=interval, cap=max(60.0, interval))
        self.health = ScopeHealth(
            source=config.name, query=query, scopes=self.scopes, clock=clock, delays=delays
        )
        self._check = ROW_READERS[query].check
        self._acked: Cursor = {}

    def cycle_timeout(self) -> float:
        """The poller's deadline of one cycle: every batch of scopes within its own ``timeout``."""
        batches = math.ceil(len(self.scopes) / self.config.scope_concurrency)
        return batches * self.timeout + max(0.1 * self.config.interval_of(self.query), 0.05)

    def load_cursor(self, saved: str | None) -> Cursor:
        """The last acknowledged state (in memory only; a restart starts with a snapshot)."""
        return self._acked

    def dump_cursor(self, cursor: Cursor) -> str | None:
        """Snapshots are not persisted."""
        return None

    async def fetch(self, cursor: Cursor) -> PollResult[Cursor]:
        """Poll the due scopes once and return the changes since ``cursor``."""
        self._acked = cursor  # the poller only hands back a cursor once its events were emitted
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
        present = self._present(state)
        for p in polled:
            events += self._events(p, present)
        return PollResult(events, state)

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
            events.append(self._dead(error_type, f"{self.query} {scope or ''}: {exc}", body))
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

    def _events(self, polled: _Polled, present: frozenset[Key]) -> list[Event]:
        result, scope, observed, full = polled.result, polled.scope, polled.observed, polled.full
        source = self.config.name
        events = [self._dead(b.error_type, b.reason, _raw(b)) for b in result.bad]
        events += row_events(
            self.shape, result.changes, source=source, scope=scope, observed=observed, snapshot=full
        )
        if self.config.canonical and self.query != "listActivity":
            for change in result.changes:
                try:
                    events += self._canonical(change, observed, full, change.key in present)
                except NormalizationError as exc:
                    events.append(self._dead(exc.error_type, f"{self.query}: {exc}", _raw(change)))
        return events

    def _canonical(self, change: Any, observed: datetime, full: bool, elsewhere: bool) -> list[Event]:
        source = self.config.name
        if self.query == "userActivity":
            overrides = self.config.state_map
            return user_activity_events(
                change, source=source, observed=observed, snapshot=full, overrides=overrides
            )
        if self.query == "presence":
            return presence_events(
                change,
                source=source,
                observed=observed,
                snapshot=full,
                report_logon=self.report_logon,
                logged_on_elsewhere=elsewhere,
            )
        if self.query == "channelActivity":
            return channel_activity_events(change, source=source, observed=observed, snapshot=full)
        return team_activity_events(change, source=source, observed=observed, snapshot=full)

    def _dead(self, error_type: str, error: str, raw: bytes) -> Event:
        count_error(self.config.name, "processing", error_type)
        return DeadLetter.of(
            source=self.config.name, stage="processing", error_type=error_type, error=error, raw=raw
        ).to_event()


def _raw(item: BadRow | Any) -> bytes:
    try:
        return orjson.dumps(item.row)
    except TypeError:
        return repr(item.row).encode()

"""The Alvaria runtime: one generic :class:`Poller` per query, each a supervised job.

Rules:

1. Each enabled query has a :class:`QuerySpec` (a ``PollSpec``) whose cycle GETs every scope of the
   query one after the other, so requests of one query never overlap; the poller skips missed
   slots, so a slow answer never causes a pile-up. Each query is its own job under the
   supervisor (:class:`streamd.runtime.Jobs`), sharing one HTTP client, one OAuth2 token and the
   rate gate.
2. The cursor is the per-scope :class:`ScopeState` map, kept in memory: the poller hands the new
   state back only after ``emit`` returned, and a restarted session resumes from the last
   acknowledged state (``load_cursor``), so a failed publish re-diffs instead of losing changes.
3. Statuses go through :func:`check_status` (429 -> ``BackOff`` honouring ``Retry-After``, 408/5xx
   -> ``TransientError``). A 429 closes the source-wide :class:`RateGate` (quotas are per
   ``x-api-key``, 003 L51): until it reopens every query raises ``BackOff`` for the rest of the
   wait instead of sending a request. A 404 for one scope (an unknown team / worktype / list) and
   a 403 for one scope (one the client may not see) are counted, logged once per transition, and
   that scope is skipped, so one stale or hidden id does not stop the others. A 403 on every scope
   of a query in one cycle (a wrong API key, an org-wide query refused) is an ``AuthError``: fatal,
   as are the token endpoint's refusals. Fatal means that query's job is ``failed`` (retried on
   the supervisor's slow schedule); the other queries go on.
4. Bad bodies and unroutable rows never crash the source: they become ``DeadLetter`` events and
   are counted (``count_error(source, "processing", error_type)``). A routable row is published
   however else it deviates from its model (tolerant reading, :mod:`.diff` rule 3).
5. The supervisor reports each query as a job of the source's component (``/readyz``) and the
   component's state as their aggregate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import httpx
import orjson
from anyio.abc import TaskStatus

from streamd.errors import AuthError, BackOff, NormalizationError
from streamd.events import DeadLetter, Event, utcnow
from streamd.runtime import Job
from streamd.sources.alvaria.auth import AlvariaAuth
from streamd.sources.alvaria.config import AlvariaSourceConfig, QueryName
from streamd.sources.alvaria.diff import (
    SHAPES,
    BadRow,
    DiffResult,
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
from streamd.sources.base import Emit, SourceDeps
from streamd.sources.http import check_status, httpx_errors
from streamd.sources.poller import Poller, PollResult
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.alvaria")

QUERY_PATHS: dict[str, str] = {
    "listActivity": "/reporting/queries/listActivity/data",
    "teamActivity": "/reporting/queries/teamActivity/data",
    "userActivity": "/reporting/queries/userActivity/data",
    "channelActivity": "/reporting/queries/channelActivity/data",
    "presence": "/reporting/presence/users/data",
}
SCOPE_PARAMS: dict[str, str] = {
    "listActivity": "contactList",
    "teamActivity": "teamId",
    "userActivity": "teamId",
    "channelActivity": "workTypeId",
    "presence": "workTypeId",
}

Cursor = Mapping[str | None, ScopeState]
SKIPPED_SCOPE: dict[int, tuple[str, str]] = {
    404: ("not_found", "not found"),
    403: ("forbidden", "not visible to this client"),
}
"""Answers that skip one scope of a query (error type, log text) instead of failing the source."""


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


@dataclass(slots=True)
class RateGate:
    """The earliest time (on the source's clock) any query of the source may send a request."""

    clock: Callable[[], float]
    not_before: float = float("-inf")

    def close_for(self, seconds: float) -> None:
        """No request before ``seconds`` from now (a 429's ``Retry-After``)."""
        self.not_before = max(self.not_before, self.clock() + seconds)

    def check(self, what: str) -> None:
        """Raise ``BackOff`` for the remaining wait while the gate is closed."""
        remaining = self.not_before - self.clock()
        if remaining > 0:
            raise BackOff(f"{what}: the API key is throttled for another {remaining:.1f}s", remaining)


class QuerySpec:
    """The ``PollSpec`` of one query: GET each scope, diff, build events."""

    def __init__(
        self,
        query: QueryName,
        *,
        config: AlvariaSourceConfig,
        client: httpx.AsyncClient,
        clock: Callable[[], float],
        wallclock: Callable[[], datetime] = utcnow,
        gate: RateGate | None = None,
    ) -> None:
        self.name: str = query
        self.gate = gate or RateGate(clock)
        self.query = query
        self.config = config
        self.client = client
        self.clock = clock
        self.wallclock = wallclock
        self.shape = SHAPES[query]
        self.scopes = scopes_of(config, query)
        self.url = config.base_url + QUERY_PATHS[query]
        self.report_logon = "userActivity" not in config.enabled_queries()
        self._check = ROW_READERS[query].check
        self._acked: Cursor = {}
        self._missing: dict[str | None, int] = {}  # skipped scope -> the status it answered

    def load_cursor(self, saved: str | None) -> Cursor:
        """The last acknowledged state (in memory only; a restart starts with a snapshot)."""
        return self._acked

    def dump_cursor(self, cursor: Cursor) -> str | None:
        """Snapshots are not persisted."""
        return None

    async def fetch(self, cursor: Cursor) -> PollResult[Cursor]:
        """Poll every scope once and return the changes since ``cursor``."""
        self._acked = cursor  # the poller only hands back a cursor once its events were emitted
        state = dict(cursor)
        events: list[Event] = []
        refused: list[str | None] = []
        for scope in self.scopes:
            body = await self._get(scope)
            if body is None:
                if self._missing.get(scope) == 403:
                    refused.append(scope)
                continue
            observed = self.wallclock()
            try:
                rows = extract_rows(self.query, orjson.loads(body))
            except (orjson.JSONDecodeError, NormalizationError) as exc:
                error_type = getattr(exc, "error_type", "invalid_json")
                events.append(self._dead(error_type, f"{self.query} {scope or ''}: {exc}", body))
                continue
            prev = state.get(scope, ScopeState())
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
                log.warning("alvaria %s %s %s: empty answer held back", self.config.name, self.query, scope)
            events += self._events(result, scope, observed, full)
            state[scope] = result.state
        if refused and len(refused) == len(self.scopes):
            raise AuthError(
                f"alvaria GET {self.query}: HTTP 403 for every scope ({', '.join(map(str, refused))}): "
                "check the API key and the client's permissions"
            )
        return PollResult(events, state)

    async def _get(self, scope: str | None) -> bytes | None:
        params: dict[str, str] = {}
        if scope is not None:
            params[SCOPE_PARAMS[self.query]] = scope
        if self.query == "presence":
            params["state"] = "LoggedOn"
        if self.query == "userActivity" and self.config.tz_offset:
            params["tzOffset"] = self.config.tz_offset
        what = f"alvaria GET {self.query} {scope or ''}".rstrip()
        self.gate.check(what)
        with httpx_errors():
            response = await self.client.get(self.url, params=params)
        status = response.status_code
        if status in SKIPPED_SCOPE and (status == 404 or scope is not None):
            error_type, why = SKIPPED_SCOPE[status]
            count_error(self.config.name, "fetch", error_type)
            if self._missing.get(scope) != status:  # log the transition, not every poll
                self._missing[scope] = status
                log.warning(
                    "alvaria %s %s: %s %s (HTTP %d), skipped",
                    self.config.name,
                    self.query,
                    scope,
                    why,
                    status,
                )
            return None
        try:
            check_status(response, what)
        except BackOff as exc:
            if response.status_code == 429:
                self.gate.close_for(exc.delay)
            raise
        if scope in self._missing:
            del self._missing[scope]
            log.info("alvaria %s %s: %s available again", self.config.name, self.query, scope)
        return response.content

    def _events(self, result: DiffResult, scope: str | None, observed: datetime, full: bool) -> list[Event]:
        source = self.config.name
        events = [self._dead(b.error_type, b.reason, _raw(b)) for b in result.bad]
        events += row_events(
            self.shape, result.changes, source=source, scope=scope, observed=observed, snapshot=full
        )
        if self.config.canonical and self.query != "listActivity":
            for change in result.changes:
                try:
                    events += self._canonical(change, observed, full)
                except NormalizationError as exc:
                    events.append(self._dead(exc.error_type, f"{self.query}: {exc}", _raw(change)))
        return events

    def _canonical(self, change: Any, observed: datetime, full: bool) -> list[Event]:
        source = self.config.name
        if self.query == "userActivity":
            overrides = self.config.state_map
            return user_activity_events(
                change, source=source, observed=observed, snapshot=full, overrides=overrides
            )
        if self.query == "presence":
            logon = self.report_logon
            return presence_events(
                change, source=source, observed=observed, snapshot=full, report_logon=logon
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


class AlvariaSource:
    """Polls the enabled Alvaria queries of one organisation until cancelled."""

    def __init__(
        self,
        config: AlvariaSourceConfig,
        deps: SourceDeps,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        wallclock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        jitter: float = 0.1,
    ) -> None:
        self.name = config.name
        self.config = config
        self.deps = deps
        self._transport = transport
        self._clock = clock or anyio.current_time
        self._wallclock = wallclock
        self._sleep = sleep
        self._jitter = jitter

    def auth(self) -> AlvariaAuth:
        """The OAuth2 auth shared by every query of this source."""
        c = self.config
        return AlvariaAuth(
            token_url=c.token_url,
            client_id=c.client_id,
            client_secret=c.client_secret.get_secret_value(),
            api_key=c.api_key.get_secret_value(),
            scope=c.scope,
            client_auth=c.client_auth,
            margin=c.token_refresh_margin,
            clock=self._clock,
        )

    async def run(self, emit: Emit, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run one poller job per enabled query; ready once each has polled, is retrying or failed."""
        c = self.config
        queries = c.enabled_queries()
        timeout = httpx.Timeout(max(c.timeout_of(q) for q in queries))
        async with httpx.AsyncClient(auth=self.auth(), timeout=timeout, transport=self._transport) as client:
            gate = RateGate(self._clock)
            jobs = [Job(query, partial(self.poller(query, client, gate).session, emit)) for query in queries]
            await self.deps.jobs.run(*jobs, task_status=task_status)

    def poller(self, query: QueryName, client: httpx.AsyncClient, gate: RateGate) -> Poller[Cursor]:
        """The poller of one query."""
        c = self.config
        spec = QuerySpec(
            query, config=c, client=client, clock=self._clock, wallclock=self._wallclock, gate=gate
        )
        return Poller(
            spec,
            source=c.name,
            interval=c.interval_of(query),
            timeout=c.timeout_of(query),
            jitter=self._jitter,
            clock=self._clock,
            sleep=self._sleep,
        )

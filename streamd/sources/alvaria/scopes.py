"""Per-scope health of one query: which scopes to poll this cycle, and what each last answered.

Rules:

1. A scope that answered is healthy. One that failed (no answer within the query's ``timeout``, a
   transport error, 408/5xx, a 503 with ``Retry-After``, any other refusal) backs off *alone*: it
   is left out of the cycles until its own delay has passed (full-jitter backoff starting at the
   query's interval, or the server's ``Retry-After``), while the other scopes are polled every
   cycle. Its last acknowledged snapshot is kept, so nothing is published as removed meanwhile.
2. A scope refused with 403 or 404 (:class:`~.client.ScopeRefused`) is only skipped for the cycle
   (it is asked again in the next one), as before.
3. Transitions are logged once: a scope's first failure or refusal at WARNING with what Alvaria
   said, repeats at DEBUG, its recovery at INFO. Every failed or refused request is counted
   (``errors_total{stage="fetch"}``).
4. When no scope is healthy and at least one failed, the query itself has failed:
   :meth:`ScopeHealth.verdict` names the error to raise (the first scope that failed in this cycle),
   and every scope's own delay is dropped, so that the supervisor's backoff alone paces the
   retries of a query that is down as a whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from streamd.errors import BackOff, SourceError
from streamd.runtime import error_type
from streamd.sources.alvaria.client import ScopeRefused
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.alvaria")

Scope = str | None


@dataclass(slots=True)
class _Failing:
    error: SourceError
    not_before: float
    delays: Iterator[float]


class ScopeHealth:
    """What the scopes of one query last answered (module rules 1-4); time comes from ``clock``."""

    def __init__(
        self,
        *,
        source: str,
        query: str,
        scopes: Sequence[Scope],
        clock: Callable[[], float],
        delays: Callable[[], Iterator[float]],
    ) -> None:
        self.source = source
        self.query = query
        self.scopes = list(scopes)
        self.clock = clock
        self.delays = delays
        self.failing: dict[Scope, _Failing] = {}
        self.refused: dict[Scope, int] = {}
        self.healthy: set[Scope] = set()

    def rescope(self, scopes: Sequence[Scope]) -> None:
        """Poll ``scopes`` from now on (discovery); what the dropped ones last answered is forgotten."""
        self.scopes = list(scopes)
        for gone in set(self.failing) | set(self.refused) | self.healthy:
            if gone not in self.scopes:
                self.failing.pop(gone, None)
                self.refused.pop(gone, None)
                self.healthy.discard(gone)

    def due(self) -> list[Scope]:
        """The scopes to poll now: all but those backing off."""
        now = self.clock()
        return [s for s in self.scopes if s not in self.failing or self.failing[s].not_before <= now]

    def answered(self, scope: Scope) -> None:
        """``scope`` answered: healthy again (logged when it was not)."""
        self.healthy.add(scope)
        if self.failing.pop(scope, None) is not None:
            log.info("alvaria %s %s: %s answers again", self.source, self.query, scope or "org-wide")
        elif self.refused.pop(scope, None) is not None:
            log.info("alvaria %s %s: %s available again", self.source, self.query, scope)

    def refuse(self, scope: Scope, exc: ScopeRefused) -> None:
        """``scope`` answered 403/404: skipped for this cycle (rule 2)."""
        count_error(self.source, "fetch", exc.error_type)
        self.healthy.discard(scope)
        self.failing.pop(scope, None)
        level = logging.DEBUG if self.refused.get(scope) == exc.status else logging.WARNING
        self.refused[scope] = exc.status
        log.log(level, "alvaria %s %s: %s %s, skipped: %s", self.source, self.query, scope, exc.why, exc)

    def fail(self, scope: Scope, exc: SourceError) -> None:
        """``scope`` failed: it backs off alone (rule 1)."""
        count_error(self.source, "fetch", error_type(exc))
        self.healthy.discard(scope)
        self.refused.pop(scope, None)
        entry = self.failing.get(scope)
        if entry is None:
            entry = self.failing[scope] = _Failing(exc, 0.0, self.delays())
            level = logging.WARNING
        else:
            entry.error, level = exc, logging.DEBUG
        delay = exc.delay if isinstance(exc, BackOff) else next(entry.delays)
        entry.not_before = self.clock() + delay
        log.log(
            level, "alvaria %s %s: %s; this scope backs off %.1fs alone", self.source, self.query, exc, delay
        )

    def held_empty(self, scope: Scope) -> None:
        """``scope`` answered empty after rows: held back (:mod:`.diff` rule 6), logged once."""
        log.warning("alvaria %s %s %s: empty answer held back", self.source, self.query, scope)

    def forbidden_everywhere(self) -> bool:
        """Every scope answered 403 (a wrong API key, or a query refused to this client)."""
        return len(self.refused) == len(self.scopes) and set(self.refused.values()) == {403}

    def verdict(self, failed_now: Sequence[Scope]) -> SourceError | None:
        """The error the whole query fails with (rule 4), or None while any scope is healthy.

        Args:
            failed_now: the scopes that failed in this cycle, in config order.
        """
        if self.healthy or not self.failing:
            return None
        first = failed_now[0] if failed_now else next(s for s in self.scopes if s in self.failing)
        for entry in self.failing.values():
            entry.not_before = float("-inf")  # the supervisor's backoff paces a query that is down
        return self.failing[first].error

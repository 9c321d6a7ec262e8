"""The Calabrio adherence job's poll spec: every page of the tenant's day, diffed, and the final
figures of a day once it is over.

Rules: see :mod:`streamd.sources.calabrio.source` (rule 4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx

from streamd.errors import TransientError
from streamd.events import Event
from streamd.retry import backoff
from streamd.sources.calabrio import normalize
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.schedule import Actual, AdherenceTracker
from streamd.sources.calabrio.wire import count_dead_letters
from streamd.sources.http import check_status, httpx_errors
from streamd.sources.poller import PollResult

log = logging.getLogger("streamd.sources.calabrio")


@dataclass(frozen=True, slots=True)
class AdherenceState:
    """The adherence poller's memory: each row's headline figures and when all were last sent."""

    fingerprints: dict[tuple[str, str], tuple[Any, ...]]
    snapshot_at: int | None
    """When every row was last published (None: not since this start)."""
    date: str | None = None
    """The tenant date of the last poll (kept in the cursor store: rule 4's final publish)."""


def adherence_cycle_timeout(cfg: CalabrioSourceConfig) -> float:
    """The adherence cycle's deadline (rule 4): ``timeout`` per page, for up to twice
    ``adherence_max_pages`` pages (a new day reads the last day's too), but at most nine tenths of
    ``adherence_interval`` (the next cycle is due); never less than two requests' ``timeout``."""
    pages = cfg.timeout * 2 * cfg.adherence_max_pages
    return max(cfg.timeout * 2, min(pages, cfg.adherence_interval * 0.9))


def adherence_delays(interval: float) -> Iterator[float]:
    """The adherence job's retry delays (rule 4): never sooner than one ``interval`` (the poll
    would not have come earlier either), then up to nine intervals with full jitter."""
    return (interval + delay for delay in backoff(initial=interval, cap=8 * interval))


class AdherenceSpec:
    """:class:`PollSpec` of the adherence resource: all pages of today, diffed (rule 4)."""

    name = "adherence"

    def __init__(
        self,
        cfg: CalabrioSourceConfig,
        client: httpx.AsyncClient,
        now_ms: Callable[[], int],
        tracker: AdherenceTracker | None = None,
    ) -> None:
        self.cfg, self.client, self.now_ms, self.tracker = cfg, client, now_ms, tracker
        self.cut_short: str | None = None
        """Why the last cycle stopped before a short page (logged once per change), or None."""

    def load_cursor(self, saved: str | None) -> AdherenceState | None:
        """Only the date of the last poll survives a restart (for the final publish, rule 4)."""
        return AdherenceState({}, None, saved) if saved else None

    def dump_cursor(self, cursor: AdherenceState | None) -> str | None:
        """The tenant date of the last poll."""
        return cursor.date if cursor is not None else None

    async def fetch(self, cursor: AdherenceState | None) -> PollResult[AdherenceState | None]:
        """Read every page of today's adherence; publish changed rows, or all of them as a snapshot
        after a (re)start and every ``adherence_refresh`` (so a compacted topic converges). The
        first poll of a new tenant day first publishes the last day's figures once more, marked
        ``final`` (rule 4): the figures of its last minutes are published too."""
        now = self.now_ms()
        date = normalize.tenant_date(now, self.cfg.tenant_timezone)
        when = datetime.fromtimestamp(now / 1000, UTC)
        events: list[Event] = []
        if cursor is not None and cursor.date is not None and cursor.date < date:
            ended, dead = await self._read_all(cursor.date)
            events += dead
            for row in ended:
                final = normalize.AdherenceRow({**row, "final": True}, getattr(row, "deviations", ()))
                events.append(normalize.adherence_event(self.cfg.name, final, time=when, snapshot=True))
        rows, dead = await self._read_all(date)
        if self.tracker is not None:
            for row in rows:
                seed_actual(self.tracker, row)
        refresh = self.cfg.adherence_refresh * 1000
        snapshot = (
            cursor is None
            or cursor.snapshot_at is None
            or cursor.date != date
            or now - cursor.snapshot_at >= refresh
        )
        previous = {} if cursor is None or snapshot else cursor.fingerprints
        fingerprints: dict[tuple[str, str], tuple[Any, ...]] = {}
        events += dead
        for row in rows:
            key = (date, str(row["agentId"]))
            fingerprints[key] = normalize.adherence_fingerprint(row)
            if previous.get(key) != fingerprints[key]:
                events.append(normalize.adherence_event(self.cfg.name, row, time=when, snapshot=snapshot))
        count_dead_letters(self.cfg.name, events)
        snapshot_at = now if snapshot or cursor is None else cursor.snapshot_at
        return PollResult(events, AdherenceState(fingerprints, snapshot_at, date))

    async def _read_all(self, date: str) -> tuple[list[dict[str, Any]], list[Event]]:
        """Every page of ``date`` up to a short one, bounded (rule 4)."""
        size, most = self.cfg.adherence_page_size, self.cfg.adherence_max_pages
        rows: list[dict[str, Any]] = []
        dead: list[Event] = []
        previous: list[str] = []
        cut_short: str | None = f"stopped after adherence_max_pages ({most}) full pages of {size} rows"
        for page in range(1, most + 1):
            params: dict[str, str | int] = {"date": date, "pageSize": size, "pageNumber": page}
            with anyio.move_on_after(self.cfg.timeout) as scope, httpx_errors():
                response = await self.client.get(self.cfg.adherence_path, params=params)
            if scope.cancelled_caught:  # each page has ``timeout``, not the whole cycle (rule 4)
                raise TransientError(
                    f"adherence: page {page} of {date}: no answer within {self.cfg.timeout:g}s"
                )
            check_status(response, f"calabrio GET {self.cfg.adherence_path}")
            got, bad = normalize.parse_adherence(self.cfg.name, response.content, date)
            ids = [str(row["agentId"]) for row in got]
            if ids and ids == previous:
                cut_short = f"page {page} repeats page {page - 1} (the server ignores pageNumber?)"
                break
            rows += got
            dead += bad
            previous = ids
            if len(got) + len(bad) < size:  # the seed gives no total: a short page is the last
                cut_short = None
                break
        self._report(cut_short)
        return rows, dead

    def _report(self, cut_short: str | None) -> None:
        if cut_short is not None and cut_short != self.cut_short:
            log.warning("%s: adherence: %s; the rows read so far are published", self.cfg.name, cut_short)
        elif cut_short is None and self.cut_short is not None:
            log.info("%s: adherence: every page read again", self.cfg.name)
        self.cut_short = cut_short


def seed_actual(tracker: AdherenceTracker, row: dict[str, Any]) -> None:
    """Tell the real-time adherence tracker an agent's state from an adherence row's newest
    ``actuals`` entry, when it knows none yet (an agent idle since before streamd started: the
    activity API shows only agents whose state changed inside the window)."""
    agent_id = str(row["agentId"])
    if agent_id in tracker.actual:
        return
    newest: tuple[int, str] | None = None
    for detail in row.get("details") or []:
        for actual in detail.get("actuals") or [] if isinstance(detail, dict) else []:
            if not isinstance(actual, dict) or not isinstance(actual.get("actualAgentState"), str):
                continue
            start = _utc_ms(actual.get("actualAgentStateStartTime"))
            if start is not None and (newest is None or start >= newest[0]):
                newest = (start, actual["actualAgentState"])
    if newest is not None:
        state = newest[1]
        tracker.saw(agent_id, Actual(normalize.canonical_state(state), state, newest[0]))


def _utc_ms(value: Any) -> int | None:
    """A "UTC format" time (002 L628-656): ISO-8601 or epoch ms."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)
    return None

"""The Calabrio activity job's poll spec: windows, de-duplication, enrichment, real-time adherence.

Rules: see :mod:`streamd.sources.calabrio.source` (rules 2, 3, 6, 7) and :mod:`.schedule`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx

from streamd.events import Event
from streamd.sources.calabrio import normalize, window
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import AgentRef
from streamd.sources.calabrio.reference import ReferenceData
from streamd.sources.calabrio.schedule import Actual, AdherenceTracker, ScheduleData
from streamd.sources.calabrio.window import WindowCursor
from streamd.sources.calabrio.wire import count_dead_letters
from streamd.sources.http import check_status, httpx_errors
from streamd.sources.poller import PollResult
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.calabrio")


def enrichment(ref: AgentRef | None, reference: ReferenceData) -> dict[str, Any]:
    """What the reference data adds to an agent's activity: its main team and service queues
    with their names (rule 3)."""
    if ref is None:
        return {}
    team = ref.main_team.team_id if ref.main_team else None
    if team is None and ref.teams:
        team = str(ref.teams[0])
    name = ref.main_team.name if ref.main_team and ref.main_team.name else reference.team_name(team)
    queues = [str(q) for q in ref.services]
    return {
        "teamId": team,
        "teamName": name,
        "queueIds": queues,
        "queueNames": [reference.queue_name(q) for q in queues],
    }


class ActivitySpec:
    """:class:`PollSpec` of the real-time activity detail resource (window cursor)."""

    name = "activity"

    def __init__(
        self,
        cfg: CalabrioSourceConfig,
        client: httpx.AsyncClient,
        reference: ReferenceData,
        now_ms: Callable[[], int],
        realtime: tuple[ScheduleData, AdherenceTracker] | None = None,
    ) -> None:
        self.cfg, self.client, self.reference, self.now_ms = cfg, client, reference, now_ms
        self.overlap_ms = int(cfg.overlap * 1000)
        self.realtime = realtime
        """Today's schedule and the adherence tracker, with ``realtime_adherence`` (:mod:`.schedule`)."""
        if realtime is not None:
            realtime[1].forget()  # a new session: what the last one did not publish is evaluated again

    def load_cursor(self, saved: str | None) -> WindowCursor:
        """The saved window cursor, or a fresh one ``initial_lookback`` back."""
        cursor = window.load(saved)
        if cursor is None:
            if saved:
                log.warning("%s: unreadable activity cursor, starting afresh", self.cfg.name)
            cursor = window.start(self.now_ms(), int(self.cfg.initial_lookback * 1000))
        return cursor

    def dump_cursor(self, cursor: WindowCursor) -> str:
        """Persist every cursor (it is the restart point); the cycle's events were published, so
        the adherence tracker's memory moves too (:mod:`.schedule` rule 4)."""
        if self.realtime is not None:
            self.realtime[1].commit()
        return window.dump(cursor)

    async def fetch(self, cursor: WindowCursor) -> PollResult[WindowCursor]:
        """Read one window, dedupe it against the cursor, normalize the new activities."""
        dead = await self.reference.refresh_if_stale(self.client)
        now = self.now_ms()
        win = window.plan(cursor, now, self.overlap_ms, int(self.cfg.max_window * 1000))
        if win.empty:
            dead += await self._adherence(now)
            count_dead_letters(self.cfg.name, dead)
            return PollResult(dead, cursor)
        body: dict[str, Any] = {"agentIds": list(self.cfg.agent_ids)} if self.cfg.agent_ids else {}
        with httpx_errors():
            response = await self.client.post(
                self.cfg.activity_path, params={"fromTime": win.from_ms, "toTime": win.to_ms}, json=body
            )
        check_status(response, f"calabrio POST {self.cfg.activity_path}")
        activities, bad = normalize.parse_activities(self.cfg.name, response.content)  # rule 6
        dead += bad
        by_key = {a.key: a for a in activities}
        keys = sorted(window.select(cursor, win, (a.key for a in activities)), key=lambda k: (k[1], k[0]))
        events: list[Event] = list(dead)
        for key, canonical in zip(keys, window.canonical(cursor, keys), strict=True):  # rule 7
            activity = by_key[key]
            if activity.state not in normalize.STATE_MAP:
                count_error(self.cfg.name, "processing", "unknown_variant")
            ref = self.reference.get(activity.agent_id)
            events += normalize.activity_events(
                self.cfg.name, activity, ref, canonical=canonical, enrich=enrichment(ref, self.reference)
            )
            if canonical and self.realtime is not None:
                actual = Actual(
                    normalize.canonical_state(activity.state),
                    activity.state,
                    activity.timestamp,
                    ref.display_name if ref else None,
                )
                self.realtime[1].saw(activity.agent_id, actual)
        events += await self._adherence(now)
        count_dead_letters(self.cfg.name, events)
        backlog = win.to_ms < now  # capped by max_window: read the next chunk right away
        return PollResult(
            events, window.advance(cursor, win, keys, self.overlap_ms), 0.0 if backlog else None
        )

    async def _adherence(self, now: int) -> list[Event]:
        """Real-time adherence after a window: refresh the schedule when due, evaluate every agent."""
        if self.realtime is None:
            return []
        schedule, tracker = self.realtime
        date = normalize.tenant_date(now, self.cfg.tenant_timezone)
        dead = await schedule.refresh_if_stale(self.client, date, list(self.cfg.agent_ids))
        if schedule.date != date:  # no schedule of today read yet: judging would only guess
            return dead
        return dead + tracker.evaluate(schedule.agents, now)

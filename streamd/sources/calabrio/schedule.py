"""Real-time adherence: each agent's actual state against the activity its schedule has for now.

Rules:

1. The schedule is today's (tenant time zone) Schedule Details by Agents and Date
   (``POST ~/scheduling/schedule/activity/detail?fromDate=&toDate=``, 002 L4902-4999; Plan
   Schedules permission): activities that span midnight come whole (002 L4949-4952). It is read
   by the activity job when ``realtime_adherence`` is on, before a window, again every
   ``schedule_refresh`` and when the tenant date changes; a failed read is counted and logged
   once and the last good copy of today is used (:class:`ScheduleData`); until today's schedule
   was read once, nobody is judged (a guess would publish every working agent as out). A read
   cancelled by the cycle's timeout does not count as a read: the next cycle reads again.
2. Parsing is pure (:func:`parse_schedule`): an agent row without a usable ``agentId`` and an
   activity without a usable ``activityType``, ``startTime`` or ``endTime`` (epoch ms, a number
   or a numeric string; the seed prints both) are dead letters; types are compared lower-case
   (the guide prints ``IN_SERVICE`` and ``in_service``).
3. The actual state is the agent's newest canonical state of this source (its Calabrio activity:
   with the RTDC sink, the PBX's state). :func:`judge` says ``in`` when the state is one the
   scheduled activity type allows (:data:`DEFAULT_RULES`, overridden per type by
   ``adherence_rules``; ``unscheduled`` is the rule for no activity), ``out`` when it is not, and
   ``unknown`` for a type without a rule.
4. :class:`AdherenceTracker` evaluates every agent with a known state after each window (so a
   scheduled activity that begins or ends changes the status without a state change) and
   publishes when the status or the scheduled activity changed: ``calabrio.adherence.
   AgentAdherenceState`` on ``{prefix}calabrio.adherence`` and the canonical
   :class:`~streamd.events.AgentAdherence` on ``{prefix}agent-adherence`` (both keyed
   ``{source}:{agentId}``). Its memory of what was published moves only when the activity job's
   cursor is saved, i.e. after ``emit`` returned (:meth:`AdherenceTracker.commit`).
5. An agent whose state streamd has not seen since it started is not evaluated; with
   ``adherence`` on, the adherence job tells the tracker such an agent's state from the newest
   ``actuals`` entry of its adherence row (:func:`~.adherence_job.seed_actual`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from streamd.errors import StreamdError
from streamd.events import AgentAdherence, Event, State, stable_id
from streamd.sources.calabrio.models import ADHERENCE_TOPIC
from streamd.sources.calabrio.wire import dead_letter, json_array, routed_rows
from streamd.sources.http import check_status, httpx_errors
from streamd.telemetry import count_error

log = logging.getLogger("streamd.sources.calabrio")

STATE_TYPE: Final = "calabrio.adherence.AgentAdherenceState"
UNSCHEDULED: Final = "unscheduled"
_WORKING: Final = (State.AVAILABLE, State.BUSY, State.AFTER_CALL_WORK)
_AWAY: Final = (State.NOT_READY, State.LOGGED_OUT)
DEFAULT_RULES: Final[Mapping[str, tuple[State, ...]]] = {
    "in_service": _WORKING,
    "in_service_msg": _WORKING,
    "overtime": _WORKING,
    "overtime_msg": _WORKING,
    "closed_service": _WORKING,
    "closed_service_msg": _WORKING,
    "available": _WORKING,
    "break": _AWAY,
    "lunch": _AWAY,
    "exception": _AWAY,
    "not_available": _AWAY,
    "project": (State.NOT_READY,),
    "assignment": (State.NOT_READY,),
    UNSCHEDULED: (State.LOGGED_OUT,),
}
"""Scheduled activity type (the Shifts by Agent list, 002 L6299-6352) -> the canonical states
that are in adherence during it (rule 3)."""


@dataclass(frozen=True, slots=True)
class ScheduledActivity:
    """One scheduled activity of an agent."""

    type: str
    label: str | None
    detail: str | None
    queue_id: str | None
    start_ms: int
    end_ms: int


def parse_schedule(source: str, body: bytes) -> tuple[dict[str, list[ScheduledActivity]], list[Event]]:
    """Decode a Schedule Details answer into ``agentId -> activities`` (by start) and dead letters.

    Raises:
        UnreadableAnswer: the answer cannot be read as a whole.
    """
    dead: list[Event] = []
    out: dict[str, list[ScheduledActivity]] = {}
    for agent_id, row in routed_rows(source, json_array(body, "calabrio schedule"), "schedule row", dead):
        days = row.get("activitiesByDate")
        activities = out.setdefault(agent_id, [])
        for day in days if isinstance(days, list) else []:
            listed = day.get("scheduledActivities") if isinstance(day, dict) else None
            for raw in listed if isinstance(listed, list) else []:
                activity = _activity(raw)
                if activity is None:
                    error = (
                        f"scheduled activity of agent {agent_id}: activityType, startTime or endTime unusable"
                    )
                    dead.append(dead_letter(source, "invalid_payload", error, raw))
                elif activity not in activities:  # an activity across midnight is listed under both days
                    activities.append(activity)
        activities.sort(key=lambda a: (a.start_ms, a.end_ms))
    return out, dead


def _activity(raw: Any) -> ScheduledActivity | None:
    if not isinstance(raw, dict):
        return None
    kind, start, end = raw.get("activityType"), _ms(raw.get("startTime")), _ms(raw.get("endTime"))
    if not isinstance(kind, str) or not kind or start is None or end is None:
        return None
    queue = raw.get("serviceQueueId")
    return ScheduledActivity(
        kind.lower(),
        _text(raw.get("activityTypeLabel")),
        _text(raw.get("activityDetailName")),
        str(queue) if isinstance(queue, int | str) and not isinstance(queue, bool) else None,
        start,
        end,
    )


def _ms(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def current(activities: list[ScheduledActivity], now_ms: int) -> ScheduledActivity | None:
    """The activity scheduled at ``now_ms`` (the latest-starting one when several overlap)."""
    now = [a for a in activities if a.start_ms <= now_ms < a.end_ms]
    return now[-1] if now else None


def judge(rules: Mapping[str, tuple[State, ...]], scheduled: ScheduledActivity | None, state: State) -> str:
    """``in``, ``out`` or ``unknown`` (rule 3)."""
    allowed = rules.get(scheduled.type if scheduled else UNSCHEDULED)
    if allowed is None:
        return "unknown"
    return "in" if state in allowed else "out"


@dataclass(slots=True)
class ScheduleData:
    """Today's schedule, re-read when stale or when the date changes (rule 1)."""

    source: str
    path: str
    refresh: float
    clock: Callable[[], float]
    agents: dict[str, list[ScheduledActivity]] = field(default_factory=dict)
    date: str | None = None
    _loaded_at: float | None = None
    _failing: bool = False

    async def refresh_if_stale(
        self, client: httpx.AsyncClient, date: str, agent_ids: list[int]
    ) -> list[Event]:
        """Read ``date``'s schedule when due; the dead letters of unusable parts."""
        if (
            date == self.date
            and self._loaded_at is not None
            and self.clock() - self._loaded_at < self.refresh
        ):
            return []
        started = self.clock()  # counted as loaded once read or failed, not when cancelled
        body = {"agentIds": agent_ids} if agent_ids else {}
        try:
            with httpx_errors():
                response = await client.post(self.path, params={"fromDate": date, "toDate": date}, json=body)
            check_status(response, f"calabrio POST {self.path}")
            agents, dead = parse_schedule(self.source, response.content)
        except StreamdError as exc:  # keep the last good copy (rule 1)
            count_error(self.source, "schedule", type(exc).__name__)
            if not self._failing:
                log.warning(
                    "%s: cannot read the schedule, adherence uses the last copy: %s", self.source, exc
                )
            self._failing, self._loaded_at = True, started
            return []
        if self._failing:
            log.info("%s: schedule readable again", self.source)
        self._failing, self.agents, self.date, self._loaded_at = False, agents, date, started
        return dead


@dataclass(frozen=True, slots=True)
class Actual:
    """An agent's newest canonical state."""

    state: State
    vendor_state: str | None
    since_ms: int
    agent_name: str | None = None


@dataclass(slots=True)
class AdherenceTracker:
    """Rule 4: the agents' actual states and what was published for each."""

    source: str
    rules: Mapping[str, tuple[State, ...]]
    actual: dict[str, Actual] = field(default_factory=dict)
    published: dict[str, tuple[str, str | None, int | None]] = field(default_factory=dict)
    _pending: dict[str, tuple[str, str | None, int | None]] = field(default_factory=dict)

    def saw(self, agent_id: str, actual: Actual) -> None:
        """Record an agent's newest canonical state."""
        self.actual[agent_id] = actual

    def evaluate(self, schedule: Mapping[str, list[ScheduledActivity]], now_ms: int) -> list[Event]:
        """The events of every agent whose status or scheduled activity changed (rule 4)."""
        events: list[Event] = []
        for agent_id, actual in sorted(self.actual.items()):
            scheduled = current(schedule.get(agent_id, []), now_ms)
            status = judge(self.rules, scheduled, actual.state)
            mark = (status, scheduled.type if scheduled else None, scheduled.start_ms if scheduled else None)
            if self._pending.get(agent_id, self.published.get(agent_id)) == mark:
                continue
            self._pending[agent_id] = mark
            events += adherence_events(self.source, agent_id, actual, scheduled, status)
        return events

    def commit(self) -> None:
        """The events returned so far were published (rule 4)."""
        self.published.update(self._pending)
        self._pending.clear()

    def forget(self) -> None:
        """The events returned since the last commit were not published."""
        self._pending.clear()


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def adherence_events(
    source: str, agent_id: str, actual: Actual, scheduled: ScheduledActivity | None, status: str
) -> list[Event]:
    """The vendor and the canonical event of one agent's adherence status (rule 4)."""
    since_ms = max(actual.since_ms, scheduled.start_ms if scheduled else actual.since_ms)
    canonical = AgentAdherence(
        vendor="calabrio",
        source=source,
        agent_id=agent_id,
        status=status,
        since=_utc(since_ms),
        state=actual.state,
        vendor_state=actual.vendor_state,
        agent_name=actual.agent_name,
        scheduled_activity=scheduled.type if scheduled else None,
        scheduled_label=scheduled.label if scheduled else None,
        scheduled_start=_utc(scheduled.start_ms) if scheduled else None,
        scheduled_end=_utc(scheduled.end_ms) if scheduled else None,
        queue_id=scheduled.queue_id if scheduled else None,
    )
    vendor = Event(
        topic=ADHERENCE_TOPIC,
        type=STATE_TYPE,
        source=source,
        key=f"{source}:{agent_id}",
        data={
            "agentId": agent_id,
            "inAdherence": {"in": True, "out": False}.get(status),
            "status": status,
            "since": since_ms,
            "actualAgentState": actual.vendor_state,
            "scheduledActivityType": scheduled.type if scheduled else None,
            "scheduledActivityLabel": scheduled.label if scheduled else None,
            "scheduledActivityDetail": scheduled.detail if scheduled else None,
            "scheduledStartTime": scheduled.start_ms if scheduled else None,
            "scheduledEndTime": scheduled.end_ms if scheduled else None,
            "serviceQueueId": scheduled.queue_id if scheduled else None,
        },
        time=_utc(since_ms),
        id=stable_id(source, agent_id, status, since_ms, scheduled.start_ms if scheduled else None),
    )
    return [vendor, canonical.to_event()]

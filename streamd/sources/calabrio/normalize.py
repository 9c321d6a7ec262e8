"""Pure mapping of Calabrio ONE responses to streamd events.

Canonical agent-state mapping (spec §3 ``agentState`` enum, 002 L4618-4626):

=====================  ======================  ==========================================
Calabrio agentState    canonical State         note
=====================  ======================  ==========================================
``READY_WAITING``      ``available``
``TALK``               ``busy``
``HOLD``               ``busy``                on a contact, holding it
``WORK_AFTER_CONTACT`` ``after_call_work``
``NOT_READY_BUSY``     ``not_ready``           ``reasonCode`` kept as ``reason_code``
``LOGGED_OUT``         ``logged_out``
anything else          ``unknown``             published (``$.agentState`` listed as a
                                               deviation), counted as ``unknown_variant``
=====================  ======================  ==========================================

Rules:

1. Every function here is sync and pure: bytes/dicts in, events out; no clock, no logging. The
   one side effect is counting a published deviating input (``streamd_deviations_total``, in
   :func:`activity_events` and :func:`adherence_event`, which the source calls once per
   published input).
2. Tolerant reading (:mod:`streamd.tolerant`): an activity is published whenever it can be
   routed: its agent row has a usable ``agentId`` (a non-empty string, an integer, or an
   integral number), and the activity a usable ``timestamp`` (epoch ms, an integer once
   unambiguously coerced: ``"1700000000000"`` -> ``1700000000000``) and ``agentState`` (a
   non-empty string): together they are the window's de-dup key (:mod:`.window`). An adherence
   row is published whenever its ``agentId`` is usable. Everything else that deviates from the
   models (:mod:`.models`) is kept as received (coerced where unambiguous) and its JSON paths
   ride on the event (``streamd_deviations``); the canonical :class:`AgentState` still follows.
3. Deviation paths are paths in the published value. An activity's value merges its agent row's
   fields (``$.employeeId``, a field the vendor added to the row) under its own (``$.reasonCode``);
   the one path outside the value is ``$.realTimeActivities``, listed when the row gave its
   activities as a single object instead of a list (it is read as that one activity).
4. Dead letters (:class:`~streamd.events.DeadLetter`, stage ``processing``; the caller counts
   them) only for the parts of a readable answer that cannot be routed: a row or activity that
   is not an object, or whose ``realTimeActivities`` is neither a list nor an object
   (``invalid_payload``), and a routing field that is missing or unusable (``missing_key``).
   An answer that cannot be read as a whole (not JSON, not an array, an HTML page such as a
   login page) raises :class:`UnreadableAnswer`: it says nothing about the data it should have
   carried, so the caller must ask again (a dead letter would let the window move past it).
5. Keys are ``{source}:{agentId}`` with Calabrio's WFM ``agentId``, which never changes; names
   and ACD ids from the reference data enrich the values, not the keys (a rename must not move
   an agent to another compacted key).
6. Ids are deterministic: ``stable_id(source, agentId, timestamp, agentState, reasonCode)`` for
   activities, so a redelivered activity is recognisable downstream. A ``reasonCode`` that is
   neither text nor null takes part in the key as its compact JSON text, and is left out of the
   canonical state.
7. Modules: :mod:`.wire` (the array check, row routing, ids, dead letters: one helper routes the
   rows of every answer), :mod:`.adherence` (adherence pages), this module (activities and the
   agent reference list; it re-exports the names of both for existing callers).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from streamd.events import AgentState, Event, State, stable_id
from streamd.sources.calabrio.adherence import (
    AdherenceRow,
    adherence_event,
    adherence_fingerprint,
    parse_adherence,
    tenant_date,
)
from streamd.sources.calabrio.models import (
    ACTIVITY_TOPIC,
    ACTIVITY_TYPE,
    AgentActivities,
    AgentRef,
    RealTimeActivity,
)
from streamd.sources.calabrio.window import ActivityKey
from streamd.sources.calabrio.wire import (
    UnreadableAnswer,
    agent_key,
    bounded,
    dead_letter,
    epoch_ms,
    first_of,
    ident_text,
    json_array,
    json_text,
    routed_rows,
)
from streamd.telemetry import count_deviation
from streamd.tolerant import Reader

__all__ = [
    "STATE_MAP",
    "VENDOR",
    "Activity",
    "AdherenceRow",
    "UnreadableAnswer",
    "activity_events",
    "adherence_event",
    "adherence_fingerprint",
    "agent_key",
    "canonical_state",
    "dead_letter",
    "json_array",
    "parse_activities",
    "parse_adherence",
    "parse_agents",
    "tenant_date",
]

VENDOR = "calabrio"

STATE_MAP: Mapping[str, State] = {
    "READY_WAITING": State.AVAILABLE,
    "TALK": State.BUSY,
    "HOLD": State.BUSY,
    "WORK_AFTER_CONTACT": State.AFTER_CALL_WORK,
    "NOT_READY_BUSY": State.NOT_READY,
    "LOGGED_OUT": State.LOGGED_OUT,
}

_ROW: Final = Reader(AgentActivities)
_ACTIVITY: Final = Reader(RealTimeActivity)
_AGENT: Final = Reader(AgentRef)
_ROW_IDS: Final = ("agentId", "agentld", "employeeId", "employeeld", "realTimeActivities")


@dataclass(frozen=True, slots=True)
class Activity:
    """One real-time activity with its agent's ids (the unit the window dedupes)."""

    agent_id: str
    employee_id: str | None
    state: str
    reason_code: str | None
    """The reason code when it is text or absent; ``None`` also when it deviated beyond use."""
    timestamp: int
    raw: Mapping[str, Any]
    """The vendor fields to publish: the activity's over its agent row's (rule 3)."""
    deviations: tuple[str, ...] = ()
    """Paths in :attr:`raw` that deviated from the document (rule 3)."""

    @property
    def key(self) -> ActivityKey:
        """The dedupe key ``(agentId, timestamp, agentState, reasonCode)`` (spec §3)."""
        reason = self.raw.get("reasonCode")
        text = reason if reason is None or isinstance(reason, str) else json_text(reason)
        return (self.agent_id, self.timestamp, self.state, text)


def parse_activities(source: str, body: bytes) -> tuple[list[Activity], list[Event]]:
    """Decode a real-time activity detail response into activities and dead letters (rules 2-4).

    Returns:
        The routable activities in response order, and one dead-letter event per unroutable part.

    Raises:
        UnreadableAnswer: the answer cannot be read as a whole (rule 4).
    """
    rows = json_array(body, "calabrio real-time activity detail")
    dead: list[Event] = []
    out: list[Activity] = []
    for agent_id, row in routed_rows(source, rows, "activity row", dead):
        activities = row.get("realTimeActivities")
        container: tuple[str, ...] = ()
        if isinstance(activities, dict):  # one activity, not in a list (rule 3)
            activities, container = [activities], ("$.realTimeActivities",)
        elif not isinstance(activities, list):
            if activities is not None:
                error = (
                    f"activity row of agent {agent_id}: realTimeActivities is neither a list nor an object"
                )
                dead.append(dead_letter(source, "invalid_payload", error, row))
            continue
        value, row_deviations = _ROW.check({**row, "realTimeActivities": activities} if container else row)
        shared = {k: v for k, v in value.items() if k not in _ROW_IDS}
        shared["agentId"] = agent_id
        shared["employeeId"] = ident_text(first_of(value, "employeeId", "employeeld"))
        for raw in activities:
            activity = _activity(source, agent_id, shared, container + row_deviations, raw, dead)
            if activity is not None:
                out.append(activity)
    return out, dead


def _activity(
    source: str,
    agent_id: str,
    shared: dict[str, Any],
    row_deviations: tuple[str, ...],
    raw: Any,
    dead: list[Event],
) -> Activity | None:
    """One activity of an agent row, or ``None`` after appending its dead letter."""
    what = f"activity of agent {agent_id}"
    if not isinstance(raw, dict):
        dead.append(dead_letter(source, "invalid_payload", f"{what}: expected an object", raw))
        return None
    value, deviations = _ACTIVITY.check(raw)
    state, timestamp = value.get("agentState"), epoch_ms(value.get("timestamp"))
    if not isinstance(state, str) or not state:
        dead.append(dead_letter(source, "missing_key", f"{what}: agentState is missing or not a string", raw))
        return None
    if timestamp is None:
        dead.append(dead_letter(source, "missing_key", f"{what}: timestamp is missing or not epoch ms", raw))
        return None
    reason = ident_text(value.get("reasonCode"))
    employee = shared["employeeId"]
    return Activity(
        agent_id,
        employee if isinstance(employee, str) else None,
        state,
        reason if isinstance(reason, str) else None,
        timestamp,
        {**shared, **value, "agentId": agent_id, "reasonCode": reason},
        bounded(row_deviations + deviations),
    )


def canonical_state(state: str) -> State:
    """The canonical state of a Calabrio ``agentState`` (module table)."""
    return STATE_MAP.get(state, State.UNKNOWN)


def activity_events(
    source: str,
    activity: Activity,
    ref: AgentRef | None,
    *,
    canonical: bool = True,
    enrich: Mapping[str, Any] | None = None,
) -> list[Event]:
    """The vendor event and, when ``canonical``, the canonical :class:`AgentState` event of one
    new activity.

    Args:
        source: the source name.
        activity: the activity.
        ref: its agent's reference data, if known.
        canonical: False for an activity older than the agent's newest published state (it
            arrived late): it is the vendor's history, not the agent's current state
            (:func:`streamd.sources.calabrio.window.canonical`).
        enrich: reference fields added to the vendor value (the agent's team and queues).

    A deviating activity is counted here (call this once per published activity).
    """
    since = datetime.fromtimestamp(activity.timestamp / 1000, UTC)
    key = f"{source}:{activity.agent_id}"
    data = {
        **activity.raw,
        "agentId": activity.agent_id,
        "agentState": activity.state,
        "timestamp": activity.timestamp,
        "acdId": ref.acd_id if ref else None,
        "agentName": ref.display_name if ref else None,
        **(enrich or {}),
    }
    vendor = Event(
        topic=ACTIVITY_TOPIC,
        type=ACTIVITY_TYPE,
        source=source,
        key=key,
        data=data,
        time=since,
        id=stable_id(source, *activity.key),
        deviations=activity.deviations,
    )
    if activity.deviations:
        count_deviation(source, ACTIVITY_TYPE)
    if not canonical:
        return [vendor]
    state = AgentState(
        vendor=VENDOR,
        source=source,
        agent_id=activity.agent_id,
        state=canonical_state(activity.state),
        agent_name=ref.display_name if ref else None,
        vendor_state=activity.state,
        reason_code=activity.reason_code,
        since=since,
        queue_ids=tuple(str(s) for s in ref.services) if ref else (),
    )
    return [vendor, state.to_event()]


def parse_agents(source: str, body: bytes) -> tuple[dict[str, AgentRef], list[Event]]:
    """Decode the Agent API response into ``agentId -> AgentRef`` and dead letters.

    Rows are read tolerantly: a deviating field is left out of the typed reference (it only
    enriches, nothing of it is published, so its deviations are not counted); a row without a
    usable agent id, or that is not an object, is a dead letter.

    Raises:
        UnreadableAnswer: the answer cannot be read as a whole (rule 4).
    """
    dead: list[Event] = []
    agents: dict[str, AgentRef] = {}
    rows = json_array(body, "calabrio agents")
    for agent_id, row in routed_rows(source, rows, "agent", dead, ("agentId", "id", "AgentID")):
        ref = _AGENT.read(row).model
        if ref is None:
            error = "agent: agentId is missing or not a string or number"
            dead.append(dead_letter(source, "missing_key", error, row))
            continue
        agents[agent_id] = ref if ref.agent_id == agent_id else ref.model_copy(update={"agent_id": agent_id})
    return agents, dead

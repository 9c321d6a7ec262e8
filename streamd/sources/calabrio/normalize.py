"""Pure mapping of Calabrio ONE responses to streamd events (STYLE 12).

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
anything else          ``unknown``             published, and counted as ``unknown_variant``
=====================  ======================  ==========================================

Rules:

1. Every function here is sync and pure: bytes/dicts in, events out; no clock, no logging.
2. A response that is not JSON, or a row that does not fit its model, becomes a
   :class:`~streamd.events.DeadLetter` event (stage ``processing``); the caller counts it.
3. Keys are ``{source}:{agentId}`` with Calabrio's WFM ``agentId``, which never changes; names
   and ACD ids from the reference data enrich the values, not the keys (a rename must not move
   an agent to another compacted key).
4. Ids are deterministic: ``stable_id(source, agentId, timestamp, agentState, reasonCode)`` for
   activities, so a redelivered activity is recognisable downstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from pydantic import ValidationError

from streamd.events import AgentState, DeadLetter, Event, State, stable_id
from streamd.sources.calabrio.models import (
    ACTIVITY_TOPIC,
    ACTIVITY_TYPE,
    ADHERENCE_TOPIC,
    ADHERENCE_TYPE,
    AgentActivities,
    AgentAdherence,
    AgentRef,
    RealTimeActivity,
)
from streamd.sources.calabrio.window import ActivityKey

VENDOR = "calabrio"

STATE_MAP: Mapping[str, State] = {
    "READY_WAITING": State.AVAILABLE,
    "TALK": State.BUSY,
    "HOLD": State.BUSY,
    "WORK_AFTER_CONTACT": State.AFTER_CALL_WORK,
    "NOT_READY_BUSY": State.NOT_READY,
    "LOGGED_OUT": State.LOGGED_OUT,
}


@dataclass(frozen=True, slots=True)
class Activity:
    """One real-time activity with its agent's ids (the unit the window dedupes)."""

    agent_id: str
    employee_id: str | None
    state: str
    reason_code: str | None
    timestamp: int
    raw: Mapping[str, Any]

    @property
    def key(self) -> ActivityKey:
        """The dedupe key ``(agentId, timestamp, agentState, reasonCode)`` (spec §3)."""
        return (self.agent_id, self.timestamp, self.state, self.reason_code)


def dead_letter(source: str, error_type: str, error: str, raw: bytes | str | Any) -> Event:
    """A dead-letter event for an input that could not be processed."""
    if not isinstance(raw, bytes | str):
        raw = orjson.dumps(raw, default=str).decode()
    return DeadLetter.of(
        source=source, stage="processing", error_type=error_type, error=error, raw=raw
    ).to_event()


def _json_list(source: str, body: bytes, what: str) -> tuple[list[Any] | None, list[Event]]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return None, [dead_letter(source, "invalid_json", f"{what}: {exc}", body)]
    if not isinstance(data, list):
        return None, [dead_letter(source, "invalid_payload", f"{what}: expected a JSON array", body)]
    return data, []


def parse_activities(source: str, body: bytes) -> tuple[list[Activity], list[Event]]:
    """Decode a real-time activity detail response into activities and dead letters.

    Returns:
        The activities in response order, and one dead-letter event per unusable part.
    """
    rows, dead = _json_list(source, body, "real-time activity detail")
    out: list[Activity] = []
    for row in rows or []:
        try:
            agent = AgentActivities.model_validate(row)
        except ValidationError as exc:
            dead.append(dead_letter(source, "invalid_payload", f"activity row: {_first(exc)}", row))
            continue
        for raw in agent.real_time_activities:
            try:
                act = RealTimeActivity.model_validate(raw)
            except ValidationError as exc:
                dead.append(dead_letter(source, "invalid_payload", f"activity: {_first(exc)}", raw))
                continue
            out.append(
                Activity(
                    agent.agent_id, agent.employee_id, act.agent_state, act.reason_code, act.timestamp, raw
                )
            )
    return out, dead


def canonical_state(state: str) -> State:
    """The canonical state of a Calabrio ``agentState`` (module table)."""
    return STATE_MAP.get(state, State.UNKNOWN)


def activity_events(source: str, activity: Activity, ref: AgentRef | None) -> list[Event]:
    """The vendor event and the canonical :class:`AgentState` event of one new activity."""
    since = datetime.fromtimestamp(activity.timestamp / 1000, UTC)
    key = f"{source}:{activity.agent_id}"
    data = {
        **activity.raw,
        "agentId": activity.agent_id,
        "employeeId": activity.employee_id,
        "agentState": activity.state,
        "reasonCode": activity.reason_code,
        "timestamp": activity.timestamp,
        "acdId": ref.acd_id if ref else None,
        "agentName": ref.display_name if ref else None,
    }
    vendor = Event(
        topic=ACTIVITY_TOPIC,
        type=ACTIVITY_TYPE,
        source=source,
        key=key,
        data=data,
        time=since,
        id=stable_id(source, *activity.key),
    )
    canonical = AgentState(
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
    return [vendor, canonical.to_event()]


def parse_agents(source: str, body: bytes) -> tuple[dict[str, AgentRef], list[Event]]:
    """Decode the Agent API response into ``agentId -> AgentRef`` and dead letters."""
    rows, dead = _json_list(source, body, "agents")
    agents: dict[str, AgentRef] = {}
    for row in rows or []:
        try:
            ref = AgentRef.model_validate(row)
        except ValidationError as exc:
            dead.append(dead_letter(source, "invalid_payload", f"agent: {_first(exc)}", row))
            continue
        agents[ref.agent_id] = ref
    return agents, dead


def parse_adherence(source: str, body: bytes, date: str) -> tuple[list[dict[str, Any]], list[Event]]:
    """Decode one adherence page into publishable rows (vendor fields + ``date``) and dead letters."""
    rows, dead = _json_list(source, body, "adherence")
    out: list[dict[str, Any]] = []
    for row in rows or []:
        try:
            model = AgentAdherence.model_validate(row)
        except ValidationError as exc:
            dead.append(dead_letter(source, "invalid_payload", f"adherence row: {_first(exc)}", row))
            continue
        out.append({**model.model_dump(mode="json", by_alias=True), "date": date})
    return out, dead


def adherence_fingerprint(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes an adherence row worth publishing again (spec §5: the three headline figures)."""
    return (row.get("scheduleAdherence"), row.get("scheduleConformity"), row.get("notInAdherenceSeconds"))


def adherence_event(source: str, row: Mapping[str, Any], *, time: datetime, snapshot: bool = False) -> Event:
    """The ``calabrio.adherence.AgentAdherence`` event of one row (key ``{source}:{agentId}``)."""
    agent_id = str(row["agentId"])
    return Event(
        topic=ADHERENCE_TOPIC,
        type=ADHERENCE_TYPE,
        source=source,
        key=f"{source}:{agent_id}",
        data=dict(row),
        time=time,
        id=stable_id(source, row.get("date"), agent_id, *adherence_fingerprint(row)),
        snapshot=snapshot,
    )


def tenant_date(now_ms: int, zone: str) -> str:
    """Today's date (``YYYY-MM-DD``) in the tenant's time zone: adherence is per tenant day."""
    return datetime.fromtimestamp(now_ms / 1000, ZoneInfo(zone)).date().isoformat()


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(row)"
    return f"{where}: {err['msg']}"

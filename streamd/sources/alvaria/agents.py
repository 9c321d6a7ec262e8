"""Pure canonical mapping of Alvaria userActivity and presence row changes to :class:`AgentState`.

Rules:

1. Functions here are sync and pure; they take a :class:`~streamd.sources.alvaria.diff.RowChange`
   and return canonical events. A row without a usable ``userId`` raises
   :class:`NormalizationError` (``missing_field``; the diff never lets such a row through).
2. Tolerant reading: the row is the published one (coercions applied), which may still deviate
   from its model. An ``AgentState`` is derived whenever the ``userId`` is usable, however else
   the row deviates; its optional parts (name, vendor state, reason, since) are left out when
   they are not usable strings.
3. ``stateId`` is compared case-insensitively; unknown values map to ``unknown`` and keep the raw
   string in ``vendor_state`` (the seed warns the ids "may change in future versions").

Agent state (userActivity ``stateId`` -> :class:`State`; overridable with ``state_map``):

=================================================================  ===================
stateId                                                            canonical state
=================================================================  ===================
idle                                                               available
active, held, multiline, pendingactive, preview, reserved          busy
wrap, wrapwarning                                                  after_call_work
notready, park, parkwarning, loggedon                              not_ready
loggedoff, usercleared                                             logged_out
uninitialized, exception, anything else                            unknown
=================================================================  ===================

Which row changes produce agent states:

- **userActivity** -> ``AgentState`` (agent id = ``userId``, name = ``preferredName``, vendor state
  = ``stateId``, reason = ``reasonId``, since = ``stateStartTime``) for added rows, snapshot rows
  and changes touching a state field (stateId, stateName, reasonId, reasonName, stateStartTime,
  preferredName). A removed row produces nothing: it may be a team change or the seed's
  0-rows caveat; presence reports the logoff.
- **presence** -> ``AgentState(logged_out, vendor_state="LoggedOff")`` when a user disappears
  (from every polled worktype's list: one who drops off one worktype but is still on another's
  is logged on, and gets nothing).
  When userActivity is not polled, an appearing user (or a new ``ehubSessionId``) and snapshot
  rows give ``AgentState(unknown, vendor_state="LoggedOn")``; with userActivity polled they give
  nothing, so presence never overwrites a precise state.

Agents' queues: a userActivity ``AgentState`` has ``queue_ids`` ``("team/{teamId}",)`` (the row's
``teamId``, or the polled team of the row key), followed by ``worktype/{workTypeId}`` for each
worktype the caller knows the user is associated with (presence per worktype); a presence logon
has ``worktype/{workTypeId}`` for the polled worktype and every other one the caller knows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from streamd.errors import NormalizationError
from streamd.events import AgentState, Event, State
from streamd.sources.alvaria.diff import RowChange
from streamd.sources.alvaria.rowevents import parse_time

VENDOR = "alvaria"

STATE_TABLE: dict[str, State] = {
    "idle": State.AVAILABLE,
    "active": State.BUSY,
    "held": State.BUSY,
    "multiline": State.BUSY,
    "pendingactive": State.BUSY,
    "preview": State.BUSY,
    "reserved": State.BUSY,
    "wrap": State.AFTER_CALL_WORK,
    "wrapwarning": State.AFTER_CALL_WORK,
    "notready": State.NOT_READY,
    "park": State.NOT_READY,
    "parkwarning": State.NOT_READY,
    "loggedon": State.NOT_READY,
    "loggedoff": State.LOGGED_OUT,
    "usercleared": State.LOGGED_OUT,
    "uninitialized": State.UNKNOWN,
    "exception": State.UNKNOWN,
}
"""The default stateId -> canonical state table (see the module docstring)."""

AGENT_FIELDS = frozenset(
    {"stateId", "stateName", "reasonId", "reasonName", "stateStartTime", "preferredName"}
)


def map_state(state_id: Any, overrides: Mapping[str, State] | None = None) -> State:
    """The canonical state of a userActivity ``stateId`` (case-insensitive; unknown -> UNKNOWN)."""
    if not isinstance(state_id, str):
        return State.UNKNOWN
    lowered = state_id.lower()
    if overrides:
        for name, state in overrides.items():
            if name.lower() == lowered:
                return state
    return STATE_TABLE.get(lowered, State.UNKNOWN)


def user_activity_events(
    change: RowChange,
    *,
    source: str,
    observed: datetime,
    snapshot: bool,
    overrides: Mapping[str, State] | None = None,
    work_types: tuple[str, ...] = (),
) -> list[Event]:
    """userActivity row change -> ``AgentState`` events (see the module table).

    Args:
        work_types: the worktypes the user is associated with (from presence per worktype); each
            adds ``worktype/{id}`` to ``queue_ids`` after the team.

    Raises:
        NormalizationError: the row has no usable ``userId``.
    """
    if change.change == "removed" or (change.change == "unchanged" and not snapshot):
        return []
    if change.change == "changed" and not snapshot and AGENT_FIELDS.isdisjoint(change.changed):
        return []
    row = change.row
    user_id = _required_str(row, "userId")
    since = parse_time(row.get("stateStartTime"))
    team = text_field(row, "teamId") or (change.key[0] if len(change.key) > 1 else None)
    state = AgentState(
        vendor=VENDOR,
        source=source,
        agent_id=user_id,
        state=map_state(row.get("stateId"), overrides),
        agent_name=text_field(row, "preferredName"),
        vendor_state=text_field(row, "stateId"),
        reason_code=text_field(row, "reasonId"),
        since=since,
        queue_ids=((f"team/{team}",) if team else ()) + tuple(f"worktype/{w}" for w in work_types),
    )
    return [state.to_event(time=since or observed, snapshot=snapshot)]


def presence_events(
    change: RowChange,
    *,
    source: str,
    observed: datetime,
    snapshot: bool,
    report_logon: bool,
    logged_on_elsewhere: bool = False,
    work_type_id: str | None = None,
    work_types: tuple[str, ...] = (),
) -> list[Event]:
    """presence row change -> ``AgentState`` logon/logoff events (see the module table).

    Args:
        logged_on_elsewhere: the user is still on another polled worktype's list, so a removal
            from this one is no logoff.
        work_type_id: the worktype whose list was polled (None: the org-wide list); a logon then
            has ``queue_ids`` ``("worktype/{work_type_id}",)``.
        work_types: every worktype whose list the user is on, when known: a logon's
            ``queue_ids`` are then all of them (with ``work_type_id``).

    Raises:
        NormalizationError: the row has no usable ``userId``.
    """
    row = change.row
    user_id = _required_str(row, "userId")
    name = (
        " ".join(p for p in (row.get("firstName"), row.get("lastName")) if isinstance(p, str) and p) or None
    )
    if change.change == "removed":
        if logged_on_elsewhere:
            return []
        state, vendor_state = State.LOGGED_OUT, "LoggedOff"
    elif report_logon and (snapshot or change.change != "unchanged"):
        state, vendor_state = State.UNKNOWN, "LoggedOn"
    else:
        return []
    agent = AgentState(
        vendor=VENDOR,
        source=source,
        agent_id=user_id,
        state=state,
        agent_name=name,
        vendor_state=vendor_state,
        since=observed,
        queue_ids=_work_type_queues(work_type_id, work_types) if state is not State.LOGGED_OUT else (),
    )
    return [agent.to_event(time=observed, snapshot=snapshot and change.change != "removed")]


def _work_type_queues(polled: str | None, known: tuple[str, ...]) -> tuple[str, ...]:
    ids = sorted(set(known) | ({polled} if polled else set()))
    return tuple(f"worktype/{w}" for w in ids)


def text_field(row: Mapping[str, Any], name: str) -> str | None:
    """``row[name]`` when it is a non-empty string, else None (absent, blank or deviating)."""
    value = row.get(name)
    return value if isinstance(value, str) and value else None


def _required_str(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        raise NormalizationError(f"row without {name}", "missing_field")
    return value

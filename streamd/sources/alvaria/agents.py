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

Agents' queues (``queue_ids``; what the wallboard's ``?queue=`` matches exactly, and what a queue
tile's title links to): a userActivity ``AgentState`` has ``team/{teamId}`` first (the row's
``teamId``, or the polled team of the row key); then, for each worktype the caller knows the user
is associated with (presence per worktype), in worktype order, ``worktype/{workTypeId}`` followed
by the queue ids of that worktype's channelActivity tiles the caller knows
(``worktype/{workTypeId}/{interactionTypeId}/{channelTypeId}``, :mod:`.normalize`), so that the
filter by one of a worktype's tiles shows the tile and the worktype's agents, and
``worktype/{workTypeId}`` alone shows its agents. A presence logon has the same worktype part
(the polled worktype and every other one the caller knows), and no team.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from streamd.errors import NormalizationError
from streamd.events import AgentState, Event, State, new_agent_state
from streamd.sources.alvaria.diff import RowChange
from streamd.sources.alvaria.rowevents import parse_time
from streamd.sources.alvaria.shapes import Key

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
    work_types: Iterable[str] = (),
    channels: Mapping[str, Sequence[str]] | None = None,
) -> list[Event]:
    """userActivity row change -> ``AgentState`` events (see the module table).

    Args:
        work_types: the worktypes the user is associated with (from presence per worktype).
        channels: worktype -> the queue ids of its channelActivity tiles (module docstring).

    Raises:
        NormalizationError: the row has no usable ``userId``.
    """
    if change.change == "removed" or (change.change == "unchanged" and not snapshot):
        return []
    if change.change == "changed" and not snapshot and AGENT_FIELDS.isdisjoint(change.changed):
        return []
    state = user_activity_state(
        change.row,
        change.key,
        source=source,
        overrides=overrides,
        queues=work_type_queues(work_types, channels),
    )
    return [state.to_event(time=state.since or observed, snapshot=snapshot)]


def user_activity_state(
    row: Mapping[str, Any],
    key: Key,
    *,
    source: str,
    overrides: Mapping[str, State] | None = None,
    queues: tuple[str, ...] = (),
) -> AgentState:
    """The ``AgentState`` of a present userActivity row (published row, its key).

    Args:
        queues: the worktype queue ids (:func:`work_type_queues`), after ``team/{teamId}``.

    Raises:
        NormalizationError: the row has no usable ``userId``.
    """
    user_id = _required_str(row, "userId")
    team = text_field(row, "teamId") or (key[0] if len(key) > 1 else None)
    state_id = row.get("stateId")
    return new_agent_state(  # one per row of a 10,000-row snapshot: without the frozen __init__'s cost
        vendor=VENDOR,
        source=source,
        agent_id=user_id,
        state=map_state(state_id, overrides),
        agent_name=text_field(row, "preferredName"),
        vendor_state=state_id if isinstance(state_id, str) and state_id else None,
        reason_code=text_field(row, "reasonId"),
        since=parse_time(row.get("stateStartTime")),
        queue_ids=((f"team/{team}",) if team else ()) + queues,
    )


def presence_events(
    change: RowChange,
    *,
    source: str,
    observed: datetime,
    snapshot: bool,
    report_logon: bool,
    logged_on_elsewhere: bool = False,
    work_type_id: str | None = None,
    work_types: Iterable[str] = (),
    channels: Mapping[str, Sequence[str]] | None = None,
) -> list[Event]:
    """presence row change -> ``AgentState`` logon/logoff events (see the module table).

    Args:
        logged_on_elsewhere: the user is still on another polled worktype's list, so a removal
            from this one is no logoff.
        work_type_id: the worktype whose list was polled (None: the org-wide list); a logon's
            ``queue_ids`` then include it.
        work_types: every worktype whose list the user is on, when known: a logon's
            ``queue_ids`` are then all of them (with ``work_type_id``).
        channels: worktype -> the queue ids of its channelActivity tiles (module docstring).

    Raises:
        NormalizationError: the row has no usable ``userId``.
    """
    if change.change == "removed":
        if logged_on_elsewhere:
            return []
        row = change.row
        agent = new_agent_state(
            vendor=VENDOR,
            source=source,
            agent_id=_required_str(row, "userId"),
            state=State.LOGGED_OUT,
            agent_name=_full_name(row),
            vendor_state="LoggedOff",
            since=observed,
        )
        return [agent.to_event(time=observed)]
    if not (report_logon and (snapshot or change.change != "unchanged")):
        _required_str(change.row, "userId")
        return []
    polled = (work_type_id,) if work_type_id else ()
    queues = work_type_queues((*polled, *work_types), channels)
    logon = presence_logon(change.row, source=source, observed=observed, queues=queues)
    return [logon.to_event(time=observed, snapshot=snapshot)]


def presence_logon(
    row: Mapping[str, Any], *, source: str, observed: datetime, queues: tuple[str, ...] = ()
) -> AgentState:
    """The logon ``AgentState`` (``unknown``, ``LoggedOn``) of a user on a presence list.

    Raises:
        NormalizationError: the row has no usable ``userId``.
    """
    return new_agent_state(
        vendor=VENDOR,
        source=source,
        agent_id=_required_str(row, "userId"),
        state=State.UNKNOWN,
        agent_name=_full_name(row),
        vendor_state="LoggedOn",
        since=observed,
        queue_ids=queues,
    )


def work_type_queues(
    work_types: Iterable[str], channels: Mapping[str, Sequence[str]] | None = None
) -> tuple[str, ...]:
    """An agent's worktype queue ids: per worktype (sorted, once each) ``worktype/{id}``, then the
    queue ids of its channelActivity tiles from ``channels`` (module docstring)."""
    if not work_types:  # an empty sequence (the common case without presence per worktype)
        return ()
    known = channels or {}
    ids: list[str] = []
    for work_type in sorted(set(work_types)):
        ids.append(f"worktype/{work_type}")
        ids += known.get(work_type, ())
    return tuple(ids)


def _full_name(row: Mapping[str, Any]) -> str | None:
    parts = (row.get("firstName"), row.get("lastName"))
    return " ".join(p for p in parts if isinstance(p, str) and p) or None


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

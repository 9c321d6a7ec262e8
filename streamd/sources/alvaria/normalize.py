"""Pure canonical mapping of Alvaria row changes to :class:`AgentState` and :class:`QueueMetric`.

Rules:

1. Functions here are sync and pure; they take a :class:`~streamd.sources.alvaria.diff.RowChange`
   and return canonical events. A row without a usable ``userId`` raises
   :class:`NormalizationError` (``missing_field``; the diff never lets such a row through).
2. Tolerant reading: the row is the published one (coercions applied), which may still deviate
   from its model. A canonical event is derived whenever the fields *it* needs are usable, however
   else the row deviates: an ``AgentState`` needs the ``userId``; its optional parts (name, vendor
   state, reason, since) are left out when they are not usable strings. A ``QueueMetric`` needs
   its own figure: a number (``count`` / ``seconds``), or a date-time string or ``""``
   (``timestamp``), or absent/null; a metric whose figure is anything else is skipped and the
   other metrics of the row still flow. Queue ids come from the row key (:mod:`.diff`), so a
   missing ``workTypeId`` / ``teamId`` falls back to the polled scope as the vendor event's key does.
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

Which row changes produce canonical events:

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
- **channelActivity** -> one ``QueueMetric`` per counter (unit ``count``), per ``*Dur`` (unit
  ``seconds``) and ``longestWaitingQueueTime`` (unit ``timestamp``), named as in the canonical
  table below (other figures keep their Alvaria names), queue id
  ``worktype/{workTypeId}/{interactionTypeId}/{channelTypeId}`` = ``worktype/`` + the row key
  (one worktype has one row per
  interaction and channel type). Added and snapshot rows give every metric; a changed row gives
  the changed metrics plus the current ``*Dur`` values. Removed rows give nothing.
- **teamActivity** -> one ``QueueMetric`` per counter, queue id ``team/{teamId}`` (the row key),
  same rules, plus the sums ``agents_busy`` and ``agents_logged_in`` (below) whenever one of
  their counters is published and all of them are usable numbers.
- **listActivity** -> nothing canonical (a dialler list is not a queue).

Agents' queues: a userActivity ``AgentState`` has ``queue_ids`` ``("team/{teamId}",)`` (the row's
``teamId``, or the polled team of the row key); a presence one ``("worktype/{workTypeId}",)``
when the caller says which worktype's list it polled.

Canonical queue metrics (:data:`streamd.events.CANONICAL_QUEUE_METRICS`; a figure with a
canonical name is published under it only, every other one under its Alvaria name, as before;
the ``alvaria.{query}`` topics keep the rows as received):

=====================  ===============================================  =========================  ========
query                  Alvaria figure                                   canonical metric           unit
=====================  ===============================================  =========================  ========
channelActivity        ``queueCount``                                   ``waiting``                contacts
channelActivity        ``maxQueueDur``                                  ``longest_wait_seconds``   seconds
teamActivity           ``idleCount``                                    ``agents_available``       agents
teamActivity           sum of ``activeCount``, ``pendingActiveCount``,  ``agents_busy``            agents
                       ``holdCount``, ``multiLineCount``,
                       ``previewCount`` (the busy states above)
teamActivity           sum of every team counter                        ``agents_logged_in``       agents
=====================  ===============================================  =========================  ========

No Alvaria real-time query has an average wait, a service level, or answered / abandoned counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from streamd.errors import NormalizationError
from streamd.events import AgentState, Event, QueueMetric, State
from streamd.sources.alvaria.diff import RowChange, parse_time

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

TEAM_COUNTERS = (
    "notReadyCount",
    "parkCount",
    "parkWarningCount",
    "idleCount",
    "pendingActiveCount",
    "activeCount",
    "wrapCount",
    "wrapWarningCount",
    "multiLineCount",
    "holdCount",
    "previewCount",
)
CHANNEL_COUNTERS = (
    "dialCount",
    "activeCount",
    "queueCount",
    "selfServiceCount",
    "previewCount",
    "holdCount",
    "inactiveCount",
    "wrapCount",
    "ringCount",
)
CHANNEL_DURATIONS = ("selfServiceDur", "queueDur", "activeDur", "previewDur", "maxQueueDur")
CHANNEL_UNITS: dict[str, str] = (
    dict.fromkeys(CHANNEL_COUNTERS, "count")
    | dict.fromkeys(CHANNEL_DURATIONS, "seconds")
    | {"longestWaitingQueueTime": "timestamp"}
)
TEAM_UNITS: dict[str, str] = dict.fromkeys(TEAM_COUNTERS, "count")

CHANNEL_CANONICAL: dict[str, tuple[str, str]] = {
    "queueCount": ("waiting", "contacts"),
    "maxQueueDur": ("longest_wait_seconds", "seconds"),
}
"""channelActivity figure -> (canonical metric, unit); the module's canonical table."""
TEAM_CANONICAL: dict[str, tuple[str, str]] = {"idleCount": ("agents_available", "agents")}
"""teamActivity figure -> (canonical metric, unit); the module's canonical table."""
TEAM_BUSY = ("activeCount", "pendingActiveCount", "holdCount", "multiLineCount", "previewCount")
TEAM_SUMS: dict[str, tuple[str, ...]] = {"agents_busy": TEAM_BUSY, "agents_logged_in": TEAM_COUNTERS}
"""Canonical agent counts of a team that are sums of its counters."""


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
) -> list[Event]:
    """userActivity row change -> ``AgentState`` events (see the module table).

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
    team = _text(row, "teamId") or (change.key[0] if len(change.key) > 1 else None)
    state = AgentState(
        vendor=VENDOR,
        source=source,
        agent_id=user_id,
        state=map_state(row.get("stateId"), overrides),
        agent_name=_text(row, "preferredName"),
        vendor_state=_text(row, "stateId"),
        reason_code=_text(row, "reasonId"),
        since=since,
        queue_ids=(f"team/{team}",) if team else (),
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
) -> list[Event]:
    """presence row change -> ``AgentState`` logon/logoff events (see the module table).

    Args:
        logged_on_elsewhere: the user is still on another polled worktype's list, so a removal
            from this one is no logoff.
        work_type_id: the worktype whose list was polled (None: the org-wide list); a logon then
            has ``queue_ids`` ``("worktype/{work_type_id}",)``.

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
        queue_ids=(f"worktype/{work_type_id}",) if work_type_id and state is not State.LOGGED_OUT else (),
    )
    return [agent.to_event(time=observed, snapshot=snapshot and change.change != "removed")]


def channel_activity_events(
    change: RowChange, *, source: str, observed: datetime, snapshot: bool
) -> list[Event]:
    """channelActivity row change -> ``QueueMetric`` events (see the module table).

    The queue id is ``worktype/`` + the row key (workTypeId, interactionTypeId, channelTypeId).
    """
    row = change.row
    queue_id = "worktype/" + "/".join(change.key)
    names = [row.get(f) for f in ("workTypeName", "interactionTypeName", "channelTypeName")]
    queue_name = " / ".join(n for n in names if isinstance(n, str) and n) or None
    return _metrics(
        change,
        CHANNEL_UNITS,
        CHANNEL_DURATIONS,
        source,
        queue_id,
        queue_name,
        observed,
        snapshot,
        CHANNEL_CANONICAL,
    )


def team_activity_events(
    change: RowChange, *, source: str, observed: datetime, snapshot: bool
) -> list[Event]:
    """teamActivity row change -> ``QueueMetric`` events (see the module table).

    The queue id is ``team/`` + the row key (the teamId).
    """
    name = _text(change.row, "teamName")
    queue_id = "team/" + "/".join(change.key)
    events = _metrics(change, TEAM_UNITS, (), source, queue_id, name, observed, snapshot, TEAM_CANONICAL)
    if not events:
        return events
    published = {f for f in TEAM_COUNTERS if snapshot or change.change == "added" or f in change.changed}
    for metric, parts in TEAM_SUMS.items():
        figures = [change.row.get(p) for p in parts]
        if published.isdisjoint(parts) or not all(
            _usable_figure(f, "count") and f is not None for f in figures
        ):
            continue
        qm = QueueMetric(
            vendor=VENDOR,
            source=source,
            queue_id=queue_id,
            metric=metric,
            value=sum(f for f in figures if isinstance(f, int | float)),
            unit="agents",
            queue_name=name,
            as_of=observed,
        )
        events.append(qm.to_event(time=observed, snapshot=snapshot))
    return events


def _metrics(
    change: RowChange,
    units: Mapping[str, str],
    ticking: tuple[str, ...],
    source: str,
    queue_id: str,
    queue_name: str | None,
    observed: datetime,
    snapshot: bool,
    canonical: Mapping[str, tuple[str, str]],
) -> list[Event]:
    if change.change == "removed" or (change.change == "unchanged" and not snapshot):
        return []
    if snapshot or change.change == "added":
        fields: list[str] = list(units)
    else:
        fields = [f for f in change.changed if f in units] + [t for t in ticking if t not in change.changed]
        if not any(f in units for f in change.changed):
            return []
    row = change.row
    events = []
    for metric in fields:
        value = row.get(metric)
        if not _usable_figure(value, units[metric]):
            continue  # this figure deviates and could not be coerced: the vendor event lists it
        name, unit = canonical.get(metric, (metric, units[metric]))
        qm = QueueMetric(
            vendor=VENDOR,
            source=source,
            queue_id=queue_id,
            metric=name,
            value=value,
            unit=unit,
            queue_name=queue_name,
            as_of=observed,
        )
        events.append(qm.to_event(time=observed, snapshot=snapshot))
    return events


def _usable_figure(value: Any, unit: str) -> bool:
    """Whether ``value`` can be published as a metric of ``unit`` (absent/null always can)."""
    if value is None:
        return True
    if unit == "timestamp":
        return isinstance(value, str) and (value == "" or parse_time(value) is not None)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(row: Mapping[str, Any], name: str) -> str | None:
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

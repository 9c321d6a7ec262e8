"""Pure canonical mapping of Alvaria row changes to :class:`QueueMetric` (agent states: :mod:`.agents`).

Rules:

1. Functions here are sync and pure; they take a :class:`~streamd.sources.alvaria.diff.RowChange`
   (or a present row) and return canonical events.
2. Tolerant reading: the row is the published one (coercions applied), which may still deviate
   from its model. A ``QueueMetric`` needs its own figure: a number (``count`` / ``seconds``), or
   a date-time string or ``""`` (``timestamp``), or absent/null; a metric whose figure is anything
   else is skipped and the other metrics of the row still flow, however else the row deviates.
   Queue ids come from the row key (:mod:`.diff`), so a missing ``workTypeId`` / ``teamId``
   falls back to the polled scope as the vendor event's key does.
Which row changes produce queue metrics:

- **channelActivity** -> one ``QueueMetric`` per counter (unit ``count``), per ``*Dur`` (unit
  ``seconds``) and ``longestWaitingQueueTime`` (unit ``timestamp``), named as in the canonical
  table below (other figures keep their Alvaria names), queue id
  ``worktype/{workTypeId}/{interactionTypeId}/{channelTypeId}`` = ``worktype/`` + the row key
  (one worktype has one row per
  interaction and channel type). Added and snapshot rows give every metric; a changed row gives
  the changed metrics plus the current ``*Dur`` values. Removed rows give nothing.
- **channelActivity, every poll**: ``longest_wait_seconds`` ticks while a contact waits, and the
  diff ignores ticking fields (:mod:`.diff` rule 4); so every row present in a poll that produced
  no other canonical metric for it gives :func:`queue_age_events`: its ``longest_wait_seconds``
  from ``maxQueueDur``, or, when that is absent, the age of ``longestWaitingQueueTime`` at the
  poll (``""``: nothing waiting, 0). The same fallback fills an absent ``maxQueueDur`` of added,
  snapshot and changed rows.
- **teamActivity** -> one ``QueueMetric`` per counter, queue id ``team/{teamId}`` (the row key),
  same rules, plus the sums ``agents_busy`` and ``agents_logged_in`` (below) whenever one of
  their counters is published and all of them are usable numbers.
- **listActivity** -> nothing canonical (a dialler list is not a queue).

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
                       ``previewCount`` (busy in :mod:`.agents`)
teamActivity           sum of every team counter                        ``agents_logged_in``       agents
=====================  ===============================================  =========================  ========

No Alvaria real-time query has an average wait, a service level, or answered / abandoned counts.

Queue ids and agents: a worktype has no tile of its own (no query sums its channels); its tiles
are ``worktype/{workTypeId}/{interactionTypeId}/{channelTypeId}``
(:func:`channel_queue_id`). The wallboard's ``?queue=`` matches ids exactly, and a tile's title
links to ``?queue={its id}``; so an agent associated with a worktype (presence per worktype)
carries ``worktype/{workTypeId}`` *and* the ids of that worktype's tiles (:mod:`.agents`):
filtering by a tile shows the tile with the worktype's agents (and the page's "agents
available" count for it), ``worktype/{workTypeId}`` alone shows the worktype's agents, and
``team/{teamId}`` shows a team's tile with its agents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from streamd.events import Event, QueueMetric
from streamd.sources.alvaria.agents import VENDOR, text_field
from streamd.sources.alvaria.diff import RowChange
from streamd.sources.alvaria.rowevents import parse_time

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


def channel_activity_events(
    change: RowChange, *, source: str, observed: datetime, snapshot: bool
) -> list[Event]:
    """channelActivity row change -> ``QueueMetric`` events (see the module table).

    The queue id is ``worktype/`` + the row key (workTypeId, interactionTypeId, channelTypeId).
    """
    row = change.row
    queue_id = channel_queue_id(change.key)
    queue_name = _channel_name(row)
    if row.get("maxQueueDur") is None:
        waited = longest_wait_seconds(row, observed)
        if waited is not None:
            change = replace(change, row=row | {"maxQueueDur": waited})
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


def channel_queue_id(key: tuple[str, ...]) -> str:
    """The queue id of a channelActivity row (its tile): ``worktype/`` + the row key joined by ``/``."""
    return "worktype/" + "/".join(key)


def longest_wait_seconds(row: Mapping[str, Any], observed: datetime) -> int | float | None:
    """How long the oldest waiting contact of a channelActivity row has waited at ``observed``:
    ``maxQueueDur``, else the age of ``longestWaitingQueueTime`` (``""``: 0); None when neither
    is usable."""
    value = row.get("maxQueueDur")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    since = row.get("longestWaitingQueueTime")
    if since == "":
        return 0
    at = parse_time(since)
    return None if at is None else max(0, int((observed - at).total_seconds()))


def queue_age_events(
    key: tuple[str, ...], row: Mapping[str, Any], *, source: str, observed: datetime
) -> list[Event]:
    """The ``longest_wait_seconds`` of a channelActivity row this poll found unchanged (it ticks;
    see the module table); nothing when the row has no usable figure for it."""
    value = longest_wait_seconds(row, observed)
    if value is None:
        return []
    qm = QueueMetric(
        vendor=VENDOR,
        source=source,
        queue_id=channel_queue_id(key),
        metric=CHANNEL_CANONICAL["maxQueueDur"][0],
        value=value,
        unit=CHANNEL_CANONICAL["maxQueueDur"][1],
        queue_name=_channel_name(row),
        as_of=observed,
    )
    return [qm.to_event(time=observed)]


def _channel_name(row: Mapping[str, Any]) -> str | None:
    names = [row.get(f) for f in ("workTypeName", "interactionTypeName", "channelTypeName")]
    return " / ".join(n for n in names if isinstance(n, str) and n) or None


def team_activity_events(
    change: RowChange, *, source: str, observed: datetime, snapshot: bool
) -> list[Event]:
    """teamActivity row change -> ``QueueMetric`` events (see the module table).

    The queue id is ``team/`` + the row key (the teamId).
    """
    name = text_field(change.row, "teamName")
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

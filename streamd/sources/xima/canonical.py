"""Canonical events from Xima realtime values: pure functions, only where the mapping is sound.

The seeds document no realtime metric catalogue (a metric is whatever the admin picked in the UI),
so only the category type is trusted; agent state needs the operator to name the state metric.
A queue metric's key is stable: the queue is the GROUP's category value (or the configured
``system_queue``), the metric the canonical name when the metric maps to one, else the metric
id (not its display name, which the admin may rename); the vendor topic always carries both.

=====================  ==============================  =============================================
category / type        condition                       canonical event
=====================  ==============================  =============================================
GROUP, documented type always (a group is a queue)     ``QueueMetric(queue_id=categoryValue,
                                                       metric=canonical name or metricId, value,
                                                       unit)``
NONE                   ``system_queue`` set            ``QueueMetric(queue_id=system_queue,
                       (default ``"all"``)             metric=canonical name or metricId)``
CALL_DIRECTION /       ``system_queue`` set            ``QueueMetric(queue_id=system_queue,
ACCOUNT_CODE                                           metric="{metricId}:{categoryValue}")``
AGENT, STRING          metric id listed in the         ``AgentState(agent_id=extension or alias or
                       config's ``agent_state_metrics`` categoryValue, state=table below,
                                                       queue_ids=the agent's groups, see below)``
AGENT, other types     —                               none (a count or duration is not a state)
any, UNTYPED           —                               none (the value kept as received is not a
                                                       usable figure; the vendor event says why)
=====================  ==============================  =============================================

Canonical metric names (:data:`streamd.events.CANONICAL_QUEUE_METRICS`): the config's
``queue_metric_map`` (metric id -> canonical name) first, else the metric's display name by
:data:`QUEUE_METRIC_NAMES` (case, spaces, ``_`` and ``-`` ignored). A metric maps only when its
value type fits the canonical unit; it is then published under the canonical name only:

=========================  ===========================================  ====================================
canonical metric (unit)    default display names                        value
=========================  ===========================================  ====================================
``waiting`` (contacts)     Calls in Queue, In Queue, Calls Waiting,     COUNT
                           Queued, Waiting
``longest_wait_seconds``   Longest Wait, Longest Wait Time,             DURATION / AVERAGE_DURATION: live ms
(seconds)                  Longest Waiting, Oldest Call                 / 1000; EMPTY: ``None``
``average_wait_seconds``   Average Wait, Average Wait Time, Avg Wait,   same
(seconds)                  Average Speed of Answer
``service_level_percent``  Service Level, Service Level %               COUNT, or STRING ``"92"`` / ``"92%"``
(percent)
``answered`` (contacts)    Answered, Calls Answered, Answered Calls     COUNT
``abandoned`` (contacts)   Abandoned, Calls Abandoned, Abandoned Calls  COUNT
``agents_available``       Agents Available, Available Agents,          COUNT
(agents)                   Agents Idle
``agents_busy`` (agents)   Agents Busy, Busy Agents, Agents On Call     COUNT
``agents_logged_in``       Agents Logged In, Logged In Agents           COUNT
(agents)
=========================  ===========================================  ====================================

Every other metric keeps being published, under its metric id: COUNT → count (unit ``count``),
DURATION/AVERAGE_DURATION → live ms at publish time (unit ``ms``), BOOLEAN/STRING → as is,
EMPTY → ``None``.

Deviations elsewhere in the entry (unknown fields, a coerced figure, an unreadable
``lastUpdateTime``, then timed at the read time) do not stop the canonical event.

Agents' queues: Xima has no membership endpoint, and a metric has one category only. An
*agent-group metric* is an AGENT metric the admin set up for the agents of one group (e.g.
"Sales Agent State", its Category Selection the Sales agents); the config's
``agent_group_metrics`` maps such metric ids to the group's queue id (the GROUP category value of
that group's queue metrics). An agent listed by one (in the metric list's ``categorySelection``
or as a category value of its values) belongs to that queue; its AgentState carries the sorted
queue ids (:mod:`.state` keeps the membership).

Agent state strings (case, spaces, ``_`` and ``-`` ignored; the config's ``agent_state_map``
extends or overrides this; anything else is ``unknown`` with the vendor string kept):

- ``available``: Available, Idle, Ready, Logged In
- ``busy``: Talking, Ringing, Holding, On Hold, Busy, On Call, Dialing, Conference, Transferring
- ``after_call_work``: Wrap Up, Wrapup, ACW, After Call Work
- ``not_ready``: DND, Do Not Disturb, Not Ready, Break, Lunch, Away, Unavailable
- ``logged_out``: Logged Out, Offline
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from streamd.events import CANONICAL_QUEUE_METRICS, AgentState, QueueMetric, State
from streamd.sources.xima.models import (
    AverageDurationValue,
    BooleanValue,
    CountValue,
    DurationValue,
    EmptyValue,
    MetricKey,
    MetricValue,
    RealtimeMetricValue,
    StringValue,
    UntypedValue,
)

VENDOR = "xima"

AGENT_STATES: dict[str, State] = {
    **dict.fromkeys(["available", "idle", "ready", "loggedin"], State.AVAILABLE),
    **dict.fromkeys(
        [
            "talking",
            "ringing",
            "holding",
            "onhold",
            "busy",
            "oncall",
            "dialing",
            "conference",
            "transferring",
        ],
        State.BUSY,
    ),
    **dict.fromkeys(["wrapup", "acw", "aftercallwork"], State.AFTER_CALL_WORK),
    **dict.fromkeys(
        ["dnd", "donotdisturb", "notready", "break", "lunch", "away", "unavailable"], State.NOT_READY
    ),
    **dict.fromkeys(["loggedout", "offline"], State.LOGGED_OUT),
}
"""The default agent-state table (keys are folded with :func:`fold_state`)."""

QUEUE_METRIC_NAMES: dict[str, str] = {
    **dict.fromkeys(["callsinqueue", "inqueue", "callswaiting", "queued", "waiting"], "waiting"),
    **dict.fromkeys(
        ["longestwait", "longestwaittime", "longestwaiting", "oldestcall"], "longest_wait_seconds"
    ),
    **dict.fromkeys(
        ["averagewait", "averagewaittime", "avgwait", "averagespeedofanswer"], "average_wait_seconds"
    ),
    **dict.fromkeys(["servicelevel", "servicelevel%"], "service_level_percent"),
    **dict.fromkeys(["answered", "callsanswered", "answeredcalls"], "answered"),
    **dict.fromkeys(["abandoned", "callsabandoned", "abandonedcalls"], "abandoned"),
    **dict.fromkeys(["agentsavailable", "availableagents", "agentsidle"], "agents_available"),
    **dict.fromkeys(["agentsbusy", "busyagents", "agentsoncall"], "agents_busy"),
    **dict.fromkeys(["agentsloggedin", "loggedinagents"], "agents_logged_in"),
}
"""Default display name (folded with :func:`fold_state`) -> canonical queue metric."""
_COUNTS = frozenset(
    {"waiting", "answered", "abandoned", "agents_available", "agents_busy", "agents_logged_in"}
)
_SECONDS = frozenset({"longest_wait_seconds", "average_wait_seconds"})


def fold_state(text: str) -> str:
    """Fold a vendor state string for table lookup (case, spaces, ``_`` and ``-`` ignored)."""
    return re.sub(r"[\s_\-]+", "", text).casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class CanonicalRules:
    """What the canonical mapping needs from the config."""

    agent_state_metrics: frozenset[str] = frozenset()
    agent_states: Mapping[str, State] = field(default_factory=lambda: dict(AGENT_STATES))
    canonical: bool = True
    system_queue: str | None = "all"
    queue_metric_map: Mapping[str, str] = field(default_factory=dict)
    agent_group_metrics: Mapping[str, str] = field(default_factory=dict)
    """Agent-group metric id -> the queue id its agents belong to."""


def canonical_event(
    source: str,
    key: MetricKey,
    value: MetricValue,
    data: RealtimeMetricValue,
    when: datetime,
    rules: CanonicalRules,
    queue_ids: tuple[str, ...] = (),
) -> AgentState | QueueMetric | None:
    """The canonical event for one value (see the table above), or None when there is no sound one.

    Args:
        queue_ids: the queues of the agent (an AgentState's ``queue_ids``).
    """
    if isinstance(value, UntypedValue):
        return None
    category = data.category_type
    if category == "GROUP" and key.category_value is not None:
        return _queue_metric(source, key.category_value, key, value, data, when, rules, canonical=True)
    if rules.system_queue is not None and category == "NONE":
        return _queue_metric(source, rules.system_queue, key, value, data, when, rules, canonical=True)
    if (
        rules.system_queue is not None
        and category in ("CALL_DIRECTION", "ACCOUNT_CODE")
        and key.category_value
    ):
        return _queue_metric(source, rules.system_queue, key, value, data, when, rules, canonical=False)
    if key.category_value is None:
        return None
    if (
        data.category_type == "AGENT"
        and isinstance(value, StringValue)
        and key.metric_id in rules.agent_state_metrics
        and data.agent is not None
    ):
        agent = data.agent
        return AgentState(
            vendor=VENDOR,
            source=source,
            agent_id=agent.extension or agent.alias or agent.display,
            agent_name=agent.name,
            state=rules.agent_states.get(fold_state(value.value), State.UNKNOWN),
            vendor_state=value.value,
            since=when,
            queue_ids=queue_ids,
        )
    return None


def canonical_name(key: MetricKey, data: RealtimeMetricValue, rules: CanonicalRules) -> str | None:
    """The canonical metric a value maps to by name (config map, else display name), or None."""
    mapped = rules.queue_metric_map.get(key.metric_id)
    if mapped is not None:
        return mapped
    return QUEUE_METRIC_NAMES.get(fold_state(data.metric_name)) if data.metric_name else None


def canonical_value(name: str, value: MetricValue, live_ms: float | None) -> tuple[bool, float | int | None]:
    """``(True, figure)`` when ``value`` fits canonical metric ``name``'s unit, else ``(False, None)``."""
    if isinstance(value, EmptyValue):
        return True, None
    if name in _SECONDS and isinstance(value, DurationValue | AverageDurationValue):
        return True, None if live_ms is None else live_ms / 1000
    if name in _COUNTS and isinstance(value, CountValue):
        return True, value.count
    if name == "service_level_percent":
        if isinstance(value, CountValue):
            return True, value.count
        if isinstance(value, StringValue):
            try:
                return True, float(value.value.strip().removesuffix("%"))
            except ValueError:
                return False, None
    return False, None


def _queue_metric(
    source: str,
    queue_id: str,
    key: MetricKey,
    value: MetricValue,
    data: RealtimeMetricValue,
    when: datetime,
    rules: CanonicalRules,
    *,
    canonical: bool,
) -> QueueMetric:
    name = canonical_name(key, data, rules) if canonical else None
    fits, figure = canonical_value(name, value, data.computed_ms) if name else (False, None)
    number: float | int | str | bool | None
    unit: str | None
    if name is not None and fits:
        metric, number, unit = name, figure, CANONICAL_QUEUE_METRICS[name]
    else:
        metric = key.metric_id if canonical else f"{key.metric_id}:{key.category_value}"
        number, unit = _queue_value(value, data.computed_ms)
    return QueueMetric(
        vendor=VENDOR,
        source=source,
        queue_id=queue_id,
        queue_name=queue_id,
        metric=metric,
        value=number,
        unit=unit,
        as_of=when,
    )


def _queue_value(
    value: MetricValue, live: float | None
) -> tuple[float | int | str | bool | None, str | None]:
    if isinstance(value, CountValue):
        return value.count, "count"
    if isinstance(value, DurationValue | AverageDurationValue):
        return live, "ms"
    if isinstance(value, BooleanValue | StringValue):
        return value.value, None
    return None, None

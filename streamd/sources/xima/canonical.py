"""Canonical events from Xima realtime values (DESIGN §3): pure functions, only where the mapping is sound.

The seeds document no realtime metric catalogue (a metric is whatever the admin picked in the UI),
so only the category type is trusted; agent state needs the operator to name the state metric.
``QueueMetric.metric`` is the metric's name from ``GET /realtime/metrics`` (what a wallboard shows),
or its id while the list is unknown; the vendor topic always carries both.

=====================  ==============================  =============================================
category / type        condition                       canonical event
=====================  ==============================  =============================================
GROUP, documented type always (a group is a queue)     ``QueueMetric(queue_id=categoryValue,
                                                       metric=metricName or metricId, value, unit)``;
                                                       COUNT → count
                                                       (unit ``count``), DURATION/AVERAGE_DURATION →
                                                       live ms at publish time (unit ``ms``),
                                                       BOOLEAN/STRING → as is, EMPTY → ``None``
AGENT, STRING          metric id listed in the         ``AgentState(agent_id=extension or alias or
                       config's ``agent_state_metrics`` categoryValue, state=table below)``
AGENT, other types     —                               none (a count or duration is not a state)
NONE / CALL_DIRECTION  —                               none (no queue or agent entity)
/ ACCOUNT_CODE
any, UNTYPED           —                               none (the value kept as received is not a
                                                       usable figure; the vendor event says why)
=====================  ==============================  =============================================

Deviations elsewhere in the entry (unknown fields, a coerced figure, an unreadable
``lastUpdateTime``, then timed at the read time) do not stop the canonical event.

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

from streamd.events import AgentState, QueueMetric, State
from streamd.sources.xima.models import (
    AverageDurationValue,
    BooleanValue,
    CountValue,
    DurationValue,
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


def fold_state(text: str) -> str:
    """Fold a vendor state string for table lookup (case, spaces, ``_`` and ``-`` ignored)."""
    return re.sub(r"[\s_\-]+", "", text).casefold()


@dataclass(frozen=True, slots=True, kw_only=True)
class CanonicalRules:
    """What the canonical mapping needs from the config."""

    agent_state_metrics: frozenset[str] = frozenset()
    agent_states: Mapping[str, State] = field(default_factory=lambda: dict(AGENT_STATES))
    canonical: bool = True


def canonical_event(
    source: str,
    key: MetricKey,
    value: MetricValue,
    data: RealtimeMetricValue,
    when: datetime,
    rules: CanonicalRules,
) -> AgentState | QueueMetric | None:
    """The canonical event for one value (see the table above), or None when there is no sound one."""
    if key.category_value is None or isinstance(value, UntypedValue):
        return None
    if data.category_type == "GROUP":
        number, unit = _queue_value(value, data.computed_ms)
        return QueueMetric(
            vendor=VENDOR,
            source=source,
            queue_id=key.category_value,
            queue_name=key.category_value,
            metric=data.metric_name or key.metric_id,
            value=number,
            unit=unit,
            as_of=when,
        )
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
        )
    return None


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

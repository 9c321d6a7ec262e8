"""Events: the envelope every source emits (:mod:`streamd.envelope`, re-exported here), and the
canonical cross-vendor event types.

Rules (the envelope's are in :mod:`streamd.envelope`, those of dead letters and source-status
markers in :mod:`streamd.markers`):

1. Readers of the canonical topics decode with :meth:`AgentState.from_json`, the inverse of the
   encoder (:func:`streamd.publish.encoding.encode`): unknown fields are ignored and an unknown
   state is ``unknown`` (a newer producer), anything else wrong raises
   :class:`~streamd.errors.NormalizationError` naming the field.
2. Canonical ids are :func:`stable_id` of the parts each ``to_event`` names (they never change
   between versions: consumers de-duplicate on them); hot paths build canonical types with
   :func:`new_agent_state` and :func:`new_queue_metric` (:func:`frozen_constructor`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from streamd.envelope import Event, frozen_constructor, id_of, isoformat, new_event, stable_id, utcnow
from streamd.errors import NormalizationError
from streamd.markers import DEADLETTER_TOPIC, SOURCE_STATUS_TOPIC, DeadLetter, SourceGap, SourceStatus

__all__ = [
    "AGENT_ADHERENCE_TOPIC",
    "AGENT_STATE_TOPIC",
    "CANONICAL_QUEUE_METRICS",
    "DEADLETTER_TOPIC",
    "QUEUE_METRICS_TOPIC",
    "SOURCE_STATUS_TOPIC",
    "AgentAdherence",
    "AgentState",
    "DeadLetter",
    "Event",
    "QueueMetric",
    "SourceGap",
    "SourceStatus",
    "State",
    "frozen_constructor",
    "new_agent_state",
    "new_event",
    "new_queue_metric",
    "stable_id",
    "utcnow",
]

AGENT_STATE_TOPIC = "agent-state"
QUEUE_METRICS_TOPIC = "queue-metrics"
AGENT_ADHERENCE_TOPIC = "agent-adherence"


class State(enum.StrEnum):
    """The canonical agent state shared by every vendor."""

    AVAILABLE = "available"
    BUSY = "busy"
    AFTER_CALL_WORK = "after_call_work"
    NOT_READY = "not_ready"
    LOGGED_OUT = "logged_out"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentState:
    """Canonical agent state (topic ``{prefix}agent-state``, compacted, key ``{source}:{agent_id}``)."""

    vendor: str
    source: str
    agent_id: str
    state: State
    agent_name: str | None = None
    vendor_state: str | None = None
    reason_code: str | None = None
    reason_label: str | None = None
    since: datetime | None = None
    queue_ids: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: bytes | str | None) -> AgentState:
        """Decode the Kafka value of a ``streamd.agent.State`` event (rule 1).

        Raises:
            NormalizationError: not a JSON object, or a required field missing or mistyped
                (``error_type`` ``invalid_payload``).
        """
        try:
            obj = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            raise NormalizationError(f"agent state: not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise NormalizationError("agent state: not a JSON object")
        try:
            state = State(str(obj.get("state")))
        except ValueError:
            state = State.UNKNOWN
        queues = obj.get("queue_ids") or []
        if not isinstance(queues, list):
            raise NormalizationError("agent state: queue_ids is not a list")
        build = new_agent_state if cls is AgentState else cls  # fast: the wallboard decodes every state
        return build(
            vendor=_required(obj, "vendor"),
            source=_required(obj, "source"),
            agent_id=_required(obj, "agent_id"),
            state=state,
            agent_name=_text(obj, "agent_name"),
            vendor_state=_text(obj, "vendor_state"),
            reason_code=_text(obj, "reason_code"),
            reason_label=_text(obj, "reason_label"),
            since=_timestamp(obj, "since"),
            queue_ids=tuple(str(q) for q in queues),
        )

    def to_event(self, *, time: datetime | None = None, snapshot: bool = False) -> Event:
        """Wrap this state in an :class:`Event` for the canonical topic."""
        key = f"{self.source}:{self.agent_id}"
        when = time or self.since or utcnow()
        # = stable_id(key, state, vendor_state, reason_code, time, agent_name, reason_label,
        # *queue_ids): everything a consumer sees is in the id, so a re-publish that only adds a
        # name, a label or a queue is new content, not dropped by a consumer de-duplicating on it.
        parts = (
            f"{key}\x1f{self.state!s}\x1f{self.vendor_state!s}\x1f{self.reason_code!s}\x1f{isoformat(when)}"
            f"\x1f{self.agent_name!s}\x1f{self.reason_label!s}"
        )
        if self.queue_ids:
            parts += "\x1f" + "\x1f".join(map(str, self.queue_ids))
        return new_event(
            AGENT_STATE_TOPIC,
            "streamd.agent.State",
            self.source,
            key,
            self,
            when,
            id_of(parts.encode()),
            snapshot,
        )


def _text(obj: dict[str, Any], name: str) -> str | None:
    """A string field of a decoded value (numbers become text: ids written as numbers)."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise NormalizationError(f"agent state: {name} is not a string")
    return str(value)


def _required(obj: dict[str, Any], name: str) -> str:
    text = _text(obj, name)
    if text is None:
        raise NormalizationError(f"agent state: {name} is missing")
    return text


def _timestamp(obj: dict[str, Any], name: str) -> datetime | None:
    """An RFC 3339 field of a decoded value; a naive time is taken as UTC."""
    value = obj.get(name)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise NormalizationError(f"agent state: {name} is not a timestamp: {value!r}")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


CANONICAL_QUEUE_METRICS: dict[str, str] = {
    "waiting": "contacts",
    "longest_wait_seconds": "seconds",
    "average_wait_seconds": "seconds",
    "service_level_percent": "percent",
    "answered": "contacts",
    "abandoned": "contacts",
    "agents_available": "agents",
    "agents_busy": "agents",
    "agents_logged_in": "agents",
}
"""The canonical queue metrics and their units (the table in :class:`QueueMetric`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueMetric:
    """Canonical queue metric (topic ``{prefix}queue-metrics``, compacted, key ``{source}:{queue_id}:{metric}``).

    ``metric`` is a name of :data:`CANONICAL_QUEUE_METRICS` (in its unit) when the vendor has the
    figure, else the vendor's own stable name or id (a figure with a canonical name is published
    under that name only; the vendor topic keeps the vendor's names):

    =========================  ========  ===================================================
    metric                     unit      meaning
    =========================  ========  ===================================================
    ``waiting``                contacts  contacts waiting in the queue now
    ``longest_wait_seconds``   seconds   wait of the oldest contact waiting now
    ``average_wait_seconds``   seconds   average wait before answer (vendor's period)
    ``service_level_percent``  percent   service level, 0-100 (vendor's period and target)
    ``answered``               contacts  contacts answered (vendor's period)
    ``abandoned``              contacts  contacts abandoned (vendor's period)
    ``agents_available``       agents    agents ready for a contact now
    ``agents_busy``            agents    agents handling a contact now
    ``agents_logged_in``       agents    agents logged in now
    =========================  ========  ===================================================
    """

    vendor: str
    source: str
    queue_id: str
    metric: str
    value: float | int | str | bool | None
    unit: str | None = None
    queue_name: str | None = None
    as_of: datetime | None = None

    def to_event(self, *, time: datetime | None = None, snapshot: bool = False) -> Event:
        """Wrap this metric in an :class:`Event` for the canonical topic."""
        key = f"{self.source}:{self.queue_id}:{self.metric}"
        when = time or self.as_of or utcnow()
        id = id_of(f"{key}\x1f{self.value!s}\x1f{isoformat(when)}".encode())  # = stable_id(key, value, time)
        return new_event(
            QUEUE_METRICS_TOPIC, "streamd.queue.Metric", self.source, key, self, when, id, snapshot
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentAdherence:
    """Canonical real-time adherence (topic ``{prefix}agent-adherence``, key ``{source}:{agent_id}``):
    whether an agent's actual state fits the activity its schedule has for now.

    ``status`` is ``in`` or ``out`` of adherence, or ``unknown`` for a scheduled activity no rule
    covers; ``since`` is when the current status began (the later of the actual state's start
    and the scheduled activity's); ``scheduled_activity`` None means nothing is scheduled now.
    """

    vendor: str
    source: str
    agent_id: str
    status: str
    since: datetime
    state: State
    vendor_state: str | None = None
    agent_name: str | None = None
    scheduled_activity: str | None = None
    scheduled_label: str | None = None
    scheduled_start: datetime | None = None
    scheduled_end: datetime | None = None
    queue_id: str | None = None

    def to_event(self) -> Event:
        """Wrap this status in an :class:`Event` for the canonical topic."""
        key = f"{self.source}:{self.agent_id}"
        id = stable_id(key, self.status, self.scheduled_activity, self.state, isoformat(self.since))
        return new_event(
            AGENT_ADHERENCE_TOPIC, "streamd.agent.Adherence", self.source, key, self, self.since, id
        )


new_agent_state = frozen_constructor(AgentState)
new_queue_metric = frozen_constructor(QueueMetric)

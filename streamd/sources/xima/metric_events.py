"""Pure Xima event building: a typed value -> the ``xima.realtime`` event and its canonical event.

Rules:

1. Everything here is sync and does no I/O; the evaluation instant is an argument (``now_ms``).
2. Event ids are deterministic: ``stable_id(source, key, lastUpdateTime, components)``; the Kafka
   key is ``{source}:{metricId}:{categoryValue}``; the event time is the value's ``lastUpdateTime``
   (the read time when that was unusable).
3. AGENT category values are split into name and extension and enriched with the alias of the
   ``/agents/mapping`` answer (whitespace folded: spec section 3.6).
4. The canonical mapping (QueueMetric / AgentState) lives in :mod:`.canonical`; it needs a typed
   value, so an UntypedValue has none, whatever else deviated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import orjson

from streamd.errors import NormalizationError
from streamd.events import DeadLetter, Event, stable_id
from streamd.sources.xima.canonical import CanonicalRules, canonical_event
from streamd.sources.xima.models import (
    METRIC_VALUE_TYPE,
    REALTIME_TOPIC,
    AgentRef,
    AverageDurationValue,
    BooleanValue,
    CountValue,
    DurationValue,
    MetricDescriptor,
    MetricEntry,
    MetricKey,
    MetricValue,
    RealtimeMetricValue,
    StringValue,
    UntypedValue,
)
from streamd.sources.xima.normalize import time_of

_AGENT = re.compile(r"^\s*(?P<name>.*?)\s*\(\s*(?P<ext>[^()]*?)\s*\)\s*$")

# ---------------------------------------------------------------------------- agents


def fold_display(text: str) -> str:
    """``"Nate Thatcher (123)"`` and ``"Nate Thatcher(123)"`` fold to the same string (spec §3.6)."""
    match = _AGENT.match(text)
    if match is None:
        return " ".join(text.split()).casefold()
    return f"{' '.join(match['name'].split())}({match['ext']})".casefold()


def agent_index(mapping: object) -> dict[str, str]:
    """Folded display string → alias, from the ``/agents/mapping`` object ``{alias: display}``."""
    if not isinstance(mapping, dict):
        return {}
    return {fold_display(v): str(k) for k, v in mapping.items() if isinstance(v, str)}


def parse_agent(category_value: str, index: Mapping[str, str]) -> AgentRef:
    """Split ``"John Doe(481)"`` into name and extension and look up the alias."""
    match = _AGENT.match(category_value)
    alias = index.get(fold_display(category_value))
    if match is None:
        return AgentRef(display=category_value, alias=alias)
    name = " ".join(match["name"].split()) or None
    return AgentRef(display=category_value, name=name, extension=match["ext"] or None, alias=alias)


# ---------------------------------------------------------------------------- events


def computed_ms(value: MetricValue, at_ms: int) -> float | None:
    """The live duration (DURATION) or average (AVERAGE_DURATION) at ``at_ms``; None otherwise."""
    if isinstance(value, DurationValue):
        return float(value.duration_ms(at_ms))
    if isinstance(value, AverageDurationValue):
        return value.average_ms(at_ms)
    return None


def components(value: MetricValue) -> tuple[object, ...]:
    """The raw components that identify a value version (used for ids and change detection)."""
    if isinstance(value, CountValue):
        return (value.type, value.last_update_time, value.count)
    if isinstance(value, BooleanValue | StringValue):
        return (value.type, value.last_update_time, value.value)
    if isinstance(value, DurationValue):
        return (
            value.type,
            value.last_update_time,
            value.finished_duration,
            value.num_counting_up,
            value.num_counting_down,
        )
    if isinstance(value, AverageDurationValue):
        return (
            value.type,
            value.last_update_time,
            value.duration_sum,
            value.count,
            value.num_counting_up,
            value.num_counting_down,
        )
    if isinstance(value, UntypedValue):
        return (value.type, value.last_update_time, orjson.dumps(value.raw, option=orjson.OPT_SORT_KEYS))
    return (value.type, value.last_update_time)


def event_time(value: MetricValue) -> datetime:
    """The event time of a value: its ``lastUpdateTime``, or the read time when that is unusable."""
    when = time_of(value.last_update_time) if value.last_update_time is not None else None
    return when if when is not None else datetime.fromtimestamp(value.last_update_ms / 1000, UTC)


def event_key(source: str, key: MetricKey) -> str:
    """The Kafka key ``{source}:{metricId}:{categoryValue}`` (empty category for uncategorised metrics)."""
    return f"{source}:{key.metric_id}:{key.category_value or ''}"


def metric_events(
    source: str,
    entry: MetricEntry,
    *,
    now_ms: int,
    descriptor: MetricDescriptor | None = None,
    agents: Mapping[str, str] | None = None,
    rules: CanonicalRules | None = None,
    snapshot: bool = False,
    queue_ids: tuple[str, ...] = (),
) -> list[Event]:
    """The vendor event for one entry (with its deviations), plus its canonical event where the
    mapping is sound (an AgentState with the agent's ``queue_ids``)."""
    key, value = entry.key, entry.value
    category_type = descriptor.category_type if descriptor else None
    agent = None
    if key.category_value is not None and category_type == "AGENT":
        agent = parse_agent(key.category_value, agents or {})
    live = computed_ms(value, now_ms)
    at = datetime.fromtimestamp(now_ms / 1000, UTC)
    data = RealtimeMetricValue(
        source=source,
        metric_id=key.metric_id,
        category_value=key.category_value,
        value=value,
        metric_name=descriptor.metric_name if descriptor else None,
        category_type=category_type,
        computed_ms=live,
        computed_at=at.isoformat(timespec="milliseconds") if live is not None else None,
        agent=agent,
        extra=entry.extra,
        key_extra=entry.key_extra,
    )
    ek = event_key(source, key)
    when = event_time(value)
    events = [
        Event(
            topic=REALTIME_TOPIC,
            type=METRIC_VALUE_TYPE,
            source=source,
            key=ek,
            data=data,
            time=when,
            id=stable_id(source, ek, *components(value)),
            snapshot=snapshot,
            deviations=entry.deviations,
        )
    ]
    rules = rules or CanonicalRules()
    if rules.canonical:
        canonical = canonical_event(source, key, value, data, when, rules, queue_ids)
        if canonical is not None:
            events.append(canonical.to_event(time=when, snapshot=snapshot))
    return events


def dead_letters(source: str, problems: Iterable[tuple[NormalizationError, object]]) -> list[Event]:
    """Dead-letter events for entries that could not be routed."""
    out = []
    for exc, raw in problems:
        if isinstance(raw, str | bytes):
            text: str | bytes = raw
        else:
            try:
                text = orjson.dumps(raw).decode()
            except TypeError:
                text = repr(raw)
        out.append(
            DeadLetter.of(
                source=source, stage="processing", error_type=exc.error_type, error=str(exc), raw=text
            ).to_event()
        )
    return out

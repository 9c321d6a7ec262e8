"""Pure Xima normalizers: vendor JSON → typed values → streamd events, with change detection.

Rules:

1. Everything here is sync and does no I/O; the clock is an argument (``now_ms``).
2. ``value.type`` is dispatched explicitly; a value without ``type`` is EMPTY (seed 000 L873-885),
   ``"type": "EMPTY"`` is accepted too. An unknown type raises
   ``NormalizationError(error_type="unknown_variant")``; a malformed entry raises
   ``NormalizationError(error_type="invalid_payload")``. Callers turn both into dead letters.
3. A key listed in ``initializing`` never gets a value published, even if the same body also
   carries a result for it; its last value is forgotten, so it is re-published once ready.
4. Change detection compares the raw components (type, value fields, ``lastUpdateTime``), never
   the computed live duration (which changes on every evaluation). A full refresh re-publishes
   every current value with ``snapshot=True``.
5. Event ids are deterministic: ``stable_id(source, key, lastUpdateTime, components)``.
6. The canonical mapping (QueueMetric / AgentState) lives in :mod:`.canonical`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

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
    EmptyValue,
    MetricDescriptor,
    MetricKey,
    MetricValue,
    RealtimeMetricValue,
    StringValue,
)

_AGENT = re.compile(r"^\s*(?P<name>.*?)\s*\(\s*(?P<ext>[^()]*?)\s*\)\s*$")

# ---------------------------------------------------------------------------- parsing


def parse_time_ms(text: object) -> int:
    """Epoch milliseconds of an ISO-8601 ``lastUpdateTime`` such as ``2019-10-01T10:17:56.496-06:00``.

    Raises:
        NormalizationError: not a string with a date, time and offset.
    """
    if not isinstance(text, str):
        raise NormalizationError(f"lastUpdateTime is not a string: {text!r}")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise NormalizationError(f"invalid lastUpdateTime {text!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(when.timestamp() * 1000)


def _int(raw: Mapping[str, Any], name: str) -> int:
    value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise NormalizationError(f"{name} is not an integer: {value!r}")
    return int(value)


_FIELDS: dict[str, frozenset[str]] = {
    "COUNT": frozenset({"count"}),
    "BOOLEAN": frozenset({"value"}),
    "STRING": frozenset({"value"}),
    "DURATION": frozenset({"finishedDuration", "numCountingUp", "numCountingDown"}),
    "AVERAGE_DURATION": frozenset({"durationSum", "count", "numCountingUp", "numCountingDown"}),
    "EMPTY": frozenset(),
}
_COMMON = frozenset({"type", "lastUpdateTime"})


def parse_value(raw: object) -> MetricValue:
    """Parse one ``value`` object into its typed dataclass.

    Raises:
        NormalizationError: ``unknown_variant`` for an unknown ``type``, ``invalid_payload`` otherwise.
    """
    if not isinstance(raw, dict):
        raise NormalizationError(f"value is not an object: {raw!r}")
    kind = raw.get("type", "EMPTY")
    if kind not in _FIELDS:
        raise NormalizationError(f"unknown value type {kind!r}", error_type="unknown_variant")
    common: dict[str, Any] = {
        "last_update_time": raw.get("lastUpdateTime"),
        "last_update_ms": parse_time_ms(raw.get("lastUpdateTime")),
        "extra": {k: v for k, v in raw.items() if k not in _COMMON and k not in _FIELDS[kind]},
    }
    if kind == "COUNT":
        return CountValue(count=_int(raw, "count"), **common)
    if kind in ("BOOLEAN", "STRING"):
        return _flag_or_text(kind, raw.get("value"), common)
    if kind == "DURATION":
        return DurationValue(
            finished_duration=_int(raw, "finishedDuration"),
            num_counting_up=_int(raw, "numCountingUp"),
            num_counting_down=_int(raw, "numCountingDown"),
            **common,
        )
    if kind == "AVERAGE_DURATION":
        return AverageDurationValue(
            duration_sum=_int(raw, "durationSum"),
            count=_int(raw, "count"),
            num_counting_up=_int(raw, "numCountingUp"),
            num_counting_down=_int(raw, "numCountingDown"),
            **common,
        )
    return EmptyValue(**common)


def _flag_or_text(kind: str, value: object, common: dict[str, Any]) -> MetricValue:
    if kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise NormalizationError(f"BOOLEAN value is not a boolean: {value!r}")
        return BooleanValue(value=value, **common)
    if not isinstance(value, str):
        raise NormalizationError(f"STRING value is not a string: {value!r}")
    return StringValue(value=value, **common)


def parse_key(raw: object) -> MetricKey:
    """Parse a ``key`` object ``{metricId, categoryValue?}`` (also the shape of ``initializing`` entries).

    Raises:
        NormalizationError: no string ``metricId``.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("metricId"), str):
        raise NormalizationError(f"key has no metricId: {raw!r}")
    category = raw.get("categoryValue")
    if category is not None and not isinstance(category, str):
        category = str(category)
    return MetricKey(metric_id=raw["metricId"], category_value=category)


def parse_entry(raw: object) -> tuple[MetricKey, MetricValue]:
    """Parse one ``{key, value}`` entry (a ``results`` item or one websocket message)."""
    if not isinstance(raw, dict):
        raise NormalizationError(f"entry is not an object: {raw!r}")
    return parse_key(raw.get("key")), parse_value(raw.get("value"))


@dataclass(slots=True)
class ValuesBody:
    """A parsed values response: ready results, initializing keys and entries that failed."""

    results: list[tuple[MetricKey, MetricValue]] = field(default_factory=list)
    initializing: set[MetricKey] = field(default_factory=set)
    problems: list[tuple[NormalizationError, object]] = field(default_factory=list)


def is_values_body(body: object) -> bool:
    """True when ``body`` is the documented values shape (an object with ``results``/``initializing``)."""
    return isinstance(body, dict) and ("results" in body or "initializing" in body)


def parse_values_body(body: object) -> ValuesBody:
    """Parse a ``/realtime/metrics/values`` body; bad entries go to ``problems``, never raise."""
    out = ValuesBody()
    if not is_values_body(body):
        out.problems.append((NormalizationError("not a values body"), body))
        return out
    assert isinstance(body, dict)
    for raw in body.get("initializing") or ():
        try:
            out.initializing.add(parse_key(raw))
        except NormalizationError as exc:
            out.problems.append((exc, raw))
    for raw in body.get("results") or ():
        try:
            out.results.append(parse_entry(raw))
        except NormalizationError as exc:
            out.problems.append((exc, raw))
    return out


def parse_metric_list(body: object) -> list[MetricDescriptor]:
    """Parse ``GET /realtime/metrics`` (a JSON array of descriptors).

    Raises:
        NormalizationError: not an array, or an entry without ``metricId``.
    """
    if not isinstance(body, list):
        raise NormalizationError("metric list is not an array")
    out = []
    for raw in body:
        if not isinstance(raw, dict) or not isinstance(raw.get("metricId"), str):
            raise NormalizationError(f"metric descriptor without metricId: {raw!r}")
        selection = raw.get("categorySelection") or ()
        out.append(
            MetricDescriptor(
                metric_id=raw["metricId"],
                metric_name=raw.get("metricName"),
                category_type=raw.get("categoryType"),
                category_selection=tuple(str(s) for s in selection),
            )
        )
    return out


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
    return (value.type, value.last_update_time)


def event_key(source: str, key: MetricKey) -> str:
    """The Kafka key ``{source}:{metricId}:{categoryValue}`` (empty category for uncategorised metrics)."""
    return f"{source}:{key.metric_id}:{key.category_value or ''}"


def metric_events(
    source: str,
    key: MetricKey,
    value: MetricValue,
    *,
    now_ms: int,
    descriptor: MetricDescriptor | None = None,
    agents: Mapping[str, str] | None = None,
    rules: CanonicalRules | None = None,
    snapshot: bool = False,
) -> list[Event]:
    """The vendor event for one value, plus its canonical event where the mapping is sound."""
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
    )
    ek = event_key(source, key)
    when = datetime.fromisoformat(value.last_update_time.replace("Z", "+00:00"))
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
        )
    ]
    rules = rules or CanonicalRules()
    if rules.canonical:
        canonical = canonical_event(source, key, value, data, when, rules)
        if canonical is not None:
            events.append(canonical.to_event(time=when, snapshot=snapshot))
    return events


def dead_letters(source: str, problems: Iterable[tuple[NormalizationError, object]]) -> list[Event]:
    """Dead-letter events for entries that could not be normalized."""
    import orjson

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


@dataclass(slots=True)
class RealtimeState:
    """Last published value per key, metric descriptors and agent index: the pure diffing core.

    ``apply`` takes a batch of ready values and initializing keys and returns the events to publish;
    ``refresh`` returns every current value as a snapshot. Time is passed in, never read.
    """

    source: str
    rules: CanonicalRules = field(default_factory=CanonicalRules)
    descriptors: dict[str, MetricDescriptor] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    values: dict[MetricKey, MetricValue] = field(default_factory=dict)
    initializing: set[MetricKey] = field(default_factory=set)

    def apply(
        self,
        results: Iterable[tuple[MetricKey, MetricValue]],
        initializing: Iterable[MetricKey] = (),
        *,
        now_ms: int,
        snapshot: bool = False,
        monotonic: bool = False,
    ) -> list[Event]:
        """Record a batch; return events for changed values (all of them when ``snapshot``).

        Args:
            results: ready ``(key, value)`` pairs.
            initializing: keys the server is still initializing (rule 3: never published).
            now_ms: the evaluation instant for live durations (epoch ms).
            snapshot: publish every value of the batch, marked ``snapshot=True``.
            monotonic: ignore values older (``lastUpdateTime``) than the one held, as for socket
                updates racing the REST baseline.
        """
        pending = set(initializing)
        for key in pending:
            self.values.pop(key, None)
        self.initializing |= pending
        out: list[Event] = []
        for key, value in results:
            if key in pending:
                continue
            self.initializing.discard(key)
            held = self.values.get(key)
            if not snapshot and held == value:
                continue
            if monotonic and held is not None and value.last_update_ms < held.last_update_ms:
                continue
            self.values[key] = value
            out.extend(self._events(key, value, now_ms, snapshot))
        return out

    def forget(self, metric_ids: set[str]) -> None:
        """Drop the values of metrics no longer in ``metric_ids`` (removed from the metric list)."""
        for key in [k for k in self.values if k.metric_id not in metric_ids]:
            del self.values[key]
        self.initializing = {k for k in self.initializing if k.metric_id in metric_ids}

    def refresh(self, *, now_ms: int) -> list[Event]:
        """Every current value as a snapshot (the periodic full refresh)."""
        out: list[Event] = []
        for key, value in self.values.items():
            out.extend(self._events(key, value, now_ms, True))
        return out

    def _events(self, key: MetricKey, value: MetricValue, now_ms: int, snapshot: bool) -> list[Event]:
        return metric_events(
            self.source,
            key,
            value,
            now_ms=now_ms,
            descriptor=self.descriptors.get(key.metric_id),
            agents=self.agents,
            rules=self.rules,
            snapshot=snapshot,
        )

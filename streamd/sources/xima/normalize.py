"""Pure Xima normalizers: vendor JSON → typed values → streamd events, with change detection.

Rules:

1. Everything here is sync and does no I/O; the clock is an argument (``now_ms``, the read time).
2. ``value.type`` is dispatched explicitly; a value without ``type`` is EMPTY (seed 000 L873-885),
   ``"type": "EMPTY"`` is accepted too.
3. Tolerant reading (:mod:`streamd.tolerant`): an entry is published whenever it can be routed,
   that is when its ``key`` is an object with a non-empty string ``metricId`` and, if present, a
   ``categoryValue`` that is a string (a number is coerced, ``null`` counts as absent). Anything
   else deviates visibly, as JSON paths of the ``{key, value}`` entry (``$.value.count``) on the
   event (:class:`~.models.MetricEntry`):

   - a ``type`` outside the documented list (or not a string) makes the value an
     :class:`~.models.UntypedValue` that keeps it as received (``$.value.type``); so does a
     ``value`` that is not an object (``$.value``) or a documented field that is missing or
     unusable (``$.value.count``);
   - a documented field whose meaning is unambiguous is coerced (``"206"`` or ``206.0`` for a
     count, ``"false"`` or ``0`` for a BOOLEAN, a number for a STRING) and still listed;
   - a ``lastUpdateTime`` that cannot be parsed keeps its text (a non-string goes to ``extra``)
     and the read time stands in for it: ``last_update_ms`` and the event time;
   - unknown fields are listed and kept in ``extra`` (of the value, the entry and the key).

   Only an entry that is not an object (``invalid_payload``) or has no usable key
   (``missing_key``) raises ``NormalizationError``; callers dead-letter it.
4. A key listed in ``initializing`` never gets a value published, even if the same body also
   carries a result for it; its last value is forgotten, so it is re-published once ready.
5. Change detection compares the typed value (type, value fields, ``lastUpdateTime`` text), never
   ``extra``, ``last_update_ms`` or the computed live duration (which changes on every
   evaluation). A full refresh re-publishes every current value with ``snapshot=True``, with the
   deviations it was read with.
6. Event ids are deterministic: ``stable_id(source, key, lastUpdateTime, components)``.
7. The canonical mapping (QueueMetric / AgentState) lives in :mod:`.canonical`; it needs a typed
   value, so an UntypedValue has none, whatever else deviated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

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
    EmptyValue,
    MetricDescriptor,
    MetricEntry,
    MetricKey,
    MetricValue,
    RealtimeMetricValue,
    StringValue,
    UntypedValue,
)
from streamd.tolerant import MAX_PATHS, coerce, json_path

_AGENT = re.compile(r"^\s*(?P<name>.*?)\s*\(\s*(?P<ext>[^()]*?)\s*\)\s*$")

# ---------------------------------------------------------------------------- parsing


def _time_of(text: str) -> datetime | None:
    """The instant of an ISO-8601 text (naive means UTC), or None when it is not one."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def parse_time_ms(text: object) -> int:
    """Epoch milliseconds of an ISO-8601 ``lastUpdateTime`` such as ``2019-10-01T10:17:56.496-06:00``.

    Raises:
        NormalizationError: not a string with a date, time and offset.
    """
    if not isinstance(text, str):
        raise NormalizationError(f"lastUpdateTime is not a string: {text!r}")
    when = _time_of(text)
    if when is None:
        raise NormalizationError(f"invalid lastUpdateTime {text!r}")
    return round(when.timestamp() * 1000)


_INT, _BOOL, _STR = "int_type", "bool_type", "string_type"  # streamd.tolerant.coerce error types
_FIELDS: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "COUNT": (("count", "count", _INT),),
    "BOOLEAN": (("value", "value", _BOOL),),
    "STRING": (("value", "value", _STR),),
    "DURATION": (
        ("finishedDuration", "finished_duration", _INT),
        ("numCountingUp", "num_counting_up", _INT),
        ("numCountingDown", "num_counting_down", _INT),
    ),
    "AVERAGE_DURATION": (
        ("durationSum", "duration_sum", _INT),
        ("count", "count", _INT),
        ("numCountingUp", "num_counting_up", _INT),
        ("numCountingDown", "num_counting_down", _INT),
    ),
    "EMPTY": (),
}
"""Per documented ``type``: its fields as ``(vendor name, attribute, coerce error type)``."""
_Typed = CountValue | BooleanValue | StringValue | DurationValue | AverageDurationValue | EmptyValue
_CLASSES: Final[dict[str, type[_Typed]]] = {
    "COUNT": CountValue,
    "BOOLEAN": BooleanValue,
    "STRING": StringValue,
    "DURATION": DurationValue,
    "AVERAGE_DURATION": AverageDurationValue,
    "EMPTY": EmptyValue,
}
_DOCUMENTED: Final = {
    kind: frozenset({"type", "lastUpdateTime", *(name for name, _, _ in fields)})
    for kind, fields in _FIELDS.items()
}
_VALUE_PATHS: Final = {name: json_path(("value", name)) for names in _DOCUMENTED.values() for name in names}
_VALUE: Final = "$.value"
_TYPE: Final = _VALUE_PATHS["type"]
_LAST_UPDATE: Final = _VALUE_PATHS["lastUpdateTime"]
_CATEGORY: Final = "$.key.categoryValue"
_KEY_FIELDS: Final = frozenset({"metricId", "categoryValue"})
_ENTRY_FIELDS: Final = frozenset({"key", "value"})
_MISSING: Final[Any] = object()


def _value_path(name: str) -> str:
    return _VALUE_PATHS.get(name) or json_path(("value", name))


def _conforms(value: object, error_type: str) -> bool:
    if error_type == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if error_type == _BOOL:
        return isinstance(value, bool)
    return isinstance(value, str)


def _bounded(paths: list[str]) -> tuple[str, ...]:
    return tuple(paths) if len(paths) <= MAX_PATHS else (*paths[:MAX_PATHS], "...")


def _shown(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 200 else text[:200] + "..."


def _last_update(
    raw: dict[str, Any], now_ms: int, deviations: list[str], extra: dict[str, Any]
) -> tuple[str | None, int]:
    """``(last_update_time, last_update_ms)``: the vendor's text and its instant, else the read time."""
    text = raw.get("lastUpdateTime")
    if isinstance(text, str):
        when = _time_of(text)
        if when is not None:
            return text, round(when.timestamp() * 1000)
        deviations.append(_LAST_UPDATE)
        return text, now_ms
    deviations.append(_LAST_UPDATE)
    if text is not None:
        extra["lastUpdateTime"] = text
    return None, now_ms


def read_value(raw: object, *, now_ms: int) -> tuple[MetricValue, tuple[str, ...]]:
    """Type one ``value`` object tolerantly (rule 3); never raises.

    Args:
        raw: the entry's ``value`` as received (``None`` when absent).
        now_ms: the read time (epoch ms), standing in for an unusable ``lastUpdateTime``.

    Returns:
        The typed value (or an :class:`UntypedValue`) and the deviating paths (``$.value...``).
    """
    if not isinstance(raw, dict):
        return UntypedValue(last_update_time=None, last_update_ms=now_ms, raw=raw), (_VALUE,)
    deviations: list[str] = []
    extra: dict[str, Any] = {}
    kind = raw.get("type", "EMPTY")
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        deviations.append(_TYPE)
    last_time, last_ms = _last_update(raw, now_ms, deviations, extra)
    if fields is None:
        untyped = UntypedValue(vendor_type=kind, last_update_time=last_time, last_update_ms=last_ms, raw=raw)
        return untyped, tuple(deviations)
    typed: dict[str, Any] = {}
    usable = True
    for name, attr, error_type in fields:
        value = raw.get(name, _MISSING)
        if _conforms(value, error_type):
            typed[attr] = value
            continue
        deviations.append(_VALUE_PATHS[name])
        ok, coerced = coerce(error_type, value) if value is not _MISSING else (False, None)
        if ok:
            typed[attr] = coerced
        else:
            usable = False
    documented = _DOCUMENTED[kind]
    if not documented.issuperset(raw):
        for name, item in raw.items():
            if name not in documented:
                extra[name] = item
                deviations.append(_value_path(name))
    if not usable:
        untyped = UntypedValue(vendor_type=kind, last_update_time=last_time, last_update_ms=last_ms, raw=raw)
        return untyped, _bounded(deviations)
    value_class = _CLASSES[kind]
    typed_value = value_class(last_update_time=last_time, last_update_ms=last_ms, extra=extra, **typed)
    return typed_value, _bounded(deviations)


def _read_key(raw: object) -> tuple[MetricKey, dict[str, Any], list[str]]:
    """The routing key of an entry, its unknown fields and its deviations.

    Raises:
        NormalizationError: ``missing_key``: not an object, no non-empty string ``metricId``, or a
            ``categoryValue`` that is neither a string, a number nor ``null``.
    """
    if not isinstance(raw, dict):
        raise NormalizationError(f"key is not an object: {_shown(raw)}", error_type="missing_key")
    metric_id = raw.get("metricId")
    if not isinstance(metric_id, str) or not metric_id:
        raise NormalizationError(f"key has no metricId: {_shown(raw)}", error_type="missing_key")
    deviations: list[str] = []
    category = raw.get("categoryValue")
    if category is None:
        if "categoryValue" in raw:
            deviations.append(_CATEGORY)
    elif not isinstance(category, str):
        ok, category = coerce(_STR, category)
        if not ok:
            raise NormalizationError(
                f"key {metric_id}: categoryValue is not a string: {_shown(raw)}", error_type="missing_key"
            )
        deviations.append(_CATEGORY)
    extra: dict[str, Any] = {}
    if not _KEY_FIELDS.issuperset(raw):
        for name, item in raw.items():
            if name not in _KEY_FIELDS:
                extra[name] = item
                deviations.append(json_path(("key", name)))
    return MetricKey(metric_id=metric_id, category_value=category), extra, deviations


def parse_key(raw: object) -> MetricKey:
    """Parse a ``key`` object ``{metricId, categoryValue?}`` (also the shape of ``initializing`` entries).

    Raises:
        NormalizationError: ``missing_key`` (see rule 3).
    """
    return _read_key(raw)[0]


def parse_entry(raw: object, *, now_ms: int) -> MetricEntry:
    """Read one ``{key, value}`` entry (a ``results`` item or one websocket message), rule 3.

    Args:
        raw: the entry as decoded from JSON.
        now_ms: the read time (epoch ms), standing in for an unusable ``lastUpdateTime``.

    Raises:
        NormalizationError: ``invalid_payload`` (not an object) or ``missing_key``: unroutable.
    """
    if not isinstance(raw, dict):
        raise NormalizationError(f"entry is not an object: {_shown(raw)}")
    key, key_extra, deviations = _read_key(raw.get("key"))
    value, value_deviations = read_value(raw.get("value"), now_ms=now_ms)
    deviations += value_deviations
    extra: dict[str, Any] = {}
    if not _ENTRY_FIELDS.issuperset(raw):
        for name, item in raw.items():
            if name not in _ENTRY_FIELDS:
                extra[name] = item
                deviations.append(json_path((name,)))
    return MetricEntry(
        key=key, value=value, deviations=_bounded(deviations), extra=extra, key_extra=key_extra
    )


@dataclass(slots=True)
class ValuesBody:
    """A parsed values response: ready results, initializing keys and entries that failed."""

    results: list[MetricEntry] = field(default_factory=list)
    initializing: set[MetricKey] = field(default_factory=set)
    problems: list[tuple[NormalizationError, object]] = field(default_factory=list)


def is_values_body(body: object) -> bool:
    """True when ``body`` is the documented values shape (an object with ``results``/``initializing``)."""
    return isinstance(body, dict) and ("results" in body or "initializing" in body)


def parse_values_body(body: object, *, now_ms: int) -> ValuesBody:
    """Parse a ``/realtime/metrics/values`` body; unroutable entries go to ``problems``, never raise.

    A ``results`` or ``initializing`` that is not an array is one problem (its raw value).
    """
    out = ValuesBody()
    if not is_values_body(body):
        out.problems.append((NormalizationError("not a values body"), body))
        return out
    assert isinstance(body, dict)
    for raw in _array(body, "initializing", out):
        try:
            out.initializing.add(parse_key(raw))
        except NormalizationError as exc:
            out.problems.append((exc, raw))
    for raw in _array(body, "results", out):
        try:
            out.results.append(parse_entry(raw, now_ms=now_ms))
        except NormalizationError as exc:
            out.problems.append((exc, raw))
    return out


def _array(body: dict[str, Any], name: str, out: ValuesBody) -> list[Any]:
    items = body.get(name)
    if items is None:
        return []
    if not isinstance(items, list):
        out.problems.append((NormalizationError(f"{name} is not an array"), items))
        return []
    return items


def _text(value: object) -> str | None:
    """A descriptor's text field: a string, a number as text, else None."""
    if isinstance(value, str):
        return value
    ok, text = coerce(_STR, value)
    return text if ok else None


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
                metric_name=_text(raw.get("metricName")),
                category_type=_text(raw.get("categoryType")),
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
    if isinstance(value, UntypedValue):
        return (value.type, value.last_update_time, orjson.dumps(value.raw, option=orjson.OPT_SORT_KEYS))
    return (value.type, value.last_update_time)


def event_time(value: MetricValue) -> datetime:
    """The event time of a value: its ``lastUpdateTime``, or the read time when that is unusable."""
    when = _time_of(value.last_update_time) if value.last_update_time is not None else None
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
) -> list[Event]:
    """The vendor event for one entry (with its deviations), plus its canonical event where the mapping is sound."""
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
        canonical = canonical_event(source, key, value, data, when, rules)
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


def _versioned(entry: MetricEntry) -> bool:
    """True when the entry's ``last_update_ms`` is the vendor's ``lastUpdateTime``, not a read time."""
    return not entry.deviations or (_LAST_UPDATE not in entry.deviations and _VALUE not in entry.deviations)


def _older(entry: MetricEntry, held: MetricEntry) -> bool:
    """True when both entries carry a vendor time and ``entry``'s is earlier than ``held``'s."""
    return entry.value.last_update_ms < held.value.last_update_ms and _versioned(entry) and _versioned(held)


@dataclass(slots=True)
class RealtimeState:
    """Last published entry per key, metric descriptors and agent index: the pure diffing core.

    ``apply`` takes a batch of read entries and initializing keys and returns the events to publish;
    ``refresh`` returns every current value as a snapshot. Time is passed in, never read.
    """

    source: str
    rules: CanonicalRules = field(default_factory=CanonicalRules)
    descriptors: dict[str, MetricDescriptor] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    entries: dict[MetricKey, MetricEntry] = field(default_factory=dict)
    initializing: set[MetricKey] = field(default_factory=set)

    def apply(
        self,
        results: Iterable[MetricEntry],
        initializing: Iterable[MetricKey] = (),
        *,
        now_ms: int,
        snapshot: bool = False,
        monotonic: bool = False,
    ) -> list[Event]:
        """Record a batch; return events for changed values (all of them when ``snapshot``).

        Args:
            results: ready entries (:func:`parse_entry`).
            initializing: keys the server is still initializing (rule 4: never published).
            now_ms: the evaluation instant for live durations (epoch ms).
            snapshot: publish every value of the batch, marked ``snapshot=True``.
            monotonic: ignore values older (``lastUpdateTime``) than the one held, as for socket
                updates racing the REST baseline. A value whose ``lastUpdateTime`` (or the held
                one's) was unusable has no version to compare: it is taken.
        """
        pending = set(initializing)
        for key in pending:
            self.entries.pop(key, None)
        self.initializing |= pending
        out: list[Event] = []
        for entry in results:
            key, value = entry.key, entry.value
            if key in pending:
                continue
            self.initializing.discard(key)
            held = self.entries.get(key)
            if not snapshot and held is not None and held.value == value:
                continue
            if monotonic and held is not None and _older(entry, held):
                continue
            self.entries[key] = entry
            out.extend(self._events(entry, now_ms, snapshot))
        return out

    def forget(self, metric_ids: set[str]) -> None:
        """Drop the values of metrics no longer in ``metric_ids`` (removed from the metric list)."""
        for key in [k for k in self.entries if k.metric_id not in metric_ids]:
            del self.entries[key]
        self.initializing = {k for k in self.initializing if k.metric_id in metric_ids}

    def refresh(self, *, now_ms: int) -> list[Event]:
        """Every current value as a snapshot (the periodic full refresh)."""
        out: list[Event] = []
        for entry in self.entries.values():
            out.extend(self._events(entry, now_ms, True))
        return out

    def _events(self, entry: MetricEntry, now_ms: int, snapshot: bool) -> list[Event]:
        return metric_events(
            self.source,
            entry,
            now_ms=now_ms,
            descriptor=self.descriptors.get(entry.key.metric_id),
            agents=self.agents,
            rules=self.rules,
            snapshot=snapshot,
        )

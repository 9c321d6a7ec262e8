"""Pure Xima readers: vendor JSON -> typed values (tolerant reading).

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

Whole answers (a values body, the metric list) are read by :mod:`.bodies`, events are built by
:mod:`.metric_events`, change detection is :mod:`.state`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from streamd.errors import NormalizationError
from streamd.sources.xima.models import (
    AverageDurationValue,
    BooleanValue,
    CountValue,
    DurationValue,
    EmptyValue,
    MetricEntry,
    MetricKey,
    MetricValue,
    StringValue,
    UntypedValue,
)
from streamd.tolerant import MAX_PATHS, coerce, json_path


def time_of(text: str) -> datetime | None:
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
    when = time_of(text)
    if when is None:
        raise NormalizationError(f"invalid lastUpdateTime {text!r}")
    return round(when.timestamp() * 1000)


_INT, _BOOL, _STR = "int_type", "bool_type", "string_type"  # streamd.tolerant.coerce error types
STR_TYPE: Final = _STR
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
VALUE_PATH: Final = "$.value"
_TYPE: Final = _VALUE_PATHS["type"]
LAST_UPDATE_PATH: Final = _VALUE_PATHS["lastUpdateTime"]
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
        when = time_of(text)
        if when is not None:
            return text, round(when.timestamp() * 1000)
        deviations.append(LAST_UPDATE_PATH)
        return text, now_ms
    deviations.append(LAST_UPDATE_PATH)
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
        return UntypedValue(last_update_time=None, last_update_ms=now_ms, raw=raw), (VALUE_PATH,)
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

"""Pure Xima readers of whole answers: a ``/realtime/metrics/values`` body and the metric list.

Rules:

1. Everything here is sync and does no I/O. Entries are read by :mod:`.normalize` (tolerant).
2. 200, 206 and 400 answers are all values bodies when they are the documented object with a
   ``results`` and/or ``initializing`` array (seed 000 L757-803, L947-953): :func:`is_values_body`.
3. :func:`parse_values_body` never raises: unroutable entries (and a ``results`` or
   ``initializing`` that is not an array) go to ``problems``, to be dead-lettered by the caller.
4. The metric list must be an array of descriptors with a ``metricId`` (it *is* the set of ids of
   ``metrics: all``): anything else raises ``NormalizationError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamd.errors import NormalizationError
from streamd.sources.xima.models import MetricDescriptor, MetricEntry, MetricKey
from streamd.sources.xima.normalize import STR_TYPE, parse_entry, parse_key
from streamd.tolerant import coerce


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
    ok, text = coerce(STR_TYPE, value)
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

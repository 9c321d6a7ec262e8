"""Typed Xima / Avaya Call Reporting payloads and the events streamd publishes for them.

Rules:

1. Every documented realtime value type has its own frozen dataclass (spec §3.4, seed 000
   L807-918): ``COUNT``, ``BOOLEAN``, ``STRING``, ``DURATION``, ``AVERAGE_DURATION`` and the
   type-less ``EMPTY``. Field names are snake_case; ``last_update_time`` keeps the vendor's
   ISO-8601 string verbatim (offset and milliseconds intact) and ``last_update_ms`` is the same
   instant in epoch milliseconds (the read time when ``lastUpdateTime`` is absent or
   unreadable; it is derived, so it takes no part in comparisons).
2. These classes are the Kafka payload (orjson serialises dataclasses natively). Unknown vendor
   fields are kept in ``extra`` so nothing the vendor sent is lost.
3. Live durations follow the seed's formulas exactly (000 L887-891, L914-918)::

       DURATION:          finishedDuration + (numCountingUp - numCountingDown) * (atTime - lastUpdateTime)
       AVERAGE_DURATION: (durationSum + (numCountingUp - numCountingDown) * (atTime - lastUpdateTime)) / count

   and the average is ``None`` when ``count == 0``.
4. :data:`EVENT_MODELS` maps each vendor CloudEvents ``type`` this source emits to its payload class
   (for ``streamd schema --events``).
5. Tolerant reading (:mod:`streamd.tolerant`, issue 13): what the vendor sent outside its document
   is kept, never dropped. Unknown fields land in ``extra`` (of the value, the entry, the key, the
   report row or the report); a value whose ``type`` is not documented, or whose documented fields
   cannot be typed, is an :class:`UntypedValue` that keeps the vendor's object as received; a
   ``lastUpdateTime`` that is absent or unreadable leaves ``last_update_ms`` at the read time
   (unreadable text stays in ``last_update_time``, a non-string goes to ``extra``). The
   deviating JSON paths ride on the event (``streamd_deviations``), not in these payloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

REALTIME_TOPIC = "xima.realtime"
HISTORIC_TOPIC = "xima.historic"
METRIC_VALUE_TYPE = "xima.realtime.MetricValue"
HISTORIC_ROW_TYPE = "xima.historic.Row"
HISTORIC_SUMMARY_TYPE = "xima.historic.Summary"
CALLS_TOPIC = "xima.calls"
CALL_FINISHED_TYPE = "xima.calls.CallFinished"

CategoryType = Literal["AGENT", "GROUP", "CALL_DIRECTION", "ACCOUNT_CODE", "NONE"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CountValue:
    """``COUNT``: an integer count (``0`` is a value, not missing)."""

    type: Literal["COUNT"] = "COUNT"
    last_update_time: str | None
    last_update_ms: int = field(compare=False)
    count: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class BooleanValue:
    """``BOOLEAN``: a true/false flag (``false`` is a value, not missing)."""

    type: Literal["BOOLEAN"] = "BOOLEAN"
    last_update_time: str | None
    last_update_ms: int = field(compare=False)
    value: bool
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class StringValue:
    """``STRING``: free text (``""`` is a value, not missing)."""

    type: Literal["STRING"] = "STRING"
    last_update_time: str | None
    last_update_ms: int = field(compare=False)
    value: str
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class DurationValue:
    """``DURATION``: milliseconds that keep growing while timers count up (seed 000 L855-891)."""

    type: Literal["DURATION"] = "DURATION"
    last_update_time: str | None
    last_update_ms: int = field(compare=False)
    finished_duration: int
    num_counting_up: int
    num_counting_down: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def duration_ms(self, at_ms: int) -> int:
        """The live duration at ``at_ms`` (epoch ms), per the seed's formula."""
        running = self.num_counting_up - self.num_counting_down
        return self.finished_duration + running * (at_ms - self.last_update_ms)


@dataclass(frozen=True, slots=True, kw_only=True)
class AverageDurationValue:
    """``AVERAGE_DURATION``: an average in ms, defined only when ``count != 0`` (000 L895-918)."""

    type: Literal["AVERAGE_DURATION"] = "AVERAGE_DURATION"
    last_update_time: str | None
    last_update_ms: int = field(compare=False)
    duration_sum: int
    count: int
    num_counting_up: int
    num_counting_down: int
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def average_ms(self, at_ms: int) -> float | None:
        """The live average at ``at_ms`` (epoch ms), or None when ``count`` is zero."""
        if self.count == 0:
            return None
        running = self.num_counting_up - self.num_counting_down
        return (self.duration_sum + running * (at_ms - self.last_update_ms)) / self.count


@dataclass(frozen=True, slots=True, kw_only=True)
class EmptyValue:
    """``EMPTY``: the metric has no value right now; the vendor sends no ``type`` key (000 L873-885)."""

    type: Literal["EMPTY"] = "EMPTY"
    last_update_time: str | None
    last_update_ms: int = field(compare=False)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class UntypedValue:
    """A value kept as received: its ``type`` is not documented, or a documented field is unusable.

    ``raw`` is the vendor's ``value`` exactly as received (``None`` when it was absent or
    ``null``); ``vendor_type`` is its ``type`` as received (``None`` when absent). The event's
    ``streamd_deviations`` header names what deviated (``$.value.type``, ``$.value.count``...).
    """

    type: Literal["UNTYPED"] = "UNTYPED"
    vendor_type: Any = None
    last_update_time: str | None
    last_update_ms: int = field(compare=False)
    raw: Any = field(default=None, hash=False)


MetricValue = (
    CountValue | BooleanValue | StringValue | DurationValue | AverageDurationValue | EmptyValue | UntypedValue
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricKey:
    """The identity of one realtime value: a metric id and, when it has a category, the category value."""

    metric_id: str
    category_value: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricEntry:
    """One read ``{key, value}`` entry (a ``results`` item or one websocket message).

    ``deviations`` are the entry's JSON paths that deviated from the document (``$.value.count``,
    ``$.key.categoryValue``...); ``extra`` and ``key_extra`` keep the unknown fields of the entry
    and of its key as received.
    """

    key: MetricKey
    value: MetricValue
    deviations: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    key_extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricDescriptor:
    """One entry of ``GET /rest/api/v1/realtime/metrics`` (000 L695-727)."""

    metric_id: str
    metric_name: str | None = None
    category_type: str | None = None
    category_selection: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRef:
    """An agent parsed from a category value ``"Name(ext)"``, enriched from ``/agents/mapping``."""

    display: str
    name: str | None = None
    extension: str | None = None
    alias: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RealtimeMetricValue:
    """Payload of ``xima.realtime.MetricValue`` (key ``{source}:{metricId}:{categoryValue}``).

    ``computed_ms`` is the live DURATION / AVERAGE_DURATION evaluated at ``computed_at`` (the publish
    time); consumers that need it later re-evaluate with the raw components in ``value``.
    ``extra`` and ``key_extra`` are the vendor's fields outside the document, at the entry level and
    in its ``key``, as received (usually empty).
    """

    source: str
    metric_id: str
    category_value: str | None
    value: MetricValue
    metric_name: str | None = None
    category_type: str | None = None
    computed_ms: float | None = None
    computed_at: str | None = None
    agent: AgentRef | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    key_extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportColumn:
    """A historic report column (``format``: STRING, NUMBER, DURATION...)."""

    key: str
    title: str
    format: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoricRow:
    """Payload of ``xima.historic.Row``: one report row of one exported period.

    ``cells`` is the vendor's ``values`` object keyed by column key (``{"value", "formattedValue"}``);
    ``values`` is the same keyed by column title, value only, typed by the column's format where
    the text is unambiguous (``"4"`` in a NUMBER column is ``4``). DURATION cells are milliseconds.
    ``extra`` keeps the row's fields outside the document, and a ``values`` that is not an object,
    as received. ``export_id`` names the export (its ``id``, by default the report key);
    ``settle`` marks the period's re-export for late rows.
    """

    source: str
    report_key: str
    period_start: str
    period_end: str
    row_index: int
    values: dict[str, Any]
    cells: dict[str, Any]
    report_id: int | str | None = None
    execution_id: str | None = None
    title: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    export_id: str | None = None
    settle: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoricSummary:
    """Payload of ``xima.historic.Summary``: one per exported period, even when it has no rows.

    ``row_count`` counts the published rows. ``extra`` keeps the report's fields outside the
    document, and each documented field that deviated (``columns``, ``rows``...), as received.
    ``export_id`` and ``settle`` as in :class:`HistoricRow`.
    """

    source: str
    report_key: str
    period_start: str
    period_end: str
    row_count: int
    columns: tuple[ReportColumn, ...]
    summary_items: tuple[dict[str, Any], ...]
    report_id: int | str | None = None
    execution_id: str | None = None
    title: str | None = None
    timeframe: dict[str, Any] | None = None
    data_flag: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    export_id: str | None = None
    settle: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFinished:
    """Payload of ``xima.calls.CallFinished`` (key ``{source}:{call_id}``): one call-finished push.

    A WebService Integration profile (seed 000 L1030-1062) sends whatever call data its admin put
    in its URL parameters; there is no schema. ``fields`` holds every parameter as received (text;
    a parameter sent several times is the list of its values), the body's fields too when the
    request had a form or JSON-object body; ``call_id`` is the configured call-id parameter's
    value. ``extra`` keeps a body that is neither, as text.
    """

    source: str
    call_id: str
    fields: dict[str, Any]
    method: str
    received_at: str
    extra: dict[str, Any] = field(default_factory=dict)


EVENT_MODELS: dict[str, type] = {
    METRIC_VALUE_TYPE: RealtimeMetricValue,
    HISTORIC_ROW_TYPE: HistoricRow,
    HISTORIC_SUMMARY_TYPE: HistoricSummary,
    CALL_FINISHED_TYPE: CallFinished,
}
"""CloudEvents ``type`` → payload class of every Xima vendor event (the canonical ``AgentState``,
``QueueMetric`` and ``DeadLetter`` events are registered by :mod:`streamd.schemas` itself)."""

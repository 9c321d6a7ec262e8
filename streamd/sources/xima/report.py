"""Reading one historic report answer (seed 001 L44-179) into ``xima.historic`` events (pure).

Rules:

1. Each period yields one ``xima.historic.Row`` per report row and one ``xima.historic.Summary``
   (also for an empty period), keyed ``{source}:{export}`` (the export's ``id``, by default the
   report key). Ids are ``stable_id(source, export, period start, row)``: deterministic, because
   ``executionId`` changes with every run. A settle re-export (``settle=True``: the same period
   once more, for late rows) is marked ``settle: true`` and has ids of its own
   (``stable_id(..., "settle")``), as deterministic: a consumer tells the first export, its
   settle pass and a redelivery of either apart.
2. Tolerant reading (:mod:`streamd.tolerant`): the report and its rows are routed by the request
   (source, report key, period, row index), so whatever else deviates from the document (seed 001
   L44-179) is published with its JSON paths (``$.rows[2].values["1"].value``) on the event and
   counted. A row lists its own paths and those of the report fields it carries (``reportId``,
   ``executionId``, ``title``, ``columns``); the summary lists the report's. Unknown fields, and
   documented fields that deviated, are kept as received in ``extra``; cell values are typed by
   their column's format where that is unambiguous (``"4"`` in a NUMBER column). A row without
   its ``values`` object is still published when anything identifies it (a non-null field);
   a row with nothing at all (``{}``, ``null``, not an object) is a dead letter, listed on the
   summary as ``$.rows[i]``, and the period is advanced (it would read the same way again).
3. A whole answer that cannot be read (not a JSON object, or without a ``rows`` array) raises
   ``NormalizationError``: the caller retries the period (:mod:`.historic`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from streamd.errors import NormalizationError
from streamd.events import Event, stable_id
from streamd.sources.xima.metric_events import dead_letters
from streamd.sources.xima.models import (
    HISTORIC_ROW_TYPE,
    HISTORIC_SUMMARY_TYPE,
    HISTORIC_TOPIC,
    HistoricRow,
    HistoricSummary,
    ReportColumn,
)
from streamd.sources.xima.periods import stamp
from streamd.tolerant import MAX_PATHS, coerce, json_path

_REPORT_FIELDS: Final = frozenset(
    {
        "reportId",
        "executionId",
        "title",
        "timeframe",
        "skin",
        "columns",
        "dataFlag",
        "summaryItems",
        "rows",
        "charts",
    }
)
_READ_FIELDS: Final = (
    "reportId",
    "executionId",
    "title",
    "timeframe",
    "columns",
    "dataFlag",
    "summaryItems",
    "rows",
)
"""The documented report fields streamd reads: missing is a deviation (``skin``/``charts`` are not read)."""
_TIMEFRAME_FIELDS: Final = frozenset({"type", "start", "end"})
_COLUMN_FIELDS: Final = frozenset({"key", "title", "format"})
_ITEM_FIELDS: Final = frozenset({"title", "value", "formattedValue", "format"})
_CELL_FIELDS: Final = frozenset({"value", "formattedValue"})
_ROW_CARRIED: Final = ("$.reportId", "$.executionId", "$.title", "$.columns")


def report_events(
    source: str,
    key: str,
    start: datetime,
    end: datetime,
    body: object,
    *,
    export_id: str | None = None,
    settle: bool = False,
) -> list[Event]:
    """Rows, the summary of one exported period, and a dead letter per row with nothing in it (rule 2).

    Args:
        export_id: the export's name (default: ``key``): the Kafka key and the ids (rule 1).
        settle: this is the period's settle re-export (rule 1).

    Raises:
        NormalizationError: the body is not a JSON object or has no ``rows`` array (rule 3).
    """
    if not isinstance(body, dict):
        raise NormalizationError(f"historic report {key}: body is not a JSON object")
    if not isinstance(body.get("rows"), list):
        raise NormalizationError(f"historic report {key}: the answer has no rows array", "missing_rows")
    paths: list[str] = [json_path((name,)) for name in _READ_FIELDS if name not in body]
    extra: dict[str, Any] = {}
    for name, item in body.items():
        if name not in _REPORT_FIELDS:
            extra[name] = item
            paths.append(json_path((name,)))
    export = export_id or key
    marker: tuple[str, ...] = ("settle",) if settle else ()
    common: dict[str, Any] = {
        "source": source,
        "report_key": key,
        "export_id": export,
        "settle": settle,
        "period_start": stamp(start),
        "period_end": stamp(end),
        "report_id": _report_id(body, paths, extra),
        "execution_id": _text(body, "executionId", paths, extra),
        "title": _text(body, "title", paths, extra),
    }
    columns = _columns(body, paths, extra)
    carried = tuple(p for p in paths if p in _ROW_CARRIED or p.startswith("$.columns["))
    titles = {c.key: c.title for c in columns}
    formats = {c.key: c.format for c in columns}
    event_key = f"{source}:{export}"
    out: list[Event] = []
    unroutable: list[tuple[NormalizationError, object]] = []
    for index, row in enumerate(_array(body, "rows", paths, extra)):
        if not isinstance(row, dict) or all(v is None for v in row.values()):
            paths.append(json_path(("rows", index)))
            error = f"historic report {key}: row {index} has no values and nothing that identifies it"
            unroutable.append((NormalizationError(error, error_type="missing_key"), row))
            continue
        row_paths = list(carried)
        values, cells, row_extra = _row(index, row, titles, formats, row_paths)
        data = HistoricRow(row_index=index, values=values, cells=cells, extra=row_extra, **common)
        row_id = stable_id(source, export, stamp(start), index, *marker)
        out.append(_event(HISTORIC_ROW_TYPE, event_key, data, end, row_id, row_paths))
    summary = HistoricSummary(
        row_count=len(out),
        columns=columns,
        summary_items=_summary_items(body, paths, extra),
        timeframe=_timeframe(body, paths, extra),
        data_flag=_text(body, "dataFlag", paths, extra),
        extra=extra,
        **common,
    )
    summary_id = stable_id(source, export, stamp(start), "summary", *marker)
    out.append(_event(HISTORIC_SUMMARY_TYPE, event_key, summary, end, summary_id, paths))
    return out + dead_letters(source, unroutable)


def _event(
    kind: str, key: str, data: HistoricRow | HistoricSummary, when: datetime, event_id: str, paths: list[str]
) -> Event:
    deviations = tuple(paths) if len(paths) <= MAX_PATHS else (*paths[:MAX_PATHS], "...")
    return Event(
        topic=HISTORIC_TOPIC,
        type=kind,
        source=data.source,
        key=key,
        data=data,
        time=when,
        id=event_id,
        deviations=deviations,
    )


def _deviates(body: dict[str, Any], name: str, paths: list[str], extra: dict[str, Any]) -> None:
    """A report field deviated: list it and keep it as received (``null`` adds nothing to keep)."""
    paths.append(json_path((name,)))
    if body.get(name) is not None:
        extra[name] = body[name]


def _report_id(body: dict[str, Any], paths: list[str], extra: dict[str, Any]) -> int | str | None:
    value = body.get("reportId")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value is None:
        if "reportId" in body:
            paths.append("$.reportId")
        return None
    paths.append("$.reportId")
    ok, number = coerce("int_type", value)
    if ok:
        return int(number)
    if isinstance(value, str):
        return value
    extra["reportId"] = value
    return None


def _text(body: dict[str, Any], name: str, paths: list[str], extra: dict[str, Any]) -> str | None:
    value = body.get(name)
    if isinstance(value, str):
        return value
    if value is None:
        if name in body:
            paths.append(json_path((name,)))
        return None
    ok, text = coerce("string_type", value)
    if ok:
        paths.append(json_path((name,)))
        return str(text)
    _deviates(body, name, paths, extra)
    return None


def _array(body: dict[str, Any], name: str, paths: list[str], extra: dict[str, Any]) -> list[Any]:
    value = body.get(name)
    if isinstance(value, list):
        return value
    if name in body:
        _deviates(body, name, paths, extra)
    return []


def _timeframe(body: dict[str, Any], paths: list[str], extra: dict[str, Any]) -> dict[str, Any] | None:
    value = body.get("timeframe")
    if not isinstance(value, dict):
        if "timeframe" in body:
            _deviates(body, "timeframe", paths, extra)
        return None
    for name in ("start", "end"):
        if not isinstance(value.get(name), str):
            paths.append(json_path(("timeframe", name)))
    paths.extend(json_path(("timeframe", name)) for name in value if name not in _TIMEFRAME_FIELDS)
    return value


def _columns(body: dict[str, Any], paths: list[str], extra: dict[str, Any]) -> tuple[ReportColumn, ...]:
    """The report's columns; a column without a usable ``key`` is left out (and listed)."""
    before = len(paths)
    out: list[ReportColumn] = []
    for i, column in enumerate(_array(body, "columns", paths, extra)):
        if not isinstance(column, dict):
            paths.append(json_path(("columns", i)))
            continue
        texts: dict[str, str | None] = {}
        for name in ("key", "title", "format"):
            value = column.get(name)
            if isinstance(value, str):
                texts[name] = value
                continue
            paths.append(json_path(("columns", i, name)))
            ok, text = coerce("string_type", value)
            texts[name] = str(text) if ok else None
        paths.extend(json_path(("columns", i, name)) for name in column if name not in _COLUMN_FIELDS)
        column_key = texts["key"]
        if column_key is not None:
            out.append(
                ReportColumn(key=column_key, title=texts["title"] or column_key, format=texts["format"])
            )
    if len(paths) > before and isinstance(body.get("columns"), list):
        extra["columns"] = body["columns"]
    return tuple(out)


def _summary_items(
    body: dict[str, Any], paths: list[str], extra: dict[str, Any]
) -> tuple[dict[str, Any], ...]:
    items = _array(body, "summaryItems", paths, extra)
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            paths.append(json_path(("summaryItems", i)))
            continue
        paths.extend(json_path(("summaryItems", i, name)) for name in ("title", "value") if name not in item)
        paths.extend(json_path(("summaryItems", i, name)) for name in item if name not in _ITEM_FIELDS)
        out.append(item)
    if len(out) < len(items):  # an item was left out: keep them all as received
        extra["summaryItems"] = items
    return tuple(out)


def _row(
    index: int, row: dict[str, Any], titles: dict[str, str], formats: dict[str, str | None], paths: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(values by title, cells as received, extra)`` of one identified row; deviations into ``paths``."""
    extra = {name: item for name, item in row.items() if name != "values"}
    cells = row.get("values")
    if not isinstance(cells, dict):
        paths.append(json_path(("rows", index, "values")))
        if cells is not None:
            extra["values"] = cells
        cells = {}
    values: dict[str, Any] = {}
    for column, cell in cells.items():
        where: tuple[str | int, ...] = ("rows", index, "values", column)
        if titles and column not in titles:
            paths.append(json_path(where))
        if not isinstance(cell, dict):
            paths.append(json_path(where))
            values[titles.get(column, column)] = cell
            continue
        if "value" in cell:
            value = _cell_value(cell["value"], formats.get(column), json_path((*where, "value")), paths)
        else:
            value = None
            paths.append(json_path((*where, "value")))
        formatted = cell.get("formattedValue")
        if formatted is not None and not isinstance(formatted, str):
            paths.append(json_path((*where, "formattedValue")))
        paths.extend(json_path((*where, name)) for name in cell if name not in _CELL_FIELDS)
        values[titles.get(column, column)] = value
    paths.extend(json_path(("rows", index, name)) for name in row if name != "values")
    return values, cells, extra


def _cell_value(value: Any, column_format: str | None, path: str, paths: list[str]) -> Any:
    """A cell's value typed by its column's format where unambiguous; listed when it deviated."""
    if value is None or column_format not in ("NUMBER", "DURATION", "STRING"):
        return value
    if column_format == "STRING":
        if isinstance(value, str):
            return value
        paths.append(path)
        ok, text = coerce("string_type", value)
        return text if ok else value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    paths.append(path)
    for error_type in ("int_type", "float_type"):
        ok, number = coerce(error_type, value)
        if ok:
            return number
    return value

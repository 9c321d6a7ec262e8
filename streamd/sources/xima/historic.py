"""Historic report export: ``POST /rest/api/v1/historic-data/{key}`` once per period (seed 000 §2.0; 001).

Rules:

1. Periods are contiguous ``[start, start + every)``: the cursor is the start of the next period to
   export, persisted in the :class:`~streamd.sources.base.CursorStore` as ISO-8601 under the name
   ``historic:{key}``. The generic :class:`~streamd.sources.poller.Poller` saves it only after
   ``await emit(...)`` returned (Kafka acknowledged), so a restart neither repeats nor skips a period
   (a crash between the ack and the save re-exports that one period with the same event ids).
2. A period is exported once ``end + lag`` has passed; overdue periods are exported back to back
   (``next_in=0``), one period per cycle, each acknowledged before the next.
3. Without a stored cursor the export starts at ``start`` (config) or with the last complete period.
   Periods align to midnight of ``timezone``; ``every`` divides 24h (validated). Periods of whole
   hours step in local wall-clock time (:func:`next_start`), so ``every: 1d`` stays on local
   midnight across DST changes (a 23 h and a 25 h day); sub-hour periods step in absolute time.
4. The request timeframe is ``start`` .. ``end - 1 ms`` (the seed's inclusive ``23:59:59`` end style,
   with millisecond precision so no instant is lost), written with the zone's offset.
5. Each period yields one ``xima.historic.Row`` per report row and one ``xima.historic.Summary``
   (also for an empty period). Ids are ``stable_id(source, key, period start, row)``: deterministic,
   because ``executionId`` changes with every run.
6. Tolerant reading (:mod:`streamd.tolerant`): the report and its rows are routed by the request
   (source, report key, period, row index), so whatever else deviates from the document (seed 001
   L44-179) is published with its JSON paths (``$.rows[2].values["1"].value``) on the event and
   counted. A row lists its own paths and those of the report fields it carries (``reportId``,
   ``executionId``, ``title``, ``columns``); the summary lists the report's. Unknown fields, and
   documented fields that deviated, are kept as received in ``extra``; cell values are typed by
   their column's format where that is unambiguous (``"4"`` in a NUMBER column). A row without
   its ``values`` object is still published when anything identifies it (a non-null field);
   a row with nothing at all (``{}``, ``null``, not an object) is a dead letter, listed on the
   summary as ``$.rows[i]``. Only a body that is not a JSON object dead-letters the whole
   report. The period is advanced either way (it would read the same way again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from streamd.errors import NormalizationError
from streamd.events import Event, stable_id
from streamd.sources.poller import PollResult
from streamd.sources.xima.client import XimaClient
from streamd.sources.xima.config import XimaHistoricReport
from streamd.sources.xima.models import (
    HISTORIC_ROW_TYPE,
    HISTORIC_SUMMARY_TYPE,
    HISTORIC_TOPIC,
    HistoricRow,
    HistoricSummary,
    ReportColumn,
)
from streamd.sources.xima.normalize import dead_letters
from streamd.sources.xima.realtime import count_dead, count_deviations
from streamd.tolerant import MAX_PATHS, coerce, json_path


def utc_now() -> datetime:
    """The current wall-clock time, aware UTC."""
    return datetime.now(UTC)


def align(when: datetime, every: float, zone: ZoneInfo) -> datetime:
    """The start of the period (of ``every`` seconds, aligned to local midnight) containing ``when``."""
    local = when.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (local - midnight).total_seconds()
    return midnight + timedelta(seconds=(elapsed // every) * every)


def _instants(wall: datetime, zone: ZoneInfo, every: float) -> list[datetime]:
    """The UTC instants at which the naive local ``wall`` time occurs in ``zone``, as period boundaries.

    A skipped wall time (spring forward) becomes the end of the gap; a repeated one (fall back) is a
    boundary at its second occurrence too only when the repeat lasts a whole period (hourly periods
    over a one-hour fall back), so no period is shorter than ``every`` because of it.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second or first.astimezone(zone).replace(tzinfo=None) != wall:
        return [first]  # an ordinary time, or a skipped one: fold=0 maps it past the gap
    return [first, second] if (second - first).total_seconds() >= every else [first]


def next_start(cursor: datetime, every: float, zone: ZoneInfo) -> datetime:
    """The start of the period after the one starting at ``cursor``.

    Periods of a whole number of hours step in local wall-clock time: the next boundary is the first
    instant strictly after ``cursor`` whose local time is aligned to midnight, so a daily period stays
    on local midnight across DST (23 h and 25 h days) and hourly periods stay on the hour. Sub-hour
    periods step in absolute time (every offset in use is a multiple of 15 min).
    """
    if every < 3600 or every % 3600:
        return (cursor.astimezone(UTC) + timedelta(seconds=every)).astimezone(zone)
    after = cursor.astimezone(UTC)
    local = cursor.astimezone(zone).replace(tzinfo=None)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    wall = midnight + timedelta(seconds=((local - midnight).total_seconds() // every) * every)
    while True:  # at most a few steps: the aligned wall time at or before the cursor, then onwards
        for instant in _instants(wall, zone, every):
            if instant > after:
                return instant.astimezone(zone)
        wall += timedelta(seconds=every)


def previous_start(start: datetime, every: float, zone: ZoneInfo) -> datetime:
    """The start of the period before the one starting at ``start`` (the inverse of :func:`next_start`).

    (Instants are compared in UTC: Python compares two datetimes of the same zone by wall time.)
    """
    earlier = align(start.astimezone(UTC) - timedelta(seconds=every + 7200), every, zone)
    while (following := next_start(earlier, every, zone)).astimezone(UTC) < start.astimezone(UTC):
        earlier = following
    return earlier.astimezone(zone)


def stamp(when: datetime) -> str:
    """``2019-09-09T00:00:00.000-06:00``: ISO-8601 with milliseconds and offset, as the seed writes it."""
    return when.isoformat(timespec="milliseconds")


def request_body(report: XimaHistoricReport, start: datetime, end: datetime) -> dict[str, Any]:
    """The report request for one period: the timeframe parameter plus the configured ones."""
    last = end - timedelta(milliseconds=1)
    timeframe = {"type": "REPORT_TIMEFRAME", "start": stamp(start), "end": stamp(last)}
    parameters: list[dict[str, Any]] = [
        {"name": report.timeframe_parameter, "valueType": "REPORT_TIMEFRAME", "value": timeframe}
    ]
    parameters += report.parameters
    return {"format": "json", "parameters": parameters}


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


def report_events(source: str, key: str, start: datetime, end: datetime, body: object) -> list[Event]:
    """Rows, the summary of one exported period, and a dead letter per row with nothing in it (rule 6).

    Raises:
        NormalizationError: the body is not a JSON object (the whole report is unroutable).
    """
    if not isinstance(body, dict):
        raise NormalizationError(f"historic report {key}: body is not a JSON object")
    paths: list[str] = [json_path((name,)) for name in _READ_FIELDS if name not in body]
    extra: dict[str, Any] = {}
    for name, item in body.items():
        if name not in _REPORT_FIELDS:
            extra[name] = item
            paths.append(json_path((name,)))
    common: dict[str, Any] = {
        "source": source,
        "report_key": key,
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
    event_key = f"{source}:{key}"
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
        row_id = stable_id(source, key, stamp(start), index)
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
    summary_id = stable_id(source, key, stamp(start), "summary")
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


@dataclass(slots=True)
class HistoricSpec:
    """The :class:`~streamd.sources.poller.PollSpec` of one report; the cursor is the next period start."""

    report: XimaHistoricReport
    client: XimaClient
    source: str
    now: Callable[[], datetime] = utc_now
    name: str = field(init=False)
    zone: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"historic:{self.report.key}"
        self.zone = ZoneInfo(self.report.timezone)

    def load_cursor(self, saved: str | None) -> datetime:
        """The stored next-period start, else ``start`` (aligned), else the last complete period."""
        if saved:
            return datetime.fromisoformat(saved).astimezone(self.zone)
        every = self.report.every
        if self.report.start is not None:
            start = (
                self.report.start if self.report.start.tzinfo else self.report.start.replace(tzinfo=self.zone)
            )
            return align(start, every, self.zone)
        current = align(self.now() - timedelta(seconds=self.report.lag), every, self.zone)
        return previous_start(current, every, self.zone)

    def dump_cursor(self, cursor: datetime) -> str:
        """ISO-8601 with offset."""
        return stamp(cursor)

    async def fetch(self, cursor: datetime) -> PollResult[datetime]:
        """Export the period starting at ``cursor`` when it is due; otherwise say when it will be."""
        lag = timedelta(seconds=self.report.lag)
        end = next_start(cursor, self.report.every, self.zone)  # wall-clock steps for whole hours: DST-safe
        now = self.now()
        due = end.astimezone(UTC) + lag  # in UTC: arithmetic on a zone's datetime is wall-clock
        if due > now:
            return PollResult((), cursor, next_in=(due - now).total_seconds())
        body = await self.client.run_report(
            self.report.key, request_body(self.report, cursor, end), timeout=self.report.timeout
        )
        try:
            events = report_events(self.source, self.report.key, cursor, end, body)
        except NormalizationError as exc:
            events = dead_letters(self.source, [(exc, body)])
        count_dead(self.source, events)
        count_deviations(self.source, events)
        wait = (next_start(end, self.report.every, self.zone).astimezone(UTC) + lag - now).total_seconds()
        return PollResult(events, end, next_in=max(0.0, wait))

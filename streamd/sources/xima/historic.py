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
   because ``executionId`` changes with every run. A malformed report is dead-lettered and the
   period is still advanced (it would fail the same way again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
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
from streamd.sources.xima.realtime import count_dead


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


def report_events(source: str, key: str, start: datetime, end: datetime, body: object) -> list[Event]:
    """Rows and the summary of one exported period.

    Raises:
        NormalizationError: the body is not a JSON report (no ``rows`` array).
    """
    if not isinstance(body, dict) or not isinstance(body.get("rows"), list):
        raise NormalizationError(f"historic report {key}: body has no rows array")
    columns = tuple(
        ReportColumn(key=str(c.get("key")), title=str(c.get("title")), format=c.get("format"))
        for c in body.get("columns") or ()
        if isinstance(c, dict)
    )
    titles = {c.key: c.title for c in columns}
    common: dict[str, Any] = {
        "source": source,
        "report_key": key,
        "period_start": stamp(start),
        "period_end": stamp(end),
        "report_id": body.get("reportId"),
        "execution_id": body.get("executionId"),
        "title": body.get("title"),
    }
    event_key = f"{source}:{key}"
    out: list[Event] = []
    for index, row in enumerate(body["rows"]):
        cells = row.get("values") if isinstance(row, dict) else None
        if not isinstance(cells, dict):
            raise NormalizationError(f"historic report {key}: row {index} has no values object")
        values = {
            titles.get(str(k), str(k)): (c.get("value") if isinstance(c, dict) else c)
            for k, c in cells.items()
        }
        data = HistoricRow(row_index=index, values=values, cells=cells, **common)
        out.append(
            _event(HISTORIC_ROW_TYPE, event_key, data, end, stable_id(source, key, stamp(start), index))
        )
    summary = HistoricSummary(
        row_count=len(out),
        columns=columns,
        summary_items=tuple(i for i in body.get("summaryItems") or () if isinstance(i, dict)),
        timeframe=body.get("timeframe") if isinstance(body.get("timeframe"), dict) else None,
        data_flag=body.get("dataFlag"),
        **common,
    )
    out.append(
        _event(
            HISTORIC_SUMMARY_TYPE, event_key, summary, end, stable_id(source, key, stamp(start), "summary")
        )
    )
    return out


def _event(kind: str, key: str, data: HistoricRow | HistoricSummary, when: datetime, event_id: str) -> Event:
    return Event(
        topic=HISTORIC_TOPIC, type=kind, source=data.source, key=key, data=data, time=when, id=event_id
    )


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
        wait = (next_start(end, self.report.every, self.zone).astimezone(UTC) + lag - now).total_seconds()
        return PollResult(events, end, next_in=max(0.0, wait))

"""Historic report export: ``POST /rest/api/v1/historic-data/{key}`` once per period (seed 000 §2.0; 001).

Rules:

1. Periods are contiguous ``[start, start + every)``: the cursor is the start of the next period to
   export, persisted in the :class:`~streamd.sources.base.CursorStore` as ISO-8601 under the name
   ``historic:{id}`` (the export's ``id``, by default the report key: one key may be configured
   several times, each with its own id, parameters and cursor). The generic
   :class:`~streamd.sources.poller.Poller` saves it only after ``await emit(...)`` returned (Kafka
   acknowledged), so a restart neither repeats nor skips a period (a crash between the ack and the
   save re-exports that one period with the same event ids).
2. A period is exported once ``end + lag`` has passed; overdue periods are exported back to back
   (``next_in=0``), one period per cycle, each acknowledged before the next.
3. Without a stored cursor the export starts at ``start`` (config) or with the last complete period.
4. Period alignment, DST-safe stepping and the request timeframe are :mod:`.periods`'.
5. Reading the report (rows, summary, tolerant reading) is :mod:`.report`'s.
6. A whole answer that cannot be read — not a JSON object, or without a ``rows`` array (an empty
   period answers ``"rows": []``) — is not the period's data: the export raises
   ``VendorProtocolError``, the cursor stays, and the supervisor retries the same period with
   backoff (the job is ``retrying`` with the reason). Skipping it would lose the period for good.
7. Settle (``settle: N``): each period is exported once more, ``N`` periods after it, to pick up
   late-arriving rows. The cursor then also holds the next period to re-export (persisted as
   ``{next}|{settle}``); a period is re-exported once the period ``N`` after it was exported,
   before any later first export, one per cycle and acknowledged before the cursor moves, so a
   restart neither repeats nor skips a re-export. Only periods this cursor exported are
   re-exported (a new cursor, or settle newly turned on, starts at the next period). The events
   are marked ``settle: true`` with ids of their own (:mod:`.report` rule 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from streamd.errors import NormalizationError, VendorProtocolError
from streamd.events import Event
from streamd.sources.poller import PollResult
from streamd.sources.xima.client import XimaClient
from streamd.sources.xima.config import XimaHistoricReport
from streamd.sources.xima.periods import align, next_start, previous_start, request_body, stamp, utc_now
from streamd.sources.xima.realtime import count_dead, count_deviations
from streamd.sources.xima.report import report_events
from streamd.telemetry import count_error


@dataclass(frozen=True, slots=True)
class HistoricCursor:
    """The next period to export and, with ``settle``, the next one to re-export (rule 7)."""

    next: datetime
    settle: datetime | None = None


@dataclass(slots=True)
class HistoricSpec:
    """The :class:`~streamd.sources.poller.PollSpec` of one report export."""

    report: XimaHistoricReport
    client: XimaClient
    source: str
    now: Callable[[], datetime] = utc_now
    name: str = field(init=False)
    zone: ZoneInfo = field(init=False)

    def __post_init__(self) -> None:
        self.name = f"historic:{self.report.export_id}"
        self.zone = ZoneInfo(self.report.timezone)

    def load_cursor(self, saved: str | None) -> HistoricCursor:
        """The stored cursor (rule 7: ``next|settle``), else ``start`` (aligned), else the last
        complete period; a settle position starts at the next period when none is stored."""
        settle: datetime | None = None
        if saved:
            head, _, tail = saved.partition("|")
            start = datetime.fromisoformat(head).astimezone(self.zone)
            settle = datetime.fromisoformat(tail).astimezone(self.zone) if tail else None
        elif self.report.start is not None:
            first = self.report.start
            start = align(
                first if first.tzinfo else first.replace(tzinfo=self.zone), self.report.every, self.zone
            )
        else:
            current = align(self.now() - timedelta(seconds=self.report.lag), self.report.every, self.zone)
            start = previous_start(current, self.report.every, self.zone)
        if not self.report.settle:
            return HistoricCursor(start)
        return HistoricCursor(start, settle if settle is not None else start)

    def dump_cursor(self, cursor: HistoricCursor) -> str:
        """ISO-8601 with offset (``next|settle`` with settle on)."""
        if cursor.settle is None:
            return stamp(cursor.next)
        return f"{stamp(cursor.next)}|{stamp(cursor.settle)}"

    def _settle_due(self, cursor: HistoricCursor) -> bool:
        """True when the period at ``cursor.settle`` is to be re-exported now (rule 7)."""
        if cursor.settle is None:
            return False
        later = cursor.settle
        for _ in range(self.report.settle):
            later = next_start(later, self.report.every, self.zone)
        return later.astimezone(UTC) < cursor.next.astimezone(UTC)  # period `later` was exported

    async def fetch(self, cursor: HistoricCursor) -> PollResult[HistoricCursor]:
        """Re-export the period due for settling, else export the next period when it is due;
        otherwise say when it will be."""
        every, zone = self.report.every, self.zone
        lag = timedelta(seconds=self.report.lag)
        now = self.now()
        if cursor.settle is not None and self._settle_due(cursor):
            end = next_start(cursor.settle, every, zone)
            events = await self._export(cursor.settle, end, settle=True)
            return PollResult(events, replace(cursor, settle=end), next_in=0.0)
        end = next_start(cursor.next, every, zone)  # wall-clock steps for whole hours: DST-safe
        due = end.astimezone(UTC) + lag  # in UTC: arithmetic on a zone's datetime is wall-clock
        if due > now:
            return PollResult((), cursor, next_in=(due - now).total_seconds())
        events = await self._export(cursor.next, end, settle=False)
        after = replace(cursor, next=end)
        wait = (next_start(end, every, zone).astimezone(UTC) + lag - now).total_seconds()
        return PollResult(events, after, next_in=0.0 if self._settle_due(after) else max(0.0, wait))

    async def _export(self, start: datetime, end: datetime, *, settle: bool) -> list[Event]:
        """Run the report for ``[start, end)`` and read it (rule 6: an unreadable answer raises)."""
        report = self.report
        body = await self.client.run_report(
            report.key, request_body(report, start, end), timeout=report.timeout
        )
        try:
            events = report_events(
                self.source, report.key, start, end, body, export_id=report.export_id, settle=settle
            )
        except NormalizationError as exc:  # rule 6: retry this period, never skip it
            count_error(self.source, "processing", exc.error_type)
            raise VendorProtocolError(
                f"xima {self.source}: {exc} for the period {stamp(start)} .. {stamp(end)}: retrying it"
            ) from exc
        count_dead(self.source, events)
        count_deviations(self.source, events)
        return events

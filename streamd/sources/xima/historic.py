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
4. Period alignment, DST-safe stepping and the request timeframe are :mod:`.periods`'.
5. Reading the report (rows, summary, tolerant reading) is :mod:`.report`'s.
6. A whole answer that cannot be read — not a JSON object, or without a ``rows`` array (an empty
   period answers ``"rows": []``) — is not the period's data: the export raises
   ``VendorProtocolError``, the cursor stays, and the supervisor retries the same period with
   backoff (the job is ``retrying`` with the reason). Skipping it would lose the period for good.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from streamd.errors import NormalizationError, VendorProtocolError
from streamd.sources.poller import PollResult
from streamd.sources.xima.client import XimaClient
from streamd.sources.xima.config import XimaHistoricReport
from streamd.sources.xima.periods import align, next_start, previous_start, request_body, stamp, utc_now
from streamd.sources.xima.realtime import count_dead, count_deviations
from streamd.sources.xima.report import report_events
from streamd.telemetry import count_error


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
        except NormalizationError as exc:  # rule 6: retry this period, never skip it
            count_error(self.source, "processing", exc.error_type)
            raise VendorProtocolError(
                f"xima {self.source}: {exc} for the period {stamp(cursor)} .. {stamp(end)}: retrying it"
            ) from exc
        count_dead(self.source, events)
        count_deviations(self.source, events)
        wait = (next_start(end, self.report.every, self.zone).astimezone(UTC) + lag - now).total_seconds()
        return PollResult(events, end, next_in=max(0.0, wait))

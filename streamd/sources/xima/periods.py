"""Historic export periods: alignment, DST-safe stepping and the report request (pure).

Rules:

1. Periods are contiguous ``[start, start + every)`` and align to midnight of the report's
   ``timezone``; ``every`` divides 24h (validated by the config).
2. Periods of whole hours step in local wall-clock time (:func:`next_start`), so ``every: 1d``
   stays on local midnight across DST changes (a 23 h and a 25 h day); sub-hour periods step in
   absolute time (every offset in use is a multiple of 15 min).
3. The request timeframe is ``start`` .. ``end - 1 ms`` (the seed's inclusive ``23:59:59`` end
   style, with millisecond precision so no instant is lost), written with the zone's offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from streamd.sources.xima.config import XimaHistoricReport


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

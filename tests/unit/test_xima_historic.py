"""Pure parts of the Xima historic export: period alignment, request body, seed 001's report."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from streamd.errors import NormalizationError
from streamd.sources.xima.config import XimaHistoricReport
from streamd.sources.xima.models import HistoricRow, HistoricSummary
from streamd.sources.xima.periods import align, next_start, previous_start, request_body, stamp
from streamd.sources.xima.report import report_events

DENVER = ZoneInfo("America/Denver")
CHICAGO = ZoneInfo("America/Chicago")

# seed 001 L44-179 (one row; summary items abbreviated to two)
SEED_REPORT = {
    "reportId": 48,
    "executionId": "3eb08a9a-0f05-44b8-a0b0-ba7338a1d2e5",
    "title": "Agent Talking Summary",
    "timeframe": {
        "type": "REPORT_TIMEFRAME",
        "start": "2019-09-09T00:00:00-06:00",
        "end": "2019-09-10T23:59:59-06:00",
    },
    "skin": "Avaya Default",
    "columns": [
        {"key": "0", "title": "Agent", "format": "STRING"},
        {"key": "1", "title": "Inbound Calls", "format": "NUMBER"},
        {"key": "2", "title": "Outbound Calls", "format": "NUMBER"},
        {"key": "3", "title": "Internal Calls", "format": "NUMBER"},
        {"key": "4", "title": "Total Calls", "format": "NUMBER"},
        {"key": "5", "title": "Total Talking", "format": "DURATION"},
        {"key": "6", "title": "Avg Talking", "format": "DURATION"},
    ],
    "dataFlag": "INCLUDED",
    "summaryItems": [
        {"title": "Agents", "value": 1, "formattedValue": "1", "format": "NUMBER"},
        {"title": "Total Talking", "value": 12673424, "formattedValue": "3:31:13", "format": "NUMBER"},
    ],
    "rows": [
        {
            "values": {
                "0": {"value": "Agent1(200)"},
                "1": {"value": 4, "formattedValue": "4"},
                "2": {"value": 6, "formattedValue": "6"},
                "3": {"value": 4, "formattedValue": "4"},
                "4": {"value": 14, "formattedValue": "14"},
                "5": {"value": 12673424, "formattedValue": "3:31:13"},
                "6": {"value": 1810489, "formattedValue": "0:30:10"},
            }
        }
    ],
    "charts": {"type": "CHARTS", "rows": []},
}
START = datetime(2019, 9, 9, tzinfo=DENVER)
END = datetime(2019, 9, 11, tzinfo=DENVER)


def test_request_body_matches_the_seed_shape() -> None:
    report = XimaHistoricReport(
        key="LT39K5C5",
        every="1d",
        parameters=[{"name": "Rows (Agent)", "valueType": "PBX_USERS",
                     "value": {"type": "PBX_USERS", "pbxUsers": [{"key": "Agent1(200)"}]}}],
    )  # fmt: skip
    body = request_body(report, START, datetime(2019, 9, 10, tzinfo=DENVER))
    assert body["format"] == "json"
    assert body["parameters"][0] == {
        "name": "Report Timeframe",
        "valueType": "REPORT_TIMEFRAME",
        "value": {"type": "REPORT_TIMEFRAME", "start": "2019-09-09T00:00:00.000-06:00",
                  "end": "2019-09-09T23:59:59.999-06:00"},
    }  # fmt: skip
    assert body["parameters"][1]["valueType"] == "PBX_USERS"


def test_periods_align_to_local_midnight() -> None:
    when = datetime(2019, 9, 9, 7, 22, tzinfo=UTC)  # 01:22 in Denver
    assert align(when, 900, DENVER) == datetime(2019, 9, 9, 1, 15, tzinfo=DENVER)
    assert align(when, 86400, DENVER) == datetime(2019, 9, 9, tzinfo=DENVER)


def periods(start: datetime, every: float, zone: ZoneInfo, n: int) -> list[str]:
    """``n`` period starts from ``start`` on, stepped with ``next_start``, as the cursor stamps them."""
    out = [start]
    for _ in range(n - 1):
        out.append(next_start(out[-1], every, zone))
    for earlier, later in itertools.pairwise(out):  # previous_start inverts next_start
        assert previous_start(later, every, zone).astimezone(UTC) == earlier.astimezone(UTC)
    return [stamp(p) for p in out]


def test_daily_periods_stay_on_local_midnight_across_both_dst_changes() -> None:
    assert periods(datetime(2026, 3, 7, tzinfo=CHICAGO), 86400, CHICAGO, 4) == [
        "2026-03-07T00:00:00.000-06:00",
        "2026-03-08T00:00:00.000-06:00",  # a 23 h day
        "2026-03-09T00:00:00.000-05:00",
        "2026-03-10T00:00:00.000-05:00",
    ]
    assert periods(datetime(2026, 10, 31, tzinfo=CHICAGO), 86400, CHICAGO, 4) == [
        "2026-10-31T00:00:00.000-05:00",
        "2026-11-01T00:00:00.000-05:00",  # a 25 h day
        "2026-11-02T00:00:00.000-06:00",
        "2026-11-03T00:00:00.000-06:00",
    ]


def test_hourly_periods_stay_on_the_hour_and_cover_every_hour_once() -> None:
    assert periods(datetime(2026, 3, 8, 1, tzinfo=CHICAGO), 3600, CHICAGO, 3) == [
        "2026-03-08T01:00:00.000-06:00",
        "2026-03-08T03:00:00.000-05:00",  # 02:00 does not exist
        "2026-03-08T04:00:00.000-05:00",
    ]
    assert periods(datetime(2026, 11, 1, 0, tzinfo=CHICAGO), 3600, CHICAGO, 4) == [
        "2026-11-01T00:00:00.000-05:00",
        "2026-11-01T01:00:00.000-05:00",
        "2026-11-01T01:00:00.000-06:00",  # the repeated hour is a period of its own
        "2026-11-01T02:00:00.000-06:00",
    ]
    assert periods(datetime(2026, 11, 1, 0, tzinfo=CHICAGO), 7200, CHICAGO, 3) == [
        "2026-11-01T00:00:00.000-05:00",
        "2026-11-01T02:00:00.000-06:00",  # a 3 h period: 01:00 CST is not a 2 h boundary
        "2026-11-01T04:00:00.000-06:00",
    ]


def test_sub_hour_periods_step_in_absolute_time() -> None:
    assert periods(datetime(2026, 3, 8, 1, 30, tzinfo=CHICAGO), 900, CHICAGO, 3) == [
        "2026-03-08T01:30:00.000-06:00",
        "2026-03-08T01:45:00.000-06:00",
        "2026-03-08T03:00:00.000-05:00",
    ]


def test_seed_report_becomes_rows_and_a_summary() -> None:
    events = report_events("cr1", "LT39K5C5", START, END, SEED_REPORT)
    row, summary = events[0].data, events[1].data
    assert isinstance(row, HistoricRow)
    assert row.values == {"Agent": "Agent1(200)", "Inbound Calls": 4, "Outbound Calls": 6, "Internal Calls": 4,
                          "Total Calls": 14, "Total Talking": 12673424, "Avg Talking": 1810489}  # fmt: skip
    assert row.cells["5"] == {"value": 12673424, "formattedValue": "3:31:13"}
    assert row.execution_id == "3eb08a9a-0f05-44b8-a0b0-ba7338a1d2e5"
    assert isinstance(summary, HistoricSummary)
    assert (summary.row_count, summary.report_id, summary.data_flag) == (1, 48, "INCLUDED")
    assert events[0].topic == events[1].topic == "xima.historic"
    assert [e.type for e in events] == ["xima.historic.Row", "xima.historic.Summary"]
    again = report_events("cr1", "LT39K5C5", START, END, {**SEED_REPORT, "executionId": "other"})
    assert [e.id for e in again] == [e.id for e in events]  # ids do not depend on the run


def test_empty_period_still_has_a_summary() -> None:
    [summary] = report_events("cr1", "K", START, END, {**SEED_REPORT, "rows": []})
    assert summary.data.row_count == 0


@pytest.mark.parametrize("body", [None, [], "report", 48])
def test_a_body_that_is_not_an_object_is_unroutable(body: object) -> None:
    with pytest.raises(NormalizationError):
        report_events("cr1", "K", START, END, body)


@pytest.mark.parametrize("rows", ["x", None, {"0": {}}, "absent"])
def test_a_report_without_a_rows_array_is_not_the_periods_data(rows: object) -> None:
    body = {k: v for k, v in SEED_REPORT.items() if k != "rows"}
    if rows != "absent":
        body["rows"] = rows
    with pytest.raises(NormalizationError, match="K: the answer has no rows array") as caught:
        report_events("cr1", "K", START, END, body)
    assert caught.value.error_type == "missing_rows"


def test_an_empty_period_has_its_summary() -> None:
    [summary] = report_events("cr1", "K", START, END, {**SEED_REPORT, "rows": []})
    assert summary.type == "xima.historic.Summary"
    assert summary.deviations == ()
    assert summary.data.row_count == 0


def test_a_settle_export_has_its_own_deterministic_ids_and_an_export_id_keys_the_events() -> None:
    first = report_events("cr1", "LT39K5C5", START, END, SEED_REPORT)
    settle = report_events("cr1", "LT39K5C5", START, END, SEED_REPORT, settle=True)
    again = report_events("cr1", "LT39K5C5", START, END, SEED_REPORT, settle=True)
    assert [e.id for e in settle] == [e.id for e in again]
    assert not {e.id for e in settle} & {e.id for e in first}
    assert all(e.data.settle for e in settle)
    assert not any(e.data.settle for e in first)
    named = report_events("cr1", "LT39K5C5", START, END, SEED_REPORT, export_id="talk-201")
    assert {e.key for e in named} == {"cr1:talk-201"}
    assert {e.data.export_id for e in named} == {"talk-201"}
    assert {e.data.report_key for e in named} == {"LT39K5C5"}
    assert not {e.id for e in named} & {e.id for e in first}


def test_a_cursor_saved_before_settle_was_turned_on_settles_from_the_next_period() -> None:
    from streamd.sources.xima.historic import HistoricCursor, HistoricSpec

    report = XimaHistoricReport.model_validate({"key": "K", "every": "15m", "settle": 2})
    spec = HistoricSpec(report, None, "cr1")  # type: ignore[arg-type]  # no request in this test
    old = spec.load_cursor("2026-01-01T01:00:00.000+00:00")
    assert old == HistoricCursor(datetime(2026, 1, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC))
    saved = spec.dump_cursor(old)
    assert saved == "2026-01-01T01:00:00.000+00:00|2026-01-01T01:00:00.000+00:00"
    assert spec.load_cursor(saved) == old
    plain = HistoricSpec(XimaHistoricReport.model_validate({"key": "K"}), None, "cr1")  # type: ignore[arg-type]
    assert plain.dump_cursor(plain.load_cursor(saved)) == "2026-01-01T01:00:00.000+00:00"  # settle off

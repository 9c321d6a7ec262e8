"""Pure parts of the Xima historic export: period alignment, request body, seed 001's report."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from streamd.errors import NormalizationError
from streamd.sources.xima.config import XimaHistoricReport
from streamd.sources.xima.historic import align, report_events, request_body
from streamd.sources.xima.models import HistoricRow, HistoricSummary

DENVER = ZoneInfo("America/Denver")

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


@pytest.mark.parametrize("body", [None, [], {"rows": "x"}, {"rows": [{"values": 3}]}])
def test_malformed_report_raises(body: object) -> None:
    with pytest.raises(NormalizationError):
        report_events("cr1", "K", START, END, body)

"""Tolerant reading of Xima input (issue 13), property-tested: the seed's documented examples with
random deviations (never in the routing fields) are published, not dead-lettered, with their
routing intact, their deviation paths listed and every unknown field still in the value."""

from __future__ import annotations

import copy
import functools
import json
from datetime import UTC, datetime
from typing import Any, cast

import jsonschema
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.events import QueueMetric
from streamd.publish.encoding import encode, header_dict
from streamd.schemas import event_schema, events_schema
from streamd.sources.xima.models import (
    HISTORIC_ROW_TYPE,
    HISTORIC_SUMMARY_TYPE,
    METRIC_VALUE_TYPE,
    HistoricRow,
    HistoricSummary,
    MetricDescriptor,
    RealtimeMetricValue,
    UntypedValue,
)
from streamd.sources.xima.normalize import parse_entry, parse_time_ms
from streamd.sources.xima.report import report_events
from streamd.sources.xima.state import RealtimeState
from streamd.tolerant import json_path

from .test_xima_historic import END, SEED_REPORT, START
from .test_xima_normalize import (
    SEED_AVERAGE,
    SEED_BOOLEAN,
    SEED_COUNT,
    SEED_DURATION,
    SEED_EMPTY,
    SEED_STRING,
    SEED_VALUES_BODY,
    SEED_WS_MESSAGE,
)

READ_MS = 1_700_000_000_000
SEED_ENTRIES: list[dict[str, Any]] = [
    SEED_COUNT,
    SEED_BOOLEAN,
    SEED_STRING,
    SEED_DURATION,
    SEED_EMPTY,
    SEED_AVERAGE,
    SEED_WS_MESSAGE,
    *SEED_VALUES_BODY["results"],
]
DOCUMENTED = {
    "key",
    "value",
    "metricId",
    "categoryValue",
    "type",
    "lastUpdateTime",
    "count",
    "finishedDuration",
    "durationSum",
    "numCountingUp",
    "numCountingDown",
    "values",
    "formattedValue",
    *SEED_REPORT,
}
ATTRIBUTES = {
    "count": "count",
    "finishedDuration": "finished_duration",
    "durationSum": "duration_sum",
    "numCountingUp": "num_counting_up",
    "numCountingDown": "num_counting_down",
    "value": "value",
}
"""The type-specific fields of the documented values and their attribute names."""
FIGURES = tuple(ATTRIBUTES)

names = st.text(alphabet="abcxyz_-9", min_size=1, max_size=6).filter(lambda n: n not in DOCUMENTED)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4,
)
not_a_time = st.sampled_from(["yesterday", "", "10/01/2019 10:17", "2019-13-45T99:00:00"])


@functools.cache
def schemas() -> dict[str, Any]:
    document = events_schema()
    return {
        t: event_schema(document, t) for t in (METRIC_VALUE_TYPE, HISTORIC_ROW_TYPE, HISTORIC_SUMMARY_TYPE)
    }


def assert_published_as_documented(event: Any) -> None:
    """The record carries the deviations header and its value matches ``streamd schema --events``."""
    record = encode(event, "p.")
    headers = header_dict(record.headers)
    if event.deviations:
        assert json.loads(headers["streamd_deviations"]) == list(event.deviations)
    else:
        assert "streamd_deviations" not in headers
    jsonschema.Draft202012Validator(schemas()[event.type]).validate(orjson.loads(record.value))


# -- realtime values ------------------------------------------------------------------------------


@st.composite
def deviating_entries(
    draw: st.DrawFn,
) -> tuple[dict[str, Any], dict[str, Any], set[str], set[str], list[Any]]:
    """``(seed, deviated copy, paths that must be listed, paths that may be, unknown fields)``.

    Unknown fields are ``(where, name, value)`` with ``where`` one of ``entry``, ``key``, ``value``.
    """
    seed = draw(st.sampled_from(SEED_ENTRIES))
    entry = copy.deepcopy(seed)
    value: dict[str, Any] = entry["value"]
    must: set[str] = set()
    may: set[str] = set()
    unknown: list[tuple[str, str, Any]] = []
    for where in draw(st.lists(st.sampled_from(["entry", "key", "value"]), max_size=3)):
        name, item = draw(names), draw(json_values)
        container = entry if where == "entry" else entry[where]
        if name in container:
            continue
        container[name] = item
        path = json_path((name,) if where == "entry" else (where, name))
        unknown.append((where, name, item))
        (may if where == "value" else must).add(path)
    value_paths: set[str] = set()
    targets = [f for f in (*FIGURES, "lastUpdateTime") if f in value]
    for field in draw(st.lists(st.sampled_from(targets), max_size=3, unique=True)) if targets else []:
        path = json_path(("value", field))
        original = value[field]
        kind = draw(st.sampled_from(["missing", "null", "object", "as_string", "bad_time"]))
        if kind == "missing":
            del value[field]
        elif kind == "null":
            value[field] = None
        elif kind == "object":
            value[field] = {"v": original}
        elif kind == "bad_time" and field == "lastUpdateTime":
            value[field] = draw(not_a_time)
        elif kind == "as_string" and not isinstance(original, str):
            value[field] = str(original).lower()
        else:
            continue
        value_paths.add(path)
        may.add(path)
    time_paths = {p for p in value_paths if p == "$.value.lastUpdateTime"}
    if draw(
        st.booleans()
    ):  # the type goes outside the documented list: only that (and the time) must be listed
        value["type"] = draw(st.sampled_from(["PERCENT", "count", None, 7]))
        must |= {"$.value.type", *time_paths}
        may.add("$.value.type")
    else:
        must |= value_paths | {p for p in may if p.startswith("$.value.")}
    if draw(st.integers(0, 9)) == 0:  # the value itself is not an object
        entry["value"] = draw(st.sampled_from([None, "n/a", [1], orjson.dumps(value).decode()]))
        must = {p for p in must if not p.startswith("$.value")} | {"$.value"}
        may.add("$.value")
        unknown = [u for u in unknown if u[0] != "value"]
    return seed, entry, must, may | must, unknown


def group_state() -> RealtimeState:
    """Every seed metric is a GROUP metric here, so every categorised typed value has a QueueMetric."""
    state = RealtimeState("cr1")
    state.descriptors = {
        e["key"]["metricId"]: MetricDescriptor(metric_id=e["key"]["metricId"], category_type="GROUP")
        for e in SEED_ENTRIES
    }
    return state


@settings(max_examples=100, deadline=None)
@given(deviating_entries())
def test_a_deviating_value_is_published_with_its_routing_and_deviations(
    case: tuple[dict[str, Any], dict[str, Any], set[str], set[str], list[Any]],
) -> None:
    seed, raw, must, may, unknown = case
    read = parse_entry(raw, now_ms=READ_MS)
    events = group_state().apply([read], now_ms=READ_MS + 1000)
    vendor = events[0]
    assert (vendor.topic, vendor.type) == ("xima.realtime", METRIC_VALUE_TYPE)
    category = seed["key"].get("categoryValue")
    assert vendor.key == f"cr1:{seed['key']['metricId']}:{category or ''}"
    assert must <= set(vendor.deviations) <= may
    data = vendor.data
    assert isinstance(data, RealtimeMetricValue)
    value = data.value
    for where, name, item in unknown:
        if where == "entry":
            assert data.extra[name] == item
        elif where == "key":
            assert data.key_extra[name] == item
        elif isinstance(value, UntypedValue):
            assert value.raw[name] == item
        else:
            assert value.extra[name] == item
    if isinstance(value, UntypedValue):
        assert value.raw == raw.get("value")
    else:  # what could be typed was typed: coerced figures equal the seed's
        assert value.type == seed["value"].get("type", "EMPTY")
        for name in FIGURES:
            if name in seed["value"] and name in raw["value"]:
                assert getattr(value, ATTRIBUTES[name]) == seed["value"][name]
    if "$.value.lastUpdateTime" in vendor.deviations or "$.value" in vendor.deviations:
        assert vendor.time == datetime.fromtimestamp(READ_MS / 1000, UTC)  # the read time
    else:
        assert value.last_update_ms == parse_time_ms(seed["value"]["lastUpdateTime"])
    # the canonical event flows whenever its own fields are usable, whatever else deviated
    canonical = category is not None and not isinstance(value, UntypedValue)
    assert [type(e.data) for e in events[1:]] == ([QueueMetric] if canonical else [])
    assert_published_as_documented(vendor)


def test_a_conforming_value_has_no_deviations() -> None:
    for seed in SEED_ENTRIES:
        assert parse_entry(seed, now_ms=READ_MS).deviations == ()


# -- historic report rows -------------------------------------------------------------------------

SEED_ROW: dict[str, Any] = cast(list[dict[str, Any]], SEED_REPORT["rows"])[0]
FOUR_ROWS = {
    **SEED_REPORT,
    "rows": [
        {"values": {**copy.deepcopy(SEED_ROW["values"]), "0": {"value": f"Agent{i}(20{i})"}}}
        for i in range(4)
    ],
}
ROW_KINDS = ["unknown_row_field", "no_values", "values_not_object", "cell_not_object", "cell_as_string",
             "unknown_cell_field", "cell_without_value", "empty_row"]  # fmt: skip


@st.composite
def deviating_reports(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, set[str]], set[int], list[Any]]:
    """``(report, paths that must be listed per row index or "summary", emptied rows, unknown fields)``."""
    report: dict[str, Any] = copy.deepcopy(draw(st.sampled_from([SEED_REPORT, FOUR_ROWS])))
    must: dict[Any, set[str]] = {"summary": set()}
    emptied: set[int] = set()
    unknown: list[tuple[Any, str, Any]] = []
    for _ in range(draw(st.integers(0, 2))):
        name, item = draw(names), draw(json_values)
        if name not in report:
            report[name] = item
            must["summary"].add(json_path((name,)))
            unknown.append(("summary", name, item))
    rows = report["rows"]
    for index in draw(st.lists(st.integers(0, len(rows) - 1), unique=True, min_size=1, max_size=len(rows))):
        row = rows[index]
        cells = row["values"]
        column = draw(st.sampled_from(sorted(k for k in cells if k != "0")))  # NUMBER / DURATION
        where: tuple[str | int, ...] = ("rows", index, "values", column)
        kind, name = draw(st.sampled_from(ROW_KINDS)), draw(names)
        paths = must.setdefault(index, set())
        if kind == "unknown_row_field":
            row[name] = 1
            paths.add(json_path(("rows", index, name)))
            unknown.append((index, name, 1))
        elif kind in ("no_values", "values_not_object"):
            row["agent" if kind == "no_values" else "values"] = (
                row.pop("values")["0"]["value"] if kind == "no_values" else "n/a"
            )
            paths.add(json_path(("rows", index, "values")))
            paths |= {json_path(("rows", index, "agent"))} if kind == "no_values" else set()
        elif kind == "cell_not_object":
            cells[column] = cells[column]["value"]
            paths.add(json_path(where))
        elif kind == "cell_as_string":
            cells[column]["value"] = str(cells[column]["value"])
            paths.add(json_path((*where, "value")))
        elif kind == "unknown_cell_field":
            cells[column][name] = 2
            paths.add(json_path((*where, name)))
        elif kind == "cell_without_value":
            del cells[column]["value"]
            paths.add(json_path((*where, "value")))
        else:  # nothing identifies this row any more: it cannot be published
            rows[index] = draw(
                st.sampled_from([{}, {"values": None}, {"values": None, "x": None}, None, "row"])
            )
            emptied.add(index)
            must["summary"].add(json_path(("rows", index)))
            del must[index]
    return report, must, emptied, unknown


@settings(max_examples=100, deadline=None)
@given(deviating_reports())
def test_every_identifiable_row_is_published_with_its_deviations(
    case: tuple[dict[str, Any], dict[Any, set[str]], set[int], list[Any]],
) -> None:
    report, must, emptied, unknown = case
    events = report_events("cr1", "LT39K5C5", START, END, report)
    clean = report_events(
        "cr1", "LT39K5C5", START, END, SEED_REPORT if len(report["rows"]) == 1 else FOUR_ROWS
    )
    rows = [e for e in events if e.type == HISTORIC_ROW_TYPE]
    [summary] = [e for e in events if e.type == HISTORIC_SUMMARY_TYPE]
    dead = [e for e in events if e.topic == "deadletter"]
    published = [i for i in range(len(report["rows"])) if i not in emptied]
    assert [r.data.row_index for r in rows] == published
    assert [r.id for r in rows] == [
        e.id for e in clean if e.type == HISTORIC_ROW_TYPE and e.data.row_index in published
    ]
    assert all(r.key == "cr1:LT39K5C5" and r.topic == "xima.historic" for r in rows)
    assert len(dead) == len(emptied)
    assert all(d.data.error_type == "missing_key" for d in dead)
    for row in rows:
        assert set(row.deviations) == must.get(row.data.row_index, set())
    assert set(summary.deviations) == must["summary"]
    assert isinstance(summary.data, HistoricSummary)
    assert summary.data.row_count == len(published)
    by_index = {r.data.row_index: r.data for r in rows}
    for where, name, item in unknown:
        data = summary.data if where == "summary" else by_index[where]
        assert isinstance(data, HistoricSummary | HistoricRow)
        assert data.extra[name] == item
    for row in rows:  # cells are kept as received; a NUMBER or DURATION sent as text is typed
        assert isinstance(row.data, HistoricRow)
        source_row = report["rows"][row.data.row_index]
        assert row.data.cells == source_row.get("values", {}) or not isinstance(
            source_row.get("values"), dict
        )
        for column, cell in row.data.cells.items():
            if isinstance(cell, dict) and isinstance(cell.get("value"), str) and column != "0":
                title = next(c["title"] for c in report["columns"] if c["key"] == column)
                assert row.data.values[title] == int(cell["value"])
        assert_published_as_documented(row)
    assert_published_as_documented(summary)


def test_report_level_deviations_are_kept_and_rows_carry_those_of_their_fields() -> None:
    report = {
        **SEED_REPORT,
        "reportId": "48",
        "columns": [
            {"key": 0, "title": "Agent", "format": "STRING"},
            *cast(list[Any], SEED_REPORT["columns"])[1:],
            "x",
        ],
        "summaryItems": [{"title": "Agents", "value": 1}, 7],
        "timeframe": "2019-09-09",
        "dataFlag": None,
    }
    del report["title"]
    row, summary = report_events("cr1", "LT39K5C5", START, END, report)
    carried = ("$.reportId", "$.columns[0].key", "$.columns[7]", "$.title")
    assert set(row.deviations) == set(carried)
    assert row.data.report_id == 48
    assert row.data.values["Agent"] == "Agent1(200)"  # the numeric column key still names its column
    assert set(summary.deviations) == {
        *carried,
        "$.summaryItems[1]",
        "$.timeframe",
        "$.dataFlag",
    }
    assert summary.data.extra == {
        "columns": report["columns"],
        "summaryItems": [{"title": "Agents", "value": 1}, 7],
        "timeframe": "2019-09-09",
    }
    assert summary.data.summary_items == ({"title": "Agents", "value": 1},)
    assert [c.key for c in summary.data.columns] == ["0", "1", "2", "3", "4", "5", "6"]
    assert_published_as_documented(row)
    assert_published_as_documented(summary)


def test_a_socket_update_without_a_usable_time_is_never_taken_for_a_stale_one() -> None:
    state = group_state()
    key = {"metricId": "K0FLAEB6"}
    newer = {"key": key, "value": {"type": "COUNT", "lastUpdateTime": "2030-01-01T00:00:00.000Z", "count": 1}}
    unreadable = {"key": key, "value": {"type": "COUNT", "lastUpdateTime": "soon", "count": 2}}
    older: dict[str, Any] = {
        "key": key,
        "value": {"type": "COUNT", "lastUpdateTime": "2020-01-01T00:00:00.000Z", "count": 3},
    }
    state.apply([parse_entry(newer, now_ms=READ_MS)], now_ms=READ_MS)
    # its read time (2023) is older than the held vendor time (2030), but it is no version at all
    [taken] = state.apply([parse_entry(unreadable, now_ms=READ_MS)], now_ms=READ_MS, monotonic=True)
    assert taken.data.value.count == 2
    # and a vendor time (2020) is not compared with a read time (2023) either
    [taken] = state.apply([parse_entry(older, now_ms=READ_MS)], now_ms=READ_MS, monotonic=True)
    assert taken.data.value.count == 3
    stale = {"key": key, "value": {**older["value"], "lastUpdateTime": "2019-01-01T00:00:00.000Z"}}
    assert state.apply([parse_entry(stale, now_ms=READ_MS)], now_ms=READ_MS, monotonic=True) == []

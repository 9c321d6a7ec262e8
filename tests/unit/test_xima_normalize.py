"""Pure Xima normalizers, fed the seed's own example payloads (seed 000 L757-918)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from streamd.errors import NormalizationError
from streamd.events import AgentState, DeadLetter, QueueMetric, State
from streamd.sources.xima.bodies import parse_metric_list, parse_values_body
from streamd.sources.xima.canonical import CanonicalRules
from streamd.sources.xima.metric_events import (
    agent_index,
    dead_letters,
    fold_display,
    metric_events,
    parse_agent,
)
from streamd.sources.xima.models import (
    EVENT_MODELS,
    AverageDurationValue,
    BooleanValue,
    CountValue,
    DurationValue,
    EmptyValue,
    MetricDescriptor,
    MetricEntry,
    MetricKey,
    MetricValue,
    RealtimeMetricValue,
    StringValue,
    UntypedValue,
)
from streamd.sources.xima.normalize import (
    parse_entry,
    parse_time_ms,
    read_value,
)
from streamd.sources.xima.state import RealtimeState

# --- the seed's examples, verbatim (000 L765-803, L807-912) -------------------------------------
SEED_VALUES_BODY: dict[str, Any] = {
    "results": [
        {
            "key": {"metricId": "K13CJXHV", "categoryValue": "John Doe(481)"},
            "value": {"lastUpdateTime": "2019-10-01T10:13:12.244-06:00", "value": False, "type": "BOOLEAN"},
        },
        {
            "key": {"metricId": "KOFLAEB6"},
            "value": {"lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "count": 206, "type": "COUNT"},
        },
    ],
    "initializing": [
        {"metricId": "K08ZIKVN", "categoryValue": "Abraham Lincoln(871)"},
        {"metricId": "K08ZIKVN", "categoryValue": "Elvis Presley(121)"},
        {"metricId": "K1RNV20Q"},
    ],
}
SEED_COUNT: dict[str, Any] = {
    "key": {"metricId": "K0FLAEB6"},
    "value": {"lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "count": 206, "type": "COUNT"},
}
SEED_BOOLEAN: dict[str, Any] = {
    "key": {"metricId": "K08ZIKVN", "categoryValue": "John Doe(831)"},
    "value": {"lastUpdateTime": "2019-10-01T10:13:12.244-06:00", "value": False, "type": "BOOLEAN"},
}
SEED_STRING: dict[str, Any] = {
    "key": {"metricId": "K0FLAEB6"},
    "value": {"type": "STRING", "lastUpdateTime": "2019-10-01T10:13:12.244-06:00", "value": "string value"},
}
SEED_DURATION: dict[str, Any] = {
    "key": {"metricId": "K08ZIKVN", "categoryValue": "John Doe(831)"},
    "value": {
        "type": "DURATION",
        "lastUpdateTime": "2018-09-24T13:17:35.661-06:00",
        "finishedDuration": 20521,
        "numCountingUp": 2,
        "numCountingDown": 1,
    },
}
SEED_EMPTY: dict[str, Any] = {
    "key": {"metricId": "K08ZIKVN", "categoryValue": "John Doe(831)"},
    "value": {"lastUpdateTime": "2019-10-01T10:13:12.244-06:00"},
}
SEED_AVERAGE: dict[str, Any] = {
    "key": {"metricId": "K08ZIKVN", "categoryValue": "John Doe(831)"},
    "value": {
        "type": "AVERAGE_DURATION",
        "lastUpdateTime": "2018-09-24T13:17:35.661-06:00",
        "durationSum": 20521,
        "count": 5,
        "numCountingUp": 2,
        "numCountingDown": 1,
    },
}
SEED_WS_MESSAGE: dict[str, Any] = {
    "key": {"metricId": "K0FLAEB6", "categoryValue": "John Doe(481)"},
    "value": {"lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "count": 15, "type": "COUNT"},
}
T_DURATION = parse_time_ms("2018-09-24T13:17:35.661-06:00")
READ_MS = 1_700_000_000_000
"""The read time the tests pass as ``now_ms`` (after every seed timestamp)."""


def parse_value(raw: object) -> MetricValue:
    """The typed value of a documented ``value`` object (it must not deviate)."""
    value, deviations = read_value(raw, now_ms=READ_MS)
    assert deviations == ()
    return value


def entry(raw: object) -> MetricEntry:
    """A documented ``{key, value}`` entry, read (it must not deviate)."""
    read = parse_entry(raw, now_ms=READ_MS)
    assert read.deviations == ()
    return read


def kv(raw: object) -> tuple[MetricKey, MetricValue]:
    read = entry(raw)
    return read.key, read.value


def pair(key: MetricKey, value: MetricValue) -> MetricEntry:
    return MetricEntry(key=key, value=value)


def test_last_update_time_keeps_offset_and_milliseconds() -> None:
    assert parse_time_ms("2019-10-01T10:17:56.496-06:00") == 1569946676496
    assert parse_time_ms("2019-10-01T16:17:56.496Z") == 1569946676496


def test_count_parses() -> None:
    read = entry(SEED_COUNT)
    key, value = read.key, read.value
    assert key == MetricKey(metric_id="K0FLAEB6")
    assert value == CountValue(
        last_update_time="2019-10-01T10:17:56.496-06:00", last_update_ms=1569946676496, count=206
    )


def test_zero_count_is_not_missing() -> None:
    value = parse_value({"lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "count": 0, "type": "COUNT"})
    assert isinstance(value, CountValue)
    assert value.count == 0


def test_false_boolean_is_not_missing() -> None:
    key, value = kv(SEED_BOOLEAN)
    assert key.category_value == "John Doe(831)"
    assert isinstance(value, BooleanValue)
    assert value.value is False


def test_string_value_and_empty_string_is_not_missing() -> None:
    assert entry(SEED_STRING).value == StringValue(
        last_update_time="2019-10-01T10:13:12.244-06:00",
        last_update_ms=parse_time_ms("2019-10-01T10:13:12.244-06:00"),
        value="string value",
    )
    empty = parse_value({"type": "STRING", "lastUpdateTime": "2019-10-01T10:13:12.244-06:00", "value": ""})
    assert isinstance(empty, StringValue)
    assert empty.value == ""


def test_duration_live_value_follows_the_seed_formula() -> None:
    _, value = kv(SEED_DURATION)
    assert isinstance(value, DurationValue)
    # finishedDuration + (numCountingUp - numCountingDown) * (atTime - lastUpdateTime)
    assert value.duration_ms(T_DURATION) == 20521
    assert value.duration_ms(T_DURATION + 10_000) == 20521 + (2 - 1) * 10_000


def test_average_duration_live_value_follows_the_seed_formula() -> None:
    _, value = kv(SEED_AVERAGE)
    assert isinstance(value, AverageDurationValue)
    assert value.average_ms(T_DURATION) == 20521 / 5
    assert value.average_ms(T_DURATION + 1000) == (20521 + 1 * 1000) / 5


def test_average_duration_with_zero_count_is_none_not_division_error() -> None:
    value = parse_value({**SEED_AVERAGE["value"], "count": 0})
    assert isinstance(value, AverageDurationValue)
    assert value.average_ms(T_DURATION + 5) is None


def test_value_without_type_is_empty() -> None:
    _, value = kv(SEED_EMPTY)
    assert isinstance(value, EmptyValue)
    assert value.type == "EMPTY"
    assert value.last_update_time == "2019-10-01T10:13:12.244-06:00"


def test_explicit_empty_type_is_accepted() -> None:
    assert isinstance(
        parse_value({"type": "EMPTY", "lastUpdateTime": "2019-10-01T10:13:12.244-06:00"}), EmptyValue
    )


def test_websocket_message_has_the_same_shape() -> None:
    key, value = kv(SEED_WS_MESSAGE)
    assert key == MetricKey(metric_id="K0FLAEB6", category_value="John Doe(481)")
    assert isinstance(value, CountValue)
    assert value.count == 15


def test_unknown_type_is_kept_as_received_not_dead_lettered() -> None:
    raw = {"type": "PERCENT", "lastUpdateTime": "2019-10-01T10:13:12.244-06:00", "value": 3}
    value, deviations = read_value(raw, now_ms=READ_MS)
    assert deviations == ("$.value.type",)
    assert value == UntypedValue(
        vendor_type="PERCENT",
        last_update_time="2019-10-01T10:13:12.244-06:00",
        last_update_ms=parse_time_ms("2019-10-01T10:13:12.244-06:00"),
        raw=raw,
    )


T = "2019-10-01T10:13:12.244-06:00"


@pytest.mark.parametrize(
    ("raw", "paths", "typed"),
    [
        ({"type": "COUNT", "lastUpdateTime": T, "count": "206"}, ["$.value.count"], {"count": 206}),
        ({"type": "COUNT", "lastUpdateTime": T, "count": 206.0}, ["$.value.count"], {"count": 206}),
        ({"type": "BOOLEAN", "lastUpdateTime": T, "value": "false"}, ["$.value.value"], {"value": False}),
        ({"type": "BOOLEAN", "lastUpdateTime": T, "value": 1}, ["$.value.value"], {"value": True}),
        ({"type": "STRING", "lastUpdateTime": T, "value": 42}, ["$.value.value"], {"value": "42"}),
        (
            {"type": "DURATION", "lastUpdateTime": T, "finishedDuration": "1", "numCountingUp": 0,
             "numCountingDown": " 2 "},
            ["$.value.finishedDuration", "$.value.numCountingDown"],
            {"finished_duration": 1, "num_counting_down": 2},
        ),
    ],
)  # fmt: skip
def test_unambiguous_figures_are_coerced_and_listed(
    raw: dict[str, object], paths: list[str], typed: dict[str, object]
) -> None:
    value, deviations = read_value(raw, now_ms=READ_MS)
    assert list(deviations) == paths
    assert not isinstance(value, UntypedValue)
    assert {name: getattr(value, name) for name in typed} == typed


@pytest.mark.parametrize(
    ("raw", "paths"),
    [
        (None, ["$.value"]),
        ([], ["$.value"]),
        ("COUNT 206", ["$.value"]),
        ({"type": "COUNT", "lastUpdateTime": T, "count": True}, ["$.value.count"]),
        ({"type": "COUNT", "lastUpdateTime": T, "count": "many"}, ["$.value.count"]),
        ({"type": "COUNT", "lastUpdateTime": T, "count": None}, ["$.value.count"]),
        ({"type": "BOOLEAN", "lastUpdateTime": T, "value": "maybe"}, ["$.value.value"]),
        ({"type": "STRING", "lastUpdateTime": T, "value": {"text": "x"}}, ["$.value.value"]),
        (
            {"type": "DURATION", "lastUpdateTime": T, "finishedDuration": 1},
            ["$.value.numCountingUp", "$.value.numCountingDown"],
        ),
        ({"type": None, "lastUpdateTime": T, "count": 1}, ["$.value.type"]),
        ({"type": 7, "lastUpdateTime": T}, ["$.value.type"]),
    ],
)
def test_unusable_values_are_kept_as_received(raw: object, paths: list[str]) -> None:
    value, deviations = read_value(raw, now_ms=READ_MS)
    assert list(deviations) == paths
    assert isinstance(value, UntypedValue)
    assert value.raw == raw
    assert value.vendor_type == (raw.get("type", "EMPTY") if isinstance(raw, dict) else None)


def test_unreadable_last_update_time_keeps_its_text_and_uses_the_read_time() -> None:
    value, deviations = read_value(
        {"type": "COUNT", "lastUpdateTime": "yesterday", "count": 1}, now_ms=READ_MS
    )
    assert deviations == ("$.value.lastUpdateTime",)
    assert isinstance(value, CountValue)
    assert (value.last_update_time, value.last_update_ms, value.count) == ("yesterday", READ_MS, 1)
    [event] = metric_events("cr1", pair(MetricKey(metric_id="K"), value), now_ms=READ_MS + 5)
    assert event.time == datetime.fromtimestamp(READ_MS / 1000, UTC)
    missing, deviations = read_value({"type": "COUNT", "count": 1}, now_ms=READ_MS)
    assert deviations == ("$.value.lastUpdateTime",)
    assert (missing.last_update_time, missing.last_update_ms) == (None, READ_MS)
    number, _ = read_value({"type": "COUNT", "count": 1, "lastUpdateTime": 1569946676496}, now_ms=READ_MS)
    assert isinstance(number, CountValue)
    assert (number.last_update_time, number.extra) == (None, {"lastUpdateTime": 1569946676496})


def test_unknown_vendor_fields_are_kept_and_listed() -> None:
    value, deviations = read_value({**SEED_COUNT["value"], "unit": "calls"}, now_ms=READ_MS)
    assert value.extra == {"unit": "calls"}  # type: ignore[union-attr]
    assert deviations == ("$.value.unit",)
    assert value == parse_value(SEED_COUNT["value"])  # extras do not make a change


def test_an_entry_is_routed_by_its_key_alone() -> None:
    read = parse_entry(
        {"key": {"metricId": "K1", "categoryValue": 7, "site": "x"}, "value": None, "seq": 3}, now_ms=READ_MS
    )
    assert read.key == MetricKey(metric_id="K1", category_value="7")
    assert read.deviations == ("$.key.categoryValue", "$.key.site", "$.value", "$.seq")
    assert (read.extra, read.key_extra) == ({"seq": 3}, {"site": "x"})
    [event] = metric_events("cr1", read, now_ms=READ_MS)
    assert (event.key, event.deviations) == ("cr1:K1:7", read.deviations)
    assert (event.data.extra, event.data.key_extra) == ({"seq": 3}, {"site": "x"})
    absent = parse_entry({"key": {"metricId": "K1", "categoryValue": None}}, now_ms=READ_MS)
    assert absent.key == MetricKey(metric_id="K1")
    assert absent.deviations == ("$.key.categoryValue", "$.value")


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        ([], "invalid_payload"),
        ("{}", "invalid_payload"),
        ({"value": SEED_COUNT["value"]}, "missing_key"),
        ({"key": "K1", "value": SEED_COUNT["value"]}, "missing_key"),
        ({"key": {"metricId": ""}, "value": SEED_COUNT["value"]}, "missing_key"),
        ({"key": {"metricId": 101}, "value": SEED_COUNT["value"]}, "missing_key"),
        ({"key": {"metricId": "K1", "categoryValue": {"n": 1}}}, "missing_key"),
        ({"key": {"metricId": "K1", "categoryValue": True}}, "missing_key"),
    ],
)
def test_an_entry_without_a_usable_key_is_unroutable(raw: object, error_type: str) -> None:
    with pytest.raises(NormalizationError) as err:
        parse_entry(raw, now_ms=READ_MS)
    assert err.value.error_type == error_type


def test_values_body_splits_results_and_initializing() -> None:
    body = parse_values_body(SEED_VALUES_BODY, now_ms=READ_MS)
    assert [e.key for e in body.results] == [
        MetricKey(metric_id="K13CJXHV", category_value="John Doe(481)"),
        MetricKey(metric_id="KOFLAEB6"),
    ]
    assert all(e.deviations == () for e in body.results)
    assert body.initializing == {
        MetricKey(metric_id="K08ZIKVN", category_value="Abraham Lincoln(871)"),
        MetricKey(metric_id="K08ZIKVN", category_value="Elvis Presley(121)"),
        MetricKey(metric_id="K1RNV20Q"),
    }
    assert body.problems == []


def test_only_unroutable_entries_become_problems_not_exceptions() -> None:
    body = parse_values_body(
        {"results": [SEED_COUNT, {"key": {}}, {"key": {"metricId": "X"}, "value": 5}]}, now_ms=READ_MS
    )
    assert [e.key.metric_id for e in body.results] == ["K0FLAEB6", "X"]
    assert body.results[1].deviations == ("$.value",)
    assert len(body.problems) == 1
    events = dead_letters("cr1", body.problems)
    assert all(isinstance(e.data, DeadLetter) and e.topic == "deadletter" for e in events)
    assert orjson.loads(events[0].data.raw) == {"key": {}}
    assert events[0].data.error_type == "missing_key"
    odd = parse_values_body({"results": {"key": {"metricId": "X"}}}, now_ms=READ_MS)
    assert (odd.results, [str(e) for e, _ in odd.problems]) == ([], ["results is not an array"])


def test_metric_list_parses_the_seed_example() -> None:
    metrics = parse_metric_list(
        [
            {
                "metricId": "101",
                "metricName": "metricA",
                "categoryType": "AGENT",
                "categorySelection": ["Alice"],
            },
            {"metricId": "102", "metricName": "metricB", "categoryType": "AGENT", "categorySelection": []},
        ]
    )
    assert metrics[0] == MetricDescriptor(
        metric_id="101", metric_name="metricA", category_type="AGENT", category_selection=("Alice",)
    )
    with pytest.raises(NormalizationError):
        parse_metric_list({"metricId": "101"})


def test_agent_mapping_joins_despite_the_space_before_the_parenthesis() -> None:
    index = agent_index({"nthatcher": "Nate Thatcher (123)"})
    assert fold_display("Nate Thatcher(123)") == fold_display("Nate  Thatcher (123)")
    agent = parse_agent("Nate Thatcher(123)", index)
    assert (agent.name, agent.extension, agent.alias) == ("Nate Thatcher", "123", "nthatcher")
    assert parse_agent("Queue Bot", index).extension is None


def _state(**rules: object) -> RealtimeState:
    state = RealtimeState("cr1", rules=CanonicalRules(**rules))  # type: ignore[arg-type]
    state.descriptors = {
        "K08ZIKVN": MetricDescriptor(metric_id="K08ZIKVN", metric_name="Talk", category_type="AGENT"),
        "KSTATE": MetricDescriptor(metric_id="KSTATE", metric_name="State", category_type="AGENT"),
        "KQUEUE": MetricDescriptor(metric_id="KQUEUE", metric_name="In queue", category_type="GROUP"),
    }
    return state


def test_metric_event_shape_key_and_deterministic_id() -> None:
    key, value = kv(SEED_DURATION)
    state = _state()
    [event] = state.apply([pair(key, value)], now_ms=T_DURATION + 1000)
    assert event.topic == "xima.realtime"
    assert event.type == "xima.realtime.MetricValue"
    assert event.key == "cr1:K08ZIKVN:John Doe(831)"
    assert event.time == datetime.fromisoformat("2018-09-24T13:17:35.661-06:00")
    data = event.data
    assert isinstance(data, RealtimeMetricValue)
    assert data.computed_ms == 20521 + 1000
    assert data.value.last_update_time == "2018-09-24T13:17:35.661-06:00"
    assert data.metric_name == "Talk"
    again = metric_events("cr1", pair(key, value), now_ms=T_DURATION + 99_000)
    assert again[0].id == event.id  # the id ignores the evaluation time
    wire = orjson.loads(orjson.dumps(data))
    assert wire["value"]["finished_duration"] == 20521
    assert wire["agent"]["extension"] == "831"


def test_uncategorised_metric_key_has_an_empty_category() -> None:
    [event] = _state().apply([entry(SEED_COUNT)], now_ms=0)
    assert event.key == "cr1:K0FLAEB6:"


def test_only_changes_are_published_and_duration_growth_is_not_a_change() -> None:
    state = _state()
    key, value = kv(SEED_DURATION)
    assert len(state.apply([pair(key, value)], now_ms=T_DURATION)) == 1
    assert state.apply([pair(key, value)], now_ms=T_DURATION + 60_000) == []  # same components
    newer = parse_value({**SEED_DURATION["value"], "lastUpdateTime": "2018-09-24T13:18:00.000-06:00"})
    assert len(state.apply([pair(key, newer)], now_ms=T_DURATION + 60_000)) == 1


def test_snapshot_and_refresh_republish_everything_marked_snapshot() -> None:
    state = _state()
    entries = [entry(SEED_COUNT), entry(SEED_DURATION)]
    state.apply(entries, now_ms=0)
    again = state.apply(entries, now_ms=0, snapshot=True)
    assert len(again) == 2
    assert all(e.snapshot for e in again)
    refreshed = state.refresh(now_ms=0)
    assert len(refreshed) == 2
    assert all(e.snapshot for e in refreshed)


def test_initializing_key_is_never_published_even_with_a_result() -> None:
    state = _state()
    key, value = kv(SEED_BOOLEAN)
    state.apply([pair(key, value)], now_ms=0)
    assert state.apply([pair(key, value)], [key], now_ms=0, snapshot=True) == []
    assert key in state.initializing
    assert state.refresh(now_ms=0) == []
    assert len(state.apply([pair(key, value)], now_ms=0)) == 1  # published again once ready
    assert key not in state.initializing


def test_group_metric_maps_to_queue_metric() -> None:
    key = MetricKey(metric_id="KQUEUE", category_value="Sales")
    value = parse_value({"type": "COUNT", "lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "count": 0})
    events = _state().apply([pair(key, value)], now_ms=0)
    metric = events[1].data
    assert isinstance(metric, QueueMetric)
    # "In queue" is a default display name of the canonical ``waiting``
    assert (metric.queue_id, metric.metric, metric.value, metric.unit) == ("Sales", "waiting", 0, "contacts")
    assert events[1].key == "cr1:Sales:waiting"


def test_agent_state_metric_maps_to_agent_state_only_when_configured() -> None:
    key = MetricKey(metric_id="KSTATE", category_value="John Doe(481)")
    value = parse_value(
        {"type": "STRING", "lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "value": "Wrap Up"}
    )
    assert len(_state().apply([pair(key, value)], now_ms=0)) == 1
    state = _state(agent_state_metrics=frozenset({"KSTATE"}))
    state.agents = agent_index({"jdoe": "John Doe (481)"})
    events = state.apply([pair(key, value)], now_ms=0)
    agent = events[1].data
    assert isinstance(agent, AgentState)
    assert (agent.agent_id, agent.agent_name, agent.state, agent.vendor_state) == (
        "481",
        "John Doe",
        State.AFTER_CALL_WORK,
        "Wrap Up",
    )
    odd = parse_value({"type": "STRING", "lastUpdateTime": "2019-10-01T10:17:57.000-06:00", "value": "Zoned"})
    assert state.apply([pair(key, odd)], now_ms=0)[1].data.state is State.UNKNOWN


def test_canonical_mapping_can_be_switched_off() -> None:
    key = MetricKey(metric_id="KQUEUE", category_value="Sales")
    value = parse_value({"type": "COUNT", "lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "count": 2})
    assert len(_state(canonical=False).apply([pair(key, value)], now_ms=0)) == 1


def test_event_models_cover_every_emitted_type() -> None:
    assert {"xima.realtime.MetricValue", "xima.historic.Row", "xima.historic.Summary"} <= set(EVENT_MODELS)


def test_stale_socket_update_does_not_overwrite_a_newer_value() -> None:
    state = _state()
    key, value = kv(SEED_COUNT)
    state.apply([pair(key, value)], now_ms=0)
    older = parse_value({"lastUpdateTime": "2019-10-01T10:00:00.000-06:00", "count": 1, "type": "COUNT"})
    assert state.apply([pair(key, older)], now_ms=0, monotonic=True) == []
    assert state.entries[key].value == value
    assert len(state.apply([pair(key, older)], now_ms=0)) == 1  # REST rounds are taken as they come


def test_removed_metrics_are_forgotten_and_no_longer_refreshed() -> None:
    state = _state()
    state.apply([entry(SEED_COUNT), entry(SEED_DURATION)], [MetricKey(metric_id="K1RNV20Q")], now_ms=0)
    assert state.forget({"K08ZIKVN"}, now_ms=0) == []
    assert [e.key for e in state.refresh(now_ms=0)] == ["cr1:K08ZIKVN:John Doe(831)"]
    assert state.initializing == set()

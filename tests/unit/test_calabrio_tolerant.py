"""Tolerant reading of Calabrio activities, adherence and reference rows: a deviating input is
published with its deviation paths; only one that cannot be routed is a dead letter."""

from __future__ import annotations

import copy
import json
from base64 import b64decode
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from streamd.events import AGENT_STATE_TOPIC, DEADLETTER_TOPIC, AgentState, State
from streamd.publish.encoding import dumps, encode, header_dict
from streamd.schemas import event_schema, events_schema
from streamd.sources.calabrio import normalize
from streamd.sources.calabrio.models import ACTIVITY_TYPE, ADHERENCE_TYPE
from streamd.telemetry import REGISTRY
from streamd.tolerant import MAX_PATHS, json_path

Path = tuple[str | int, ...]

# The documented shapes: the activity row of spec §3 (002 L4614-4628, the inferred example), the
# adherence row as the seed prints it (details an object, 002 L628-656) and as the simulator
# serves it (details a list).
ACTIVITY_ROWS: list[dict[str, Any]] = [
    {
        "agentId": 101,
        "employeeId": "E101",
        "realTimeActivities": [
            {"agentState": "HOLD", "reasonCode": None, "timestamp": 1516821300000},
            {"agentState": "NOT_READY_BUSY", "reasonCode": "7", "timestamp": 1516823100000},
        ],
    },
    {
        "agentId": "101",
        "employeeId": None,
        "realTimeActivities": [
            {"agentState": "TALK", "timestamp": 1516821300000},
            {"agentState": "LOGGED_OUT", "reasonCode": 3, "timestamp": 1516823100000},
        ],
    },
]
_ACTUAL = {
    "actualAgentState": "TALK",
    "actualAgentStateStartTime": "2026-01-01T08:01:00Z",
    "actualReasonCode": None,
    "inAdherenceSeconds": 3000,
    "outOfAdherenceSeconds": 0,
}
_DETAIL = {
    "scheduledActivityType": "in_service",
    "scheduledActityStartTime": "2026-01-01T08:00:00Z",
    "inAdherenceSeconds": 3000,
    "outOfAdherenceSeconds": 600,
    "actuals": [_ACTUAL, {**_ACTUAL, "actualReasonCode": 4, "actualAgentState": "NOT_READY_BUSY"}],
}
_FIGURES = {
    "agentId": 101,
    "acdAgentId": "5001",
    "scheduledSeconds": 28800,
    "scheduledInServiceSeconds": 25200,
    "actualInServiceSeconds": 20101,
    "notInAdherenceSeconds": 600,
    "scheduleAdherence": 92.5,
    "scheduleConformity": 97.1,
}
ADHERENCE_ROWS: list[dict[str, Any]] = [{**_FIGURES, "details": _DETAIL}, {**_FIGURES, "details": [_DETAIL]}]

SCHEMAS = events_schema()


def body(rows: object) -> bytes:
    return orjson.dumps(rows)


def at(value: Any, path: Path) -> Any:
    for part in path:
        value = value[part]
    return value


def counted(ce_type: str) -> float:
    return REGISTRY.get_sample_value("streamd_deviations_total", {"source": "wfm", "type": ce_type}) or 0.0


# -- random deviations ---------------------------------------------------------------------------

KINDS = ("unknown_field", "number_as_text", "object_for_value", "text_for_object", "null_for_object", "enum")
OBJECT = {"unexpected": [1]}


def nodes(obj: Any, prefix: Path = ()) -> list[tuple[Path, Any]]:
    """Every (path, value) in ``obj``, the root first."""
    out: list[tuple[Path, Any]] = [(prefix, obj)]
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        out += nodes(value, (*prefix, key))
    return out


def fixed(path: Path, kind: str, adherence: bool) -> bool:
    """Paths a deviation of ``kind`` must not touch: the routing fields, the containers that
    carry them, and ``details`` where null or an object are documented variants, not deviations."""
    if adherence:
        return path == ("agentId",) or (path == ("details",) and kind != "text_for_object")
    if path in (("agentId",), ("realTimeActivities",)):
        return True
    if len(path) == 2 and path[0] == "realTimeActivities":
        return True  # an activity that is not an object cannot be routed
    if len(path) == 3 and path[0] == "realTimeActivities" and path[2] in ("agentState", "timestamp"):
        return kind != "enum"  # an agentState outside the documented list still routes
    return False


def applicable(kind: str, path: Path, value: Any) -> bool:
    container = isinstance(value, dict | list)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "unknown_field":
        return isinstance(value, dict)
    if kind == "number_as_text":  # ids and reason codes are numbers or text (models rule 2)
        return number and path[-1] not in ("reasonCode", "acdAgentId")
    if kind == "object_for_value":
        return not container
    if kind in ("text_for_object", "null_for_object"):
        return container and path != ()
    return path[-1:] == ("agentState",)  # enum


@st.composite
def deviating(
    draw: st.DrawFn, base: dict[str, Any], adherence: bool
) -> tuple[dict[str, Any], dict[Path, Any]]:
    """``base`` with 1-3 random deviations, and what each deviating path must hold afterwards
    (the value as received, or the coerced number)."""
    obj = copy.deepcopy(base)
    expected: dict[Path, Any] = {}
    for n in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(KINDS))
        targets = [
            (p, v)
            for p, v in nodes(obj)
            if not fixed(p, kind, adherence)
            and applicable(kind, p, v)
            and not any(p[: len(m)] == m for m in expected)  # what we sent, or inside it
        ]
        if not targets:
            continue
        path, value = draw(st.sampled_from(targets))
        if kind == "unknown_field":
            name = f"simExtra{n}"
            value[name] = {"kept": n}
            expected[(*path, name)] = {"kept": n}  # a copy: kept as received
            continue
        new = {
            "number_as_text": str(value),
            "object_for_value": OBJECT,
            "text_for_object": "n/a",
            "null_for_object": None,
            "enum": "ON_BREAK",
        }[kind]
        parent = at(obj, path[:-1])
        parent[path[-1]] = copy.deepcopy(new)
        expected = {p: v for p, v in expected.items() if p[: len(path)] != path}  # replaced
        expected[path] = value if kind == "number_as_text" else new  # coerced back, else as sent
    return obj, expected


@settings(max_examples=100, deadline=None)
@given(data=st.data(), base=st.sampled_from(ACTIVITY_ROWS))
def test_a_deviating_activity_row_is_published_with_its_deviations(
    data: st.DataObject, base: dict[str, Any]
) -> None:
    row, expected = data.draw(deviating(base, adherence=False))
    activities, dead = normalize.parse_activities("wfm", body([row]))
    assert dead == []
    originals = base["realTimeActivities"]
    assert [(a.agent_id, a.timestamp) for a in activities] == [("101", o["timestamp"]) for o in originals]
    for i, activity in enumerate(activities):
        mine = {p[2:]: v for p, v in expected.items() if p[:2] == ("realTimeActivities", i)}
        shared = {p: v for p, v in expected.items() if p[0] != "realTimeActivities"}
        wanted = {**shared, **mine}  # the activity's own fields over its row's (normalize rule 3)
        assert set(activity.deviations) == {json_path(p) for p in wanted}
        for path, value in wanted.items():
            assert at(activity.raw, path) == value, path
        vendor, canonical = normalize.activity_events("wfm", activity, None)
        assert (vendor.key, vendor.deviations, vendor.data["timestamp"]) == (
            "wfm:101",
            activity.deviations,
            originals[i]["timestamp"],
        )
        state = canonical.data
        assert isinstance(state, AgentState)
        assert state.state is normalize.canonical_state(activity.state)
        if ("agentState",) not in mine:
            assert activity.state == originals[i]["agentState"]
        Draft202012Validator(event_schema(SCHEMAS, ACTIVITY_TYPE)).validate(orjson.loads(dumps(vendor.data)))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), base=st.sampled_from(ADHERENCE_ROWS))
def test_a_deviating_adherence_row_is_published_with_its_deviations(
    data: st.DataObject, base: dict[str, Any]
) -> None:
    row, expected = data.draw(deviating(base, adherence=True))
    rows, dead = normalize.parse_adherence("wfm", body([row]), "2026-01-02")
    assert dead == []
    (published,) = rows
    if isinstance(row["details"], dict):  # published as its one-element list (models rule 3)
        expected = {
            (("details", 0, *p[1:]) if p[:1] == ("details",) and p[1:] else p): v for p, v in expected.items()
        }
    assert set(published.deviations) == {json_path(p) for p in expected}
    for path, value in expected.items():
        assert at(published, path) == value, path
    assert (published["agentId"], published["date"]) == ("101", "2026-01-02")
    event = normalize.adherence_event("wfm", published, time=datetime.now(UTC))
    assert (event.key, event.deviations) == ("wfm:101", published.deviations)
    Draft202012Validator(event_schema(SCHEMAS, ADHERENCE_TYPE)).validate(orjson.loads(dumps(event.data)))


@pytest.mark.parametrize("row", ACTIVITY_ROWS + ADHERENCE_ROWS)
def test_the_documented_shapes_conform(row: dict[str, Any]) -> None:
    if "details" in row:
        rows, _ = normalize.parse_adherence("wfm", body([row]), "d")
        assert [r.deviations for r in rows] == [()]
        documented = {**event_schema(SCHEMAS, ADHERENCE_TYPE)["anyOf"][0], "$defs": SCHEMAS["$defs"]}
        Draft202012Validator(documented).validate(orjson.loads(dumps(rows[0])))
    else:
        activities, _ = normalize.parse_activities("wfm", body([row]))
        assert [a.deviations for a in activities] == [(), ()]


# -- examples ------------------------------------------------------------------------------------


def test_a_timestamp_sent_as_text_is_coerced_and_listed() -> None:
    row = {"agentId": 7, "realTimeActivities": [{"agentState": "TALK", "timestamp": "1700000000000"}]}
    (activity,), dead = normalize.parse_activities("wfm", body([row]))
    assert dead == []
    assert activity.key == ("7", 1_700_000_000_000, "TALK", None)
    assert activity.deviations == ("$.timestamp",)
    vendor, canonical = normalize.activity_events("wfm", activity, None)
    assert vendor.data["timestamp"] == 1_700_000_000_000
    assert canonical.data.since == datetime.fromtimestamp(1_700_000_000, UTC)


def test_a_deviating_activity_is_published_counted_and_its_canonical_state_follows() -> None:
    row = {
        "agentId": 7,
        "employeeId": {"number": "E7"},
        "teamName": "Default Team",
        "realTimeActivities": [
            {"agentState": "NOT_READY_BUSY", "reasonCode": 12, "timestamp": 5, "source": "acd"},
            {"agentState": "TALK", "timestamp": 6},
        ],
    }
    before = counted(ACTIVITY_TYPE)
    activities, dead = normalize.parse_activities("wfm", body([row]))
    assert dead == []
    assert [a.deviations for a in activities] == [
        ("$.employeeId", "$.teamName", "$.source"),
        ("$.employeeId", "$.teamName"),
    ]
    vendor, canonical = normalize.activity_events("wfm", activities[0], None)
    assert counted(ACTIVITY_TYPE) - before == 1
    assert vendor.data["employeeId"] == {"number": "E7"}  # kept as received
    assert (vendor.data["teamName"], vendor.data["source"], vendor.data["reasonCode"]) == (
        "Default Team",
        "acd",
        "12",
    )
    headers = header_dict(encode(vendor, "streamd.").headers)
    assert json.loads(headers["streamd_deviations"]) == ["$.employeeId", "$.teamName", "$.source"]
    assert canonical.topic == AGENT_STATE_TOPIC
    assert (canonical.data.state, canonical.data.reason_code) == (State.NOT_READY, "12")


def test_a_state_outside_the_documented_list_is_listed_and_canonically_unknown() -> None:
    row = {"agentId": 7, "realTimeActivities": [{"agentState": "ON_BREAK", "timestamp": 5}]}
    (activity,), _ = normalize.parse_activities("wfm", body([row]))
    assert activity.deviations == ("$.agentState",)
    _, canonical = normalize.activity_events("wfm", activity, None)
    assert (canonical.data.state, canonical.data.vendor_state) == (State.UNKNOWN, "ON_BREAK")


def test_a_reason_code_that_is_not_text_keys_the_activity_by_its_json_and_leaves_the_canonical() -> None:
    row = {
        "agentId": 7,
        "realTimeActivities": [{"agentState": "NOT_READY_BUSY", "reasonCode": {"id": 4}, "timestamp": 5}],
    }
    (activity,), _ = normalize.parse_activities("wfm", body([row]))
    assert activity.key == ("7", 5, "NOT_READY_BUSY", '{"id":4}')
    assert activity.deviations == ("$.reasonCode",)
    vendor, canonical = normalize.activity_events("wfm", activity, None)
    assert vendor.data["reasonCode"] == {"id": 4}
    assert canonical.data.reason_code is None
    (again,), _ = normalize.parse_activities("wfm", body([row]))
    assert normalize.activity_events("wfm", again, None)[0].id == vendor.id  # a re-read is the same event


def test_activities_given_as_one_object_are_read_as_that_activity() -> None:
    row = {"agentId": 7, "realTimeActivities": {"agentState": "TALK", "timestamp": 5, "x": 1}}
    (activity,), dead = normalize.parse_activities("wfm", body([row]))
    assert dead == []
    assert activity.deviations == ("$.realTimeActivities", "$.x")
    assert activity.raw["x"] == 1


def test_an_integral_number_id_keys_like_the_integer() -> None:
    row = {"agentId": 7.0, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}
    (activity,), _ = normalize.parse_activities("wfm", body([row]))
    assert (activity.agent_id, activity.raw["agentId"], activity.deviations) == ("7", "7", ("$.agentId",))


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ({"realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}, "agentId"),
        ({"agentId": True, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}, "agentId"),
        ({"agentId": {"id": 7}, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}, "agentId"),
        ({"agentId": "", "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}, "agentId"),
        ({"agentId": 7.5, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}, "agentId"),
        ({"agentId": 7, "realTimeActivities": [{"agentState": "TALK"}]}, "timestamp"),
        ({"agentId": 7, "realTimeActivities": [{"agentState": "TALK", "timestamp": "soon"}]}, "timestamp"),
        ({"agentId": 7, "realTimeActivities": [{"agentState": "TALK", "timestamp": True}]}, "timestamp"),
        ({"agentId": 7, "realTimeActivities": [{"agentState": "TALK", "timestamp": 10**18}]}, "timestamp"),
        ({"agentId": 7, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5.5}]}, "timestamp"),
        ({"agentId": 7, "realTimeActivities": [{"timestamp": 5}]}, "agentState"),
        ({"agentId": 7, "realTimeActivities": [{"agentState": 3, "timestamp": 5}]}, "agentState"),
        ({"agentId": 7, "realTimeActivities": [{"agentState": "", "timestamp": 5}]}, "agentState"),
    ],
)
def test_an_activity_without_usable_routing_fields_is_a_dead_letter(row: dict[str, Any], error: str) -> None:
    good = {"agentId": 8, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}
    activities, dead = normalize.parse_activities("wfm", body([row, good]))
    assert [a.agent_id for a in activities] == ["8"]  # the rest of the response is published
    (letter,) = dead
    assert (letter.topic, letter.data.error_type) == (DEADLETTER_TOPIC, "missing_key")
    assert error in letter.data.error
    assert letter.data.raw is not None
    assert orjson.loads(letter.data.raw) in (row, *row["realTimeActivities"])  # what was received


@pytest.mark.parametrize(
    ("raw", "error_type", "received"),
    [  # a readable answer with unroutable parts (an unreadable one raises: test_calabrio_normalize)
        (b'["row"]', "invalid_payload", b"row"),
        (b'[{"agentId": 7, "realTimeActivities": ["TALK"]}]', "invalid_payload", b"TALK"),
        (
            b'[{"agentId": 7, "realTimeActivities": "TALK"}]',
            "invalid_payload",
            b'{"agentId":7,"realTimeActivities":"TALK"}',
        ),
    ],
)
def test_malformed_input_is_a_dead_letter_with_what_was_received(
    raw: bytes, error_type: str, received: bytes | None
) -> None:
    activities, dead = normalize.parse_activities("wfm", raw)
    assert activities == []
    (letter,) = dead
    assert letter.data.error_type == error_type
    text = letter.data.raw.encode() if letter.data.raw is not None else b64decode(letter.data.raw_b64 or "")
    assert text == (raw if received is None else received)  # the response, row or activity


def test_a_row_without_activities_publishes_nothing_and_is_no_dead_letter() -> None:
    assert normalize.parse_activities(
        "wfm", body([{"agentId": 7, "realTimeActivities": None}, {"agentId": 8}])
    ) == (
        [],
        [],
    )


def test_paths_are_bounded_per_activity() -> None:
    extra = {f"f{i}": i for i in range(MAX_PATHS)}
    row = {"agentId": 7, **extra, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5, "own": 1}]}
    (activity,), _ = normalize.parse_activities("wfm", body([row]))
    assert len(activity.deviations) == MAX_PATHS + 1
    assert activity.deviations[-1] == "..."


def test_a_deviating_adherence_row_is_published_counted_and_normalized() -> None:
    row = {
        "agentld": 2,
        "acdAgentId": 9,
        "scheduleAdherence": "88.5",
        "overtimeSeconds": 30,
        "details": {"actuals": [{"actualReasonCode": "7", "x": {"y": 1}}]},
    }
    before = counted(ADHERENCE_TYPE)
    (published,), dead = normalize.parse_adherence("wfm", body([row]), "2026-01-02")
    assert dead == []
    assert published.deviations == (  # the document's fields first, then the ones it lacks
        "$.scheduleAdherence",
        "$.details[0].actuals[0].actualReasonCode",
        "$.details[0].actuals[0].x",
        "$.overtimeSeconds",
    )
    assert published == {
        "agentId": "2",
        "acdAgentId": "9",
        "scheduleAdherence": 88.5,
        "overtimeSeconds": 30,
        "details": [{"actuals": [{"actualReasonCode": 7, "x": {"y": 1}}]}],
        "date": "2026-01-02",
    }
    event = normalize.adherence_event("wfm", published, time=datetime.now(UTC), snapshot=True)
    assert counted(ADHERENCE_TYPE) - before == 1
    assert event.deviations == published.deviations
    assert json.loads(header_dict(encode(event, "p.").headers)["streamd_deviations"]) == list(
        published.deviations
    )


@pytest.mark.parametrize("row", [{"scheduleAdherence": 90.0}, {"agentId": None}, {"agentId": [1]}, "row"])
def test_an_adherence_row_without_a_usable_agent_id_is_a_dead_letter(row: Any) -> None:
    rows, dead = normalize.parse_adherence("wfm", body([row, {"agentId": 3}]), "d")
    assert [r["agentId"] for r in rows] == ["3"]
    assert [d.data.error_type for d in dead] == [
        "missing_key" if isinstance(row, dict) else "invalid_payload"
    ]


def test_a_deviating_reference_row_still_enriches() -> None:
    agents, dead = normalize.parse_agents(
        "wfm",
        body(
            [
                {"agentId": 3.0, "firstName": 5, "lastName": "Kim", "active": "true", "services": "1,2"},
                {"id": 4, "acdId": {"x": 1}, "firstName": "Bo"},
                {"firstName": "nobody"},
                "x",
            ]
        ),
    )
    assert sorted(agents) == ["3", "4"]
    assert (agents["3"].display_name, agents["3"].active, agents["3"].services) == ("5 Kim", True, [])
    assert (agents["4"].acd_id, agents["4"].display_name) == (None, "Bo")
    assert [d.data.error_type for d in dead] == ["missing_key", "invalid_payload"]

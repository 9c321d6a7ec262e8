"""Pure Calabrio normalization: the canonical mapping table, enrichment, dead letters."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
from pydantic import TypeAdapter

from streamd.errors import VendorProtocolError
from streamd.events import AGENT_STATE_TOPIC, DEADLETTER_TOPIC, AgentState, State
from streamd.publish.encoding import dumps
from streamd.retry import Retry, classify
from streamd.sources.calabrio import normalize
from streamd.sources.calabrio.models import (
    ACTIVITY_TOPIC,
    ACTIVITY_TYPE,
    ADHERENCE_TYPE,
    EVENT_MODELS,
    AgentRef,
)


def body(rows: object) -> bytes:
    return orjson.dumps(rows)


@pytest.mark.parametrize(
    ("vendor", "canonical"),
    [
        ("READY_WAITING", State.AVAILABLE),
        ("TALK", State.BUSY),
        ("HOLD", State.BUSY),
        ("WORK_AFTER_CONTACT", State.AFTER_CALL_WORK),
        ("NOT_READY_BUSY", State.NOT_READY),
        ("LOGGED_OUT", State.LOGGED_OUT),
        ("SOMETHING_NEW", State.UNKNOWN),
    ],
)
def test_canonical_state_table(vendor: str, canonical: State) -> None:
    assert normalize.canonical_state(vendor) is canonical


def test_activities_are_parsed_with_their_agent_ids() -> None:
    acts, dead = normalize.parse_activities(
        "wfm",
        body(
            [
                {
                    "agentId": 101,
                    "employeeId": None,
                    "realTimeActivities": [
                        {"agentState": "HOLD", "reasonCode": None, "timestamp": 1516821300000},
                        {"agentState": "NOT_READY_BUSY", "reasonCode": 7, "timestamp": 1516823100000, "x": 1},
                    ],
                }
            ]
        ),
    )
    assert dead == []
    assert [a.key for a in acts] == [
        ("101", 1516821300000, "HOLD", None),
        ("101", 1516823100000, "NOT_READY_BUSY", "7"),
    ]
    assert acts[1].raw["x"] == 1  # a field the document lacks: kept, and listed
    assert [a.deviations for a in acts] == [(), ("$.x",)]


def test_ocr_spelling_of_ids_is_accepted() -> None:
    acts, _ = normalize.parse_activities(
        "wfm", body([{"agentld": "9", "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}])
    )
    assert acts[0].agent_id == "9"


def test_bad_rows_are_dead_lettered_and_good_rows_kept() -> None:
    acts, dead = normalize.parse_activities(
        "wfm",
        body(
            [
                {"employeeId": "x"},
                {
                    "agentId": 1,
                    "realTimeActivities": [{"agentState": "TALK"}, {"agentState": "TALK", "timestamp": 3}],
                },
            ]
        ),
    )
    assert [a.timestamp for a in acts] == [3]
    assert [d.topic for d in dead] == [DEADLETTER_TOPIC, DEADLETTER_TOPIC]
    assert dead[0].data.stage == "processing"
    assert "agentId" in dead[0].data.error


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"<html><body>Please log in</body></html>", "an HTML page (a login page"),
        (b"  \n<!DOCTYPE html>", "an HTML page"),
        (b'[{"agentId": 7, "realTimeActivities": [', "not JSON"),  # truncated
        (b'[{"agentId": "\xff"}]', "not JSON"),  # not UTF-8
        (b"", "not JSON"),
        (b'{"errorMessage": "busy"}', "JSON an object, not an array"),
        (b'"busy"', "JSON a string, not an array"),
        (b"null", "JSON null, not an array"),
    ],
)
@pytest.mark.parametrize("parse", ["activities", "agents", "adherence"])
def test_an_unreadable_answer_raises_instead_of_becoming_a_dead_letter(
    raw: bytes, says: str, parse: str
) -> None:
    """A whole answer that cannot be read says nothing about its rows: the caller must ask again
    (a dead letter would let the activity window move past the data it should have carried)."""
    calls = {
        "activities": lambda: normalize.parse_activities("wfm", raw),
        "agents": lambda: normalize.parse_agents("wfm", raw),
        "adherence": lambda: normalize.parse_adherence("wfm", raw, "2026-01-01"),
    }
    with pytest.raises(normalize.UnreadableAnswer, match=f"calabrio .*: the answer is {re.escape(says)}"):
        calls[parse]()


def test_an_unreadable_answer_is_retryable_and_quotes_what_was_received() -> None:
    with pytest.raises(VendorProtocolError) as info:
        normalize.parse_activities("wfm", b"<html>" + b"x" * 500)
    assert isinstance(classify(info.value), Retry)
    assert "'<html>xxx" in str(info.value)
    assert len(str(info.value)) < 300  # the start of the body, not all of it


def test_an_empty_array_is_a_readable_answer() -> None:
    assert normalize.parse_activities("wfm", b"[]") == ([], [])


def test_activity_events_are_enriched_from_reference_data() -> None:
    acts, _ = normalize.parse_activities(
        "wfm",
        body(
            [{"agentId": 101, "realTimeActivities": [{"agentState": "TALK", "timestamp": 1_700_000_000_000}]}]
        ),
    )
    ref = AgentRef.model_validate(
        {"agentId": 101, "acdId": "5001", "firstName": "Ana", "lastName": "Silva", "services": [2]}
    )
    vendor, canonical = normalize.activity_events("wfm", acts[0], ref)
    assert (vendor.topic, vendor.type, vendor.key) == (ACTIVITY_TOPIC, ACTIVITY_TYPE, "wfm:101")
    assert vendor.data["acdId"] == "5001"
    assert vendor.data["agentName"] == "Ana Silva"
    assert vendor.time == datetime.fromtimestamp(1_700_000_000, UTC)
    assert canonical.topic == AGENT_STATE_TOPIC
    assert canonical.key == "wfm:101"
    state = canonical.data
    assert isinstance(state, AgentState)
    assert (state.vendor, state.state, state.vendor_state, state.agent_name) == (
        "calabrio",
        State.BUSY,
        "TALK",
        "Ana Silva",
    )
    assert state.queue_ids == ("2",)
    assert state.since == vendor.time
    again = normalize.activity_events("wfm", acts[0], None)
    assert again[0].id == vendor.id  # deterministic, independent of enrichment
    assert again[0].data["agentName"] is None


def test_published_values_fit_their_event_models() -> None:
    acts, _ = normalize.parse_activities(
        "wfm", body([{"agentId": 1, "realTimeActivities": [{"agentState": "TALK", "timestamp": 5}]}])
    )
    vendor, _ = normalize.activity_events("wfm", acts[0], None)
    EVENT_MODELS[ACTIVITY_TYPE].model_validate(orjson.loads(dumps(vendor.data)))
    rows, _ = normalize.parse_adherence(
        "wfm", body([{"agentId": 1, "scheduleAdherence": 90.0}]), "2026-01-02"
    )
    event = normalize.adherence_event("wfm", rows[0], time=datetime.now(UTC))
    assert event.type == ADHERENCE_TYPE
    EVENT_MODELS[ADHERENCE_TYPE].model_validate(orjson.loads(dumps(event.data)))


def test_adherence_details_printed_as_an_object_become_a_list() -> None:
    rows, dead = normalize.parse_adherence(
        "wfm",
        body([{"agentId": 7, "details": {"scheduledActivityType": "in_service", "actuals": []}}]),
        "2026-01-02",
    )
    assert dead == []
    assert rows[0]["details"] == [{"scheduledActivityType": "in_service", "actuals": []}]
    assert rows[0]["date"] == "2026-01-02"


def test_adherence_event_id_changes_with_the_headline_figures_only() -> None:
    when = datetime.now(UTC)
    a = normalize.adherence_event("wfm", {"agentId": 1, "date": "d", "scheduleAdherence": 90.0}, time=when)
    b = normalize.adherence_event(
        "wfm", {"agentId": 1, "date": "d", "scheduleAdherence": 90.0, "x": 2}, time=when
    )
    c = normalize.adherence_event("wfm", {"agentId": 1, "date": "d", "scheduleAdherence": 91.0}, time=when)
    assert a.id == b.id != c.id
    assert a.key == "wfm:1"


def test_agents_reference_accepts_alias_spellings() -> None:
    agents, dead = normalize.parse_agents(
        "wfm", body([{"id": 3, "acdAgentId": 44, "firstName": "Bo"}, {"x": 1}])
    )
    assert agents["3"].acd_id == "44"
    assert agents["3"].display_name == "Bo"
    assert len(dead) == 1


def test_tenant_date_is_the_local_day() -> None:
    late_utc = int(datetime(2026, 3, 2, 3, 0, tzinfo=UTC).timestamp() * 1000)
    assert normalize.tenant_date(late_utc, "America/Chicago") == "2026-03-01"
    assert normalize.tenant_date(late_utc, "UTC") == "2026-03-02"


def test_published_values_validate_against_their_json_schema() -> None:
    acts, _ = normalize.parse_activities(
        "wfm",
        body(
            [{"agentId": 1, "realTimeActivities": [{"agentState": "HOLD", "reasonCode": 7, "timestamp": 5}]}]
        ),
    )
    vendor, _ = normalize.activity_events("wfm", acts[0], None)
    rows, _ = normalize.parse_adherence(
        "wfm",
        body([{"agentld": 2, "acdAgentId": 9, "scheduleAdherence": "88.5", "details": {"actuals": []}}]),
        "d",
    )
    adherence = normalize.adherence_event("wfm", rows[0], time=datetime.now(UTC))
    for event in (vendor, adherence):
        schema = TypeAdapter(EVENT_MODELS[event.type]).json_schema(mode="serialization")
        jsonschema.validate(orjson.loads(dumps(event.data)), schema)
    assert adherence.data["agentId"] == "2"
    assert adherence.data["acdAgentId"] == "9"
    assert vendor.data["reasonCode"] == "7"

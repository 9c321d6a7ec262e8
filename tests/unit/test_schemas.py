"""``streamd schema --events``: every event type has a valid JSON Schema that its values satisfy."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft202012Validator

from streamd.cli import main
from streamd.events import AgentState, DeadLetter, QueueMetric, State
from streamd.publish.encoding import encode
from streamd.schemas import event_models, event_schema, events_schema

WHEN = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def document() -> dict[str, object]:
    return events_schema()


def test_every_vendor_and_canonical_type_is_listed(document: dict[str, object]) -> None:
    types = set(event_models())
    assert {"streamd.agent.State", "streamd.queue.Metric", "streamd.deadletter"} <= types
    for vendor in ("o2g.", "xima.", "alvaria.", "calabrio."):
        assert any(t.startswith(vendor) for t in types), vendor
    assert set(document["events"]) == types  # type: ignore[call-overload]


def test_every_schema_is_valid_json_schema(document: dict[str, object]) -> None:
    events: dict[str, object] = document["events"]  # type: ignore[assignment]
    shared: dict[str, object] = document["$defs"]  # type: ignore[assignment]
    # One metaschema check over everything (per-type checks would re-check the shared $defs).
    Draft202012Validator.check_schema({"$defs": {**shared, **{f"event:{k}": v for k, v in events.items()}}})


@pytest.mark.parametrize(
    "event",
    [
        AgentState(
            vendor="o2g", source="p", agent_id="1", state=State.NOT_READY, since=WHEN, queue_ids=("q",)
        ).to_event(),
        QueueMetric(
            vendor="xima", source="c", queue_id="q", metric="waiting", value=4, unit="calls"
        ).to_event(),
        DeadLetter.of(
            source="p", stage="decode", error_type="malformed_json", error="x", raw=b"\xff"
        ).to_event(),
    ],
)
def test_canonical_values_validate(document: dict[str, object], event: object) -> None:
    from streamd.events import Event

    assert isinstance(event, Event)
    ce_type = "streamd.deadletter" if event.type.startswith("streamd.deadletter") else event.type
    value = orjson.loads(encode(event, "").value)
    Draft202012Validator(event_schema(document, ce_type)).validate(value)


def test_bad_value_fails_validation(document: dict[str, object]) -> None:
    validator = Draft202012Validator(event_schema(document, "streamd.agent.State"))
    assert not validator.is_valid({"vendor": "o2g", "source": "p", "agent_id": "1", "state": "sleeping"})


def test_a_deviating_vendor_record_is_described_as_such(document: dict[str, object]) -> None:
    from streamd.sources.o2g.normalize import normalize

    ce_type = "o2g.telephony.OnCallCreated"
    schema = event_schema(document, ce_type)
    documented = {**schema["anyOf"][0], "$defs": document["$defs"]}  # type: ignore[dict-item]
    event = {
        "eventName": "OnCallCreated",
        "loginName": "u",
        "callRef": "1",
        "participants": [{"participantId": "2"}],
    }
    deviating = {**event, "participants": [{"participantId": "2", "identity": {"displayName": "Anonymous"}}]}
    assert normalize("p", deviating)[0].deviations == ("$.participants[0].identity.id",)
    assert Draft202012Validator(documented).is_valid(event)
    assert not Draft202012Validator(documented).is_valid(deviating)
    value = orjson.loads(encode(normalize("p", deviating)[0], "").value)
    Draft202012Validator(schema).validate(value)  # what consumers receive is described


def test_cli_prints_events_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--events"]) == 0
    assert "streamd.agent.State" in orjson.loads(capsys.readouterr().out)["events"]

"""Reading call-finished pushes (streamd.sources.xima.calls): tolerant, keyed by call id, stable ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamd.errors import NormalizationError
from streamd.sources.xima.calls import call_event
from streamd.sources.xima.models import CallFinished

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def read(query: list[tuple[str, str]], body: bytes = b"", content_type: str = "", field: str = "callId"):  # type: ignore[no-untyped-def]
    return call_event(
        "cr1", call_id_field=field, method="POST", query=query, body=body, content_type=content_type, now=NOW
    )


def test_every_parameter_is_kept_and_the_call_id_is_the_key() -> None:
    event = read([("callId", " 100001 "), ("agent", "Alice Adams"), ("talkingDuration", "0:01:05")])
    assert (event.topic, event.type, event.key) == ("xima.calls", "xima.calls.CallFinished", "cr1:100001")
    assert isinstance(event.data, CallFinished)
    assert event.data.fields == {"callId": " 100001 ", "agent": "Alice Adams", "talkingDuration": "0:01:05"}
    assert event.data.received_at == "2026-01-01T12:00:00.000+00:00"
    assert event.deviations == ()


def test_the_same_record_sent_again_has_the_same_id_another_record_another() -> None:
    first = read([("callId", "1"), ("agent", "Bob")])
    assert read([("agent", "Bob"), ("callId", "1")]).id == first.id
    assert read([("callId", "1"), ("agent", "Carol")]).id != first.id


def test_form_and_json_bodies_add_their_fields() -> None:
    form = read([("callId", "1")], b"agent=Bob&group=Sales", "application/x-www-form-urlencoded")
    assert form.data.fields == {"callId": "1", "agent": "Bob", "group": "Sales"}
    as_json = read([], b'{"callId": 42, "queued": true}', "application/json")
    assert (as_json.key, as_json.data.fields) == ("cr1:42", {"callId": 42, "queued": True})


def test_a_repeated_field_and_an_unreadable_body_are_deviations_not_losses() -> None:
    event = read([("callId", "9"), ("callId", "10"), ("agent", "Bob")], b"<call id=9/>", "text/xml")
    assert event.key == "cr1:9"  # the first value routes
    assert event.data.fields["callId"] == ["9", "10"]
    assert event.data.extra == {"body": "<call id=9/>"}
    assert event.deviations == ("$.extra.body", "$.fields.callId")


@pytest.mark.parametrize("query", [[], [("callId", "")], [("callId", "  ")], [("agent", "Bob")]])
def test_no_usable_call_id_is_an_error_naming_the_field(query: list[tuple[str, str]]) -> None:
    with pytest.raises(NormalizationError, match="'callId'") as caught:
        read(query)
    assert caught.value.error_type == "missing_key"

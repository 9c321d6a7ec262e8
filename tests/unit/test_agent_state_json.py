"""``AgentState.from_json``: the one decoder of the agent-state topic (the sink's and the wallboard's)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from streamd.errors import NormalizationError
from streamd.events import AgentState, State
from streamd.publish.encoding import encode

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "state",
    [
        AgentState(
            vendor="o2g",
            source="pbx1",
            agent_id="4001",
            state=State.AFTER_CALL_WORK,
            agent_name="Ada",
            vendor_state="WITHDRAW",
            reason_code="12",
            reason_label="Lunch",
            since=T0,
            queue_ids=("q1", "q2"),
        ),
        AgentState(vendor="xima", source="cr1", agent_id="7", state=State.UNKNOWN),
    ],
    ids=["every-field", "required-only"],
)
def test_round_trips_through_the_kafka_encoding(state: AgentState) -> None:
    record = encode(state.to_event(), "streamd.")
    assert record.topic == "streamd.agent-state"
    assert AgentState.from_json(record.value) == state


def test_unknown_fields_are_ignored_unknown_states_are_unknown_and_ids_become_text() -> None:
    value = orjson.dumps(
        {"vendor": "v", "source": "s", "agent_id": 7, "state": "on_the_moon", "new_field": {"x": 1}}
    )
    got = AgentState.from_json(value)
    assert got.state is State.UNKNOWN
    assert got.agent_id == "7"
    assert got.since is None
    naive = AgentState.from_json(
        b'{"vendor":"v","source":"s","agent_id":"1","state":"busy","since":"2026-01-01T08:00:00"}'
    )
    assert naive.since == T0


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (None, "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"vendor": "v", "source": "s", "state": "busy"}', "agent_id is missing"),
        (b'{"vendor": "v", "source": "s", "agent_id": "1", "state": "busy", "since": "yesterday"}', "since"),
        (b'{"vendor": "v", "source": "s", "agent_id": "1", "state": "busy", "since": 5}', "since"),
        (b'{"vendor": "v", "source": "s", "agent_id": "1", "state": "busy", "queue_ids": "q1"}', "queue_ids"),
        (
            b'{"vendor": "v", "source": "s", "agent_id": {"a": 1}, "state": "busy"}',
            "agent_id is not a string",
        ),
        (b'{"vendor": true, "source": "s", "agent_id": "1", "state": "busy"}', "vendor is not a string"),
    ],
)
def test_invalid_values_raise_naming_what_is_wrong(value: bytes | None, names: str) -> None:
    with pytest.raises(NormalizationError, match=names) as info:
        AgentState.from_json(value)
    assert info.value.error_type == "invalid_payload"


def test_a_republish_with_new_queues_name_or_label_gets_a_new_id_and_a_repeat_keeps_it() -> None:
    def state(**changes: object) -> AgentState:
        fields: dict[str, object] = {
            "vendor": "o2g",
            "source": "pbx",
            "agent_id": "7001",
            "state": State.AVAILABLE,
            "since": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            "queue_ids": ("5001",),
        }
        return AgentState(**{**fields, **changes})  # type: ignore[arg-type]

    base = state().to_event().id
    assert state().to_event().id == base
    ids = {
        state(queue_ids=("5001", "60141")).to_event().id,
        state(agent_name="Ada").to_event().id,
        state(reason_label="Lunch").to_event().id,
    }
    assert base not in ids
    assert len(ids) == 3

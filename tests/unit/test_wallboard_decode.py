"""Decoding the canonical topics back into hub updates (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from streamd.events import AgentState, QueueMetric, State
from streamd.publish.encoding import encode
from streamd.telemetry import ERRORS
from streamd.wallboard.consumer import DecodeError, apply_record, decode_agent, decode_metric, record_time
from streamd.wallboard.hub import StateHub

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def test_agent_state_round_trips_through_its_kafka_encoding() -> None:
    state = AgentState(
        vendor="o2g",
        source="pbx1",
        agent_id="4001",
        state=State.AFTER_CALL_WORK,
        agent_name="Ada",
        vendor_state="WITHDRAW",
        reason_code="12",
        since=T0,
        queue_ids=("q1", "q2"),
    )
    record = encode(state.to_event(), "streamd.")
    assert record.topic == "streamd.agent-state"
    assert decode_agent(record.value) == state


def test_queue_metric_round_trips_and_keeps_value_types() -> None:
    for value in (3, 0.95, "OPEN", True, None):
        m = QueueMetric(
            vendor="alvaria", source="a1", queue_id="team/7", metric="m", value=value, unit="count", as_of=T0
        )
        assert decode_metric(encode(m.to_event(), "").value) == m


def test_unknown_fields_are_ignored_and_unknown_states_are_unknown() -> None:
    value = orjson.dumps(
        {"vendor": "v", "source": "s", "agent_id": 7, "state": "on_the_moon", "new_field": {"x": 1}}
    )
    got = decode_agent(value)
    assert got.state is State.UNKNOWN
    assert got.agent_id == "7"
    assert got.since is None


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[1, 2]",
        b'{"vendor": "v", "source": "s", "state": "busy"}',  # no agent_id
        b'{"vendor": "v", "source": "s", "agent_id": "1", "state": "busy", "since": "yesterday"}',
        b'{"vendor": "v", "source": "s", "agent_id": "1", "state": "busy", "queue_ids": "q1"}',
        b'{"vendor": "v", "source": "s", "agent_id": {"a": 1}, "state": "busy"}',
    ],
)
def test_invalid_agent_values_raise(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_agent(value)


def test_invalid_metric_value_raises() -> None:
    with pytest.raises(DecodeError):
        decode_metric(b'{"vendor": "v", "source": "s", "queue_id": "q", "metric": "m", "value": [1]}')


def test_apply_record_updates_removes_and_counts_bad_records() -> None:
    hub = StateHub()
    state = AgentState(vendor="v", source="s", agent_id="1", state=State.BUSY)
    record = encode(state.to_event(time=T0), "p.")
    assert apply_record(hub, "agent", record.key, record.value, record.headers)
    assert hub.agents["s:1"].since == T0  # from ce_time: the vendor gave no since
    m = QueueMetric(vendor="v", source="s", queue_id="q", metric="waiting_calls", value=2)
    mr = encode(m.to_event(), "p.")
    assert apply_record(hub, "metric", mr.key, mr.value, mr.headers)
    assert list(hub.metrics) == ["s:q:waiting_calls"]

    before = ERRORS.labels("wallboard", "decode", "invalid_event")._value.get()
    assert not apply_record(hub, "agent", b"s:2", b"{broken")
    assert not apply_record(hub, "agent", None, None)  # a tombstone needs a key
    assert ERRORS.labels("wallboard", "decode", "invalid_event")._value.get() - before == 2

    assert apply_record(hub, "agent", b"s:1", None)  # tombstone
    assert apply_record(hub, "metric", b"s:q:waiting_calls", None)
    assert hub.agents == {}
    assert hub.metrics == {}


def test_record_time_prefers_ce_time_then_the_kafka_timestamp() -> None:
    assert record_time([("ce_time", b"2026-01-01T08:00:00Z")], 5) == T0
    assert record_time([], int(T0.timestamp() * 1000)) == T0
    assert record_time([("ce_time", b"bad")], None) is None

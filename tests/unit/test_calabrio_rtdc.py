"""The pure part of the calabrio-rtdc sink: config, state -> record mapping, decoding, batching."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from streamd.events import DEADLETTER_TOPIC, AgentState, State
from streamd.publish.consume import ConsumedRecord
from streamd.publish.encoding import Record, encode
from streamd.sinks.calabrio_rtdc import (
    CalabrioRtdcSinkConfig,
    RtdcMapping,
    RtdcRecord,
    batches,
    select_states,
    to_record,
)

SINCE = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
SINCE_MS = 1767323045678


def state(s: State, vendor_state: str | None = None, reason: str | None = None, **kw: object) -> AgentState:
    return AgentState(
        vendor="o2g", source="pbx1", agent_id="1001", state=s, vendor_state=vendor_state, reason_code=reason,
        since=SINCE, **kw  # type: ignore[arg-type]
    )  # fmt: skip


def config(**kw: object) -> CalabrioRtdcSinkConfig:
    base: dict[str, object] = {
        "kind": "calabrio-rtdc",
        "from": "pbx1",
        "url": "http://c",
        "username": "u",
        "password": "p",
    }
    return CalabrioRtdcSinkConfig.model_validate(base | kw)


@pytest.mark.parametrize(
    ("canonical", "vendor_state", "code"),
    [
        (State.LOGGED_OUT, "LOG_OFF", 1),
        (State.NOT_READY, "PAUSE", 2),
        (State.AVAILABLE, "READY", 3),
        (State.BUSY, "BUSY", 4),
        (State.BUSY, "hold", 10),
        (State.AFTER_CALL_WORK, "WRAPUP", 6),
    ],
)
def test_state_table(canonical: State, vendor_state: str, code: int) -> None:
    record = to_record(state(canonical, vendor_state), RtdcMapping(), fallback_ms=0)
    assert record == RtdcRecord("1001", code, SINCE_MS)


def test_unknown_state_is_not_sent() -> None:
    assert to_record(state(State.UNKNOWN), RtdcMapping(), fallback_ms=0) is None


def test_after_call_work_code_and_agent_map_come_from_config() -> None:
    mapping = RtdcMapping.of(config(after_call_work_code=5, agent_map={"1001": "ACD-77"}))
    record = to_record(state(State.AFTER_CALL_WORK), mapping, fallback_ms=0)
    assert record == RtdcRecord("ACD-77", 5, SINCE_MS)


def test_reason_code_is_sent_with_logout_and_not_ready_only() -> None:
    mapping = RtdcMapping()
    assert to_record(state(State.NOT_READY, reason="3"), mapping, fallback_ms=0) == RtdcRecord(
        "1001", 2, SINCE_MS, "3"
    )
    assert to_record(state(State.AVAILABLE, reason="3"), mapping, fallback_ms=0) == RtdcRecord(
        "1001", 3, SINCE_MS
    )


def test_state_without_since_uses_the_fallback_time() -> None:
    undated = AgentState(vendor="o2g", source="pbx1", agent_id="1", state=State.AVAILABLE)
    assert to_record(undated, RtdcMapping(), fallback_ms=42) == RtdcRecord("1", 3, 42)


def test_wire_shape() -> None:
    assert RtdcRecord("5001", 2, 9, "7").wire() == {
        "acdAgentId": "5001",
        "gisStateIdentifier": 2,
        "timestamp": 9,
        "reasonCode": "7",
    }


def consumed(
    record: Record | None, value: bytes | None = None, *, headers: bool = True, ms: int = 0
) -> ConsumedRecord:
    """A record as the reader returns it (``record=None``: only ``value``, no headers)."""
    return ConsumedRecord(
        topic="streamd.agent-state",
        partition=0,
        offset=ms,
        key=record.key if record else None,
        value=record.value if record else value,
        headers=dict(record.headers) if record and headers else {},
        timestamp_ms=ms,
    )


def test_select_states_keeps_the_configured_source_and_dead_letters_garbage() -> None:
    mine = encode(state(State.AVAILABLE).to_event(), "streamd.")
    other = encode(
        AgentState(vendor="x", source="other", agent_id="9", state=State.BUSY).to_event(), "streamd."
    )
    undated = encode(AgentState(vendor="o2g", source="pbx1", agent_id="2", state=State.BUSY).to_event(), "")
    records = [
        consumed(mine, ms=1),
        consumed(other, ms=2),
        consumed(other, headers=False, ms=3),  # no headers: filtered on the value's source
        consumed(None, b"{not json", ms=4),
        consumed(None, None, ms=5),  # a tombstone on the compacted topic: nothing to send
        consumed(None, undated.value, ms=6),  # no since, no ce_time: the Kafka timestamp
    ]
    states, dead = select_states(records, "pbx1", "calabrio-rtdc-pbx1")
    assert [(s.agent_id, ms) for s, ms in states] == [("1001", SINCE_MS), ("2", 6)]
    assert [d.topic for d in dead] == [DEADLETTER_TOPIC]
    assert (dead[0].data.stage, dead[0].data.raw) == ("sink", "{not json")


def test_batches_keep_order_and_size() -> None:
    assert [list(b) for b in batches([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
    assert list(batches([], 3)) == []


def test_config_reads_from_and_names_itself() -> None:
    cfg = config()
    assert cfg.from_ == "pbx1"
    assert cfg.name == "calabrio-rtdc-pbx1"
    assert "p" not in repr(cfg.password)
    assert config(name="bridge").name == "bridge"
    with pytest.raises(ValidationError):
        config(batch_size=0)
    with pytest.raises(ValidationError):
        config(surprise=1)


def test_config_bounds_the_rejection_streak_and_takes_the_shared_tls_fields() -> None:
    cfg = config()
    assert (cfg.reject_limit, cfg.verify_tls, cfg.ca_file) == (10, True, None)
    assert config(verify_tls=False, ca_file="/etc/ca.pem").ca_file == Path("/etc/ca.pem")
    with pytest.raises(ValidationError, match="reject_limit"):
        config(reject_limit=0)

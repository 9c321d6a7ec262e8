"""Decoding the canonical topics back into hub updates (pure; agent states: test_agent_state_json)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streamd.errors import NormalizationError
from streamd.events import AgentState, QueueMetric, State
from streamd.publish.encoding import encode
from streamd.telemetry import ERRORS
from streamd.wallboard.consumer import apply_record, decode_metric, published_time, record_time
from streamd.wallboard.hub import StateHub

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def test_queue_metric_round_trips_and_keeps_value_types() -> None:
    for value in (3, 0.95, "OPEN", True, None):
        m = QueueMetric(
            vendor="alvaria", source="a1", queue_id="team/7", metric="m", value=value, unit="count", as_of=T0
        )
        assert decode_metric(encode(m.to_event(), "").value) == m


def test_invalid_metric_value_raises() -> None:
    with pytest.raises(NormalizationError, match="value is not a scalar"):
        decode_metric(b'{"vendor": "v", "source": "s", "queue_id": "q", "metric": "m", "value": [1]}')


def test_apply_record_updates_removes_and_counts_bad_records() -> None:
    hub = StateHub()
    state = AgentState(vendor="v", source="s", agent_id="1", state=State.BUSY)
    record = encode(state.to_event(time=T0), "p.")
    assert apply_record(hub, "agent", record.key, record.value, dict(record.headers))
    assert hub.agents["s:1"].since == T0  # from ce_time: the vendor gave no since
    m = QueueMetric(vendor="v", source="s", queue_id="q", metric="waiting_calls", value=2)
    mr = encode(m.to_event(), "p.")
    assert apply_record(hub, "metric", mr.key, mr.value, dict(mr.headers))
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
    assert record_time({"ce_time": b"2026-01-01T08:00:00Z"}, 5) == T0
    assert record_time({}, int(T0.timestamp() * 1000)) == T0
    assert record_time({"ce_time": b"bad"}, None) is None


def test_every_record_counts_as_news_from_its_source_at_its_kafka_time() -> None:
    hub = StateHub()
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # in the past, whatever the clock
    m = QueueMetric(vendor="v", source="s", queue_id="q", metric="waiting", value=2)
    record = encode(m.to_event(time=t0 - timedelta(hours=1)), "p.")  # the vendor's time: long ago
    published = int((t0 + timedelta(seconds=1)).timestamp() * 1000)
    assert apply_record(hub, "metric", record.key, record.value, dict(record.headers), published)
    later = int((t0 + timedelta(seconds=30)).timestamp() * 1000)
    assert not apply_record(hub, "metric", record.key, record.value, dict(record.headers), later)  # unchanged
    a = AgentState(vendor="v", source="t", agent_id="1", state=State.BUSY)
    ar = encode(a.to_event(time=t0), "p.")
    assert apply_record(hub, "agent", ar.key, ar.value, dict(ar.headers), published)
    assert not apply_record(hub, "agent", b"u:1", b"{broken", None, later)  # undecodable: no news from "u"
    hub.sync()
    assert hub.sources["s"].last_update == t0 + timedelta(seconds=30)
    assert hub.sources["t"].last_update == t0 + timedelta(seconds=1)
    assert set(hub.sources) == {"s", "t"}


def test_published_time_is_the_kafka_timestamp_else_now() -> None:
    assert published_time(int(T0.timestamp() * 1000)) == T0
    before = datetime.now(UTC)
    assert published_time(None) >= before
    assert published_time(-1) >= before

"""Encoding: the Kafka contract (topic, key, value, CloudEvents headers) for every event type."""

from __future__ import annotations

import dataclasses
import tracemalloc
from datetime import UTC, datetime

import msgspec
import orjson
import pytest

from streamd.events import AgentState, DeadLetter, Event, QueueMetric, State, new_event, stable_id
from streamd.publish.encoding import _HeaderCache, dumps, encode, header_dict

WHEN = datetime(2026, 11, 24, 12, 30, 5, 123000, tzinfo=UTC)


def test_vendor_event_headers_and_key() -> None:
    event = Event(
        topic="o2g.agent",
        type="o2g.agent.OnAgentStateChanged",
        source="pbx1",
        key="pbx1:4001",
        data={"eventName": "OnAgentStateChanged", "loginName": "4001"},
        time=WHEN,
        id="abc",
    )
    record = encode(event, "streamd.")
    assert record.topic == "streamd.o2g.agent"
    assert record.key == b"pbx1:4001"
    assert orjson.loads(record.value) == {"eventName": "OnAgentStateChanged", "loginName": "4001"}
    assert header_dict(record.headers) == {
        "ce_specversion": "1.0",
        "ce_id": "abc",
        "ce_source": "streamd/pbx1",
        "ce_type": "o2g.agent.OnAgentStateChanged",
        "ce_time": "2026-11-24T12:30:05.123000Z",
        "ce_subject": "pbx1:4001",
        "content-type": "application/json",
    }


def test_snapshot_header_only_when_true() -> None:
    base = Event(topic="t", type="x.y.Z", source="s", key="s:1", data={}, time=WHEN)
    assert "streamd_snapshot" not in header_dict(encode(base, "").headers)
    snap = msgspec.structs.replace(base, snapshot=True)
    assert header_dict(encode(snap, "").headers)["streamd_snapshot"] == "true"


def test_missing_id_gets_a_unique_random_id() -> None:
    event = Event(topic="t", type="x.y.Z", source="s", key="s:1", data={}, time=WHEN)
    ids = {header_dict(encode(event, "").headers)["ce_id"] for _ in range(3)}
    assert len(ids) == 3


def test_stable_id_is_deterministic_and_sensitive() -> None:
    assert stable_id("s", "k", "t1") == stable_id("s", "k", "t1")
    assert stable_id("s", "k", "t1") != stable_id("s", "k", "t2")
    assert stable_id("a", "bc") != stable_id("ab", "c")


@pytest.mark.parametrize(
    "event",
    [
        AgentState(
            vendor="o2g",
            source="pbx1",
            agent_id="4001",
            state=State.AFTER_CALL_WORK,
            agent_name="Ann",
            vendor_state="WITHDRAW",
            reason_code="12",
            since=WHEN,
            queue_ids=("q1", "q2"),
        ).to_event(),
        QueueMetric(
            vendor="xima", source="cr1", queue_id="sales", metric="waiting", value=3, as_of=WHEN
        ).to_event(),
        DeadLetter.of(
            source="pbx1", stage="decode", error_type="malformed_json", error="bad", raw=b"{x"
        ).to_event(),
    ],
    ids=["agent-state", "queue-metric", "deadletter"],
)
def test_canonical_events_round_trip(event: Event) -> None:
    record = encode(event, "p.")
    value = orjson.loads(record.value)
    model = type(event.data)
    rebuilt = model(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in value.items()})
    for f in dataclasses.fields(model):
        original = getattr(event.data, f.name)
        got = getattr(rebuilt, f.name)
        assert str(got) == (
            original.isoformat().replace("+00:00", "Z") if isinstance(original, datetime) else str(original)
        )
    assert record.key == event.key.encode()
    assert header_dict(record.headers)["ce_subject"] == event.key


def test_agent_state_key_topic_and_stable_id() -> None:
    state = AgentState(vendor="o2g", source="pbx1", agent_id="4001", state=State.BUSY, since=WHEN)
    a, b = state.to_event(), state.to_event()
    assert a.topic == "agent-state"
    assert a.key == "pbx1:4001"
    assert a.type == "streamd.agent.State"
    assert a.id == b.id
    assert orjson.loads(encode(a, "").value)["state"] == "busy"


def test_deadletter_keeps_text_or_base64() -> None:
    text = DeadLetter.of(source="s", stage="decode", error_type="e", error="x", raw=b'{"a":')
    assert text.raw == '{"a":'
    assert text.raw_b64 is None
    binary = DeadLetter.of(source="s", stage="decode", error_type="e", error="x", raw=b"\xff\xfe")
    assert binary.raw is None
    assert binary.raw_b64 == "//4="
    assert text.to_event().key == "s"
    assert text.to_event().topic == "deadletter"


def test_new_event_equals_the_class_constructor() -> None:
    fields = {f.name: f"v-{f.name}" for f in msgspec.structs.fields(Event)} | {"time": WHEN, "snapshot": True}
    fast = new_event(**fields)
    assert fast == Event(**fields)
    assert [getattr(fast, name) for name in fields] == list(fields.values())
    with pytest.raises(AttributeError):
        fast.key = "other"  # type: ignore[misc]


def test_header_cache_is_bounded_and_right_beyond_its_limit() -> None:
    cache = _HeaderCache("ce_type", "x.{}", limit=2)
    assert [cache[v] for v in ("a", "b", "c", "c")] == [("ce_type", b"x." + v.encode()) for v in "abcc"]
    assert len(cache) == 2


def test_canonical_ids_do_not_depend_on_a_shared_time_object() -> None:
    # the isoformat of the last time is remembered: equal but distinct datetimes, and a new time
    other = datetime(2026, 11, 24, 12, 30, 6, tzinfo=UTC)
    state = AgentState(vendor="v", source="s", agent_id="1", state=State.BUSY)
    a, b = state.to_event(time=WHEN), state.to_event(time=WHEN.replace())
    assert a.id == b.id == stable_id("s:1", State.BUSY, None, None, WHEN.isoformat(), None, None)
    assert state.to_event(time=other).id == stable_id(
        "s:1", State.BUSY, None, None, other.isoformat(), None, None
    )


def test_values_are_as_large_as_their_json() -> None:
    """Encoding rule 10: orjson's bytes are at least 4 KiB however short; a record's value (and what
    the wallboard keeps) is copied to its size, so records in flight hold what they carry."""
    event = Event(topic="t", type="x.y.Z", source="s", key="s:1", data={"a": 1, "b": "x" * 100}, time=WHEN)
    deviating = msgspec.structs.replace(event, deviations=("$.a", "$.b"))
    tracing = tracemalloc.is_tracing()  # someone else's tracing is left on
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        values = [encode(event, "p.").value for _ in range(1000)] + [dumps({"i": i}) for i in range(1000)]
        headers = [encode(deviating, "p.").headers[-1] for _ in range(1000)]
        after = tracemalloc.take_snapshot()
    finally:
        if not tracing:
            tracemalloc.stop()
    here = [tracemalloc.Filter(True, encode.__code__.co_filename)]  # what encoding.py allocated
    held = sum(
        d.size_diff for d in after.filter_traces(here).compare_to(before.filter_traces(here), "filename")
    )
    assert values[0] == b'{"a":1,"b":"' + b"x" * 100 + b'"}'
    assert values[-1] == b'{"i":999}'
    assert headers[0] == ("streamd_deviations", b'["$.a","$.b"]')
    assert held / len(values) < 300  # ~4,100 bytes each before (values and deviation headers)

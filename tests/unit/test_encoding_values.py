"""The encoder's fast paths give the bytes orjson gives on its own: field dicts for frozen slotted
dataclasses, str-keyed dicts without ``OPT_NON_STR_KEYS``, the shared header pairs and topics."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from streamd.events import (
    AgentAdherence,
    AgentState,
    DeadLetter,
    Event,
    QueueMetric,
    SourceGap,
    State,
    new_event,
)
from streamd.publish import encoding
from streamd.publish.encoding import _FieldDicts, dumps, encode, header_dict

WHEN = datetime(2026, 11, 24, 12, 30, 5, 123000, tzinfo=UTC)


def _orjson(data: Any) -> bytes:
    """orjson's own serialisation, as the encoder did before its fast paths."""
    return orjson.dumps(data, default=encoding._default, option=orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS)


@dataclasses.dataclass(frozen=True, slots=True)
class _Private:
    shown: int
    _hidden: int = 2  # orjson leaves fields starting with "_" out


@dataclasses.dataclass(frozen=True)
class _NotSlotted:
    a: int
    b: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True, slots=True)
class _Nested:
    metric: QueueMetric
    when: datetime
    extra: dict[Any, Any]


CASES: list[Any] = [
    AgentState(vendor="o2g", source="pbx1", agent_id="4001", state=State.BUSY),
    AgentState(
        vendor="o2g", source="pbx1", agent_id="4001", state=State.AFTER_CALL_WORK, agent_name="Ann \"A\" \u00e9",
        vendor_state="WITHDRAW", reason_code="12", reason_label="Lunch", since=WHEN, queue_ids=("q1", "q2"),
    ),
    QueueMetric(vendor="xima", source="cr1", queue_id="sales", metric="waiting", value=3, as_of=WHEN),
    QueueMetric(vendor="xima", source="cr1", queue_id="s", metric="m", value=2.5, unit="percent", queue_name="S"),
    QueueMetric(vendor="xima", source="cr1", queue_id="s", metric="m", value=None),
    QueueMetric(vendor="xima", source="cr1", queue_id="s", metric="m", value=True),
    QueueMetric(vendor="xima", source="cr1", queue_id="s", metric="m", value=2**63 - 1),
    AgentAdherence(
        vendor="calabrio", source="c", agent_id="7", status="out", since=WHEN.astimezone(timezone(timedelta(hours=2))),
        state=State.NOT_READY, scheduled_start=WHEN, scheduled_end=WHEN,
    ),
    DeadLetter.of(source="s", stage="decode", error_type="e", error="x", raw=b"\xff"),
    _Private(1),
    _NotSlotted(1),
    _Nested(QueueMetric(vendor="v", source="s", queue_id="q", metric="m", value=1), WHEN, {1: "a", None: 2}),
    {"a": 1, "b": [1, 2, {"c": None}], "t": WHEN},
    {1: "int key", "s": "str key"},
    {"nested": {2.5: "float key"}},
    SourceGap(source="s", **{"from": WHEN}, to=WHEN, reason="r"),
    [QueueMetric(vendor="v", source="s", queue_id="q", metric="m", value=1)],
]  # fmt: skip


@pytest.mark.parametrize("data", CASES, ids=lambda d: type(d).__name__)
def test_values_are_the_bytes_orjson_writes_on_its_own(data: Any) -> None:
    assert dumps(data) == _orjson(data)
    event = Event(topic="t", type="x.y.Z", source="s", key="s:1", data=data, time=WHEN)
    assert encode(event, "p.").value == _orjson(data)


def test_only_frozen_slotted_dataclasses_become_field_dicts() -> None:
    dicts = _FieldDicts()
    convert = dicts[QueueMetric]
    assert convert is not None
    metric = QueueMetric(vendor="v", source="s", queue_id="q", metric="m", value=1, as_of=WHEN)
    assert list(convert(metric)) == [f.name for f in dataclasses.fields(QueueMetric)]
    assert dicts[_Private] is not None
    assert list(dicts[_Private](_Private(1))) == ["shown"]
    assert dicts[_NotSlotted] is None
    assert dicts[dict] is None
    assert dicts[SourceGap] is None


def test_the_type_cache_is_bounded_and_right_beyond_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    dicts = _FieldDicts()
    monkeypatch.setattr(dicts, "limit", 1)
    assert dicts[AgentState] is not None
    metric = QueueMetric(vendor="v", source="s", queue_id="q", metric="m", value=1)
    convert = dicts[QueueMetric]
    assert convert is not None
    assert orjson.dumps(convert(metric)) == orjson.dumps(metric)
    assert list(dicts) == [AgentState]


def test_data_orjson_cannot_write_still_raises_a_type_error() -> None:
    event = Event(topic="t", type="x.y.Z", source="s", key="s:1", data={"x": object()}, time=WHEN)
    with pytest.raises(TypeError):
        encode(event, "p.")
    with pytest.raises(TypeError):
        dumps({1: object()})


def test_records_of_one_key_share_its_bytes_and_subject_pair() -> None:
    a = encode(Event(topic="t", type="x.y.Z", source="s", key="s:\u00e91", data={}, time=WHEN), "p.")
    b = encode(Event(topic="u", type="x.y.Z", source="s", key="s:\u00e91", data={}, time=WHEN), "p.")
    assert a.key == "s:\u00e91".encode()
    assert a.key is b.key
    assert header_dict(a.headers)["ce_subject"] == header_dict(b.headers)["ce_subject"] == "s:\u00e91"
    assert type(a.headers) is type(b.headers) is tuple  # encoding rule 8: shared pairs, never a list


def test_topics_follow_the_prefix_of_each_call() -> None:
    event = new_event("o2g.agent", "x.y.Z", "s", "s:1", {}, WHEN)
    assert [encode(event, prefix).topic for prefix in ("a.", "b.", "a.", "", "a.")] == [
        "a.o2g.agent",
        "b.o2g.agent",
        "a.o2g.agent",
        "o2g.agent",
        "a.o2g.agent",
    ]


def test_random_ids_are_unique_and_the_process_prefix_then_a_counter() -> None:
    event = Event(topic="t", type="x.y.Z", source="s", key="s:1", data={}, time=WHEN)
    ids = [header_dict(encode(event, "").headers)["ce_id"] for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{12}[0-9a-f]{10}", i) for i in ids)
    assert len({i[:12] for i in ids}) == 1
    counters = [int(i[12:], 16) for i in ids]
    assert counters == sorted(counters)


def test_header_order_is_the_contract_order() -> None:
    event = Event(
        topic="t", type="x.y.Z", source="s", key="s:1", data={}, time=WHEN, id="i", snapshot=True,
        deviations=("$.a",),
    )  # fmt: skip
    assert [name for name, _ in encode(event, "").headers] == [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_time",
        "ce_subject",
        "content-type",
        "streamd_snapshot",
        "streamd_deviations",
    ]


def test_the_key_cache_starts_again_when_full() -> None:
    cache = encoding._SubjectCache("ce_subject", "{}", limit=3)
    assert [cache[k] for k in "abcde"] == [("ce_subject", k.encode()) for k in "abcde"]
    assert list(cache) == ["d", "e"]

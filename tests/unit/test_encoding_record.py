"""Record: immutable, compared by value, never tracked by the cyclic garbage collector (encoding rule 7)."""

from __future__ import annotations

import gc
import pickle

import pytest

from streamd.events import Event
from streamd.publish.encoding import Record, confluent_json, encode


def test_a_record_is_untracked_immutable_and_equal_by_value() -> None:
    record = Record("t", b"k", b"v", (("ce_id", b"1"),))
    assert not gc.is_tracked(record)
    assert record == Record(topic="t", key=b"k", value=b"v", headers=(("ce_id", b"1"),))
    assert record != Record("t", b"k", b"other", (("ce_id", b"1"),))
    assert pickle.loads(pickle.dumps(record)) == record
    with pytest.raises(AttributeError):
        record.value = b"x"  # type: ignore[misc]


def test_encoded_records_are_untracked_and_their_headers_a_tuple_of_pairs() -> None:
    event = Event(topic="o2g.agent", type="o2g.agent.X", source="s", key="s:1", data={"a": [1, 2]})
    first, second = encode(event, "p."), encode(event, "p.")
    framed = confluent_json({"p.o2g.agent": 7})(event, "p.")
    assert not any(gc.is_tracked(r) for r in (first, second, framed))
    for record in (first, second, framed):  # encoding rule 8: never a list (tracing makes new records)
        assert type(record.headers) is tuple
        assert all(type(pair) is tuple and len(pair) == 2 for pair in record.headers)
    assert [name for name, _ in framed.headers] == [name for name, _ in first.headers]
    assert framed.value == b"\x00\x00\x00\x00\x07" + first.value

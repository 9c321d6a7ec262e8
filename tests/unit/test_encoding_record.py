"""Record: immutable, compared by value, never tracked by the cyclic garbage collector (encoding rule 7)."""

from __future__ import annotations

import gc
import pickle

import pytest

from streamd.events import Event
from streamd.publish.encoding import Record, confluent_json, encode


def test_a_record_is_untracked_immutable_and_equal_by_value() -> None:
    record = Record("t", b"k", b"v", [("ce_id", b"1")])
    assert not gc.is_tracked(record)
    assert record == Record(topic="t", key=b"k", value=b"v", headers=[("ce_id", b"1")])
    assert record != Record("t", b"k", b"other", [("ce_id", b"1")])
    assert pickle.loads(pickle.dumps(record)) == record
    with pytest.raises(AttributeError):
        record.value = b"x"  # type: ignore[misc]


def test_encoded_records_are_untracked_and_keep_their_own_headers_list() -> None:
    event = Event(topic="o2g.agent", type="o2g.agent.X", source="s", key="s:1", data={"a": [1, 2]})
    first, second = encode(event, "p."), encode(event, "p.")
    framed = confluent_json({"p.o2g.agent": 7})(event, "p.")
    assert not any(gc.is_tracked(r) for r in (first, second, framed))
    assert first.headers is not second.headers  # tracing appends to one record's headers only
    assert framed.value == b"\x00\x00\x00\x00\x07" + first.value

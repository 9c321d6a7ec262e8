"""The Alvaria poll cycle's fast paths give exactly what the plain ones give: the answer decode
(big integers kept exact), row event ids (``stable_id``) and times, and the change and agent-state
objects built by writing their slots."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.events import AgentState, State, stable_id
from streamd.jsonwire import loads, may_hold_big_ints
from streamd.sources.alvaria.agents import user_activity_state
from streamd.sources.alvaria.diff import RowChange, ScopeState, diff_snapshot
from streamd.sources.alvaria.models import ROW_READERS
from streamd.sources.alvaria.rowevents import parse_time, row_events
from streamd.sources.alvaria.shapes import SHAPES

USER = SHAPES["userActivity"]
OBSERVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def user(uid: str, state: str = "idle", *, dur: Any = 0, **kw: Any) -> dict[str, Any]:
    row = {
        "userId": uid,
        "teamId": "sales",
        "preferredName": f"Agent {uid}",
        "stateId": state,
        "reasonId": "",
        "stateStartTime": "2026-01-02T03:00:00Z",
        "interactionCount": 0,
        "stateDur": dur,
        "signOnDur": 100,
    }
    return row | kw


def decode(body: bytes) -> Any:
    """What the poll cycle decodes an answer with (:mod:`streamd.sources.alvaria.query`)."""
    return loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"rows": [{"userId": "a", "stateDur": 123456789012345678}]}',  # 18 digits: no re-decode
        b'{"rows": [{"userId": "a", "stateDur": 123456789012345678901234567890}]}',
        b'{"rows": [{"userId": "a", "stateDur": -18446744073709551616}]}',
        b'{"rows": [{"userId": "a", "stateDur": 18446744073709551615}]}',  # the largest 64-bit
        b'{"rows": [{"userId": "1234567890123456789012"}]}',  # a long run inside a string
        b'{"rows": [{"userId": "a", "x": 1234567890.1234567890123}]}',
        '{"rows": [{"userId": "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660'
        '\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660"}]}'.encode(),  # not ASCII
    ],
)
def test_an_answer_decodes_as_jsonwire_loads_decodes_it(body: bytes) -> None:
    assert may_hold_big_ints(body) == (re.search(rb"\d{19}", body) is not None)
    decoded = decode(body)
    assert decoded == loads(body)
    assert [type(v) for v in decoded["rows"][0].values()] == [
        type(v) for v in loads(body)["rows"][0].values()
    ]


def test_an_integer_beyond_64_bits_is_kept_exact_as_its_digits() -> None:
    row = decode(b'{"rows": [{"userId": "a", "stateDur": 123456789012345678901234567890}]}')["rows"][0]
    assert row["stateDur"] == "123456789012345678901234567890"


@given(
    st.lists(
        st.integers(min_value=-(2**80), max_value=2**80)
        | st.text(alphabet="0123456789x\u0663 ", max_size=40)
        | st.floats(allow_nan=False, allow_infinity=False),
        max_size=8,
    )
)
def test_any_answer_decodes_as_jsonwire_loads_decodes_it(values: list[Any]) -> None:
    body = json.dumps({"rows": values}).encode()
    assert decode(body) == loads(body)


@given(st.binary(max_size=64) | st.text(alphabet="0123456789a\u0663 ", max_size=64).map(str.encode))
def test_the_digit_run_test_is_a_regular_expressions(body: bytes) -> None:
    expected = re.search(rb"\d{19}", body) is not None
    assert may_hold_big_ints(body) == expected
    assert may_hold_big_ints(memoryview(body)) == expected
    assert may_hold_big_ints(bytearray(body)) == expected


def test_row_event_ids_are_the_stable_ids_of_source_query_key_op_and_observation() -> None:
    first = diff_snapshot(USER, ScopeState(), [user("a"), user("b")], scope="sales", full=False, now=1.0)
    later = diff_snapshot(
        USER, first.state, [user("a", "active")], scope="sales", full=False, now=2.0
    )  # a changed, b removed
    snapshot = diff_snapshot(USER, later.state, [user("a", "active")], scope="sales", full=True, now=3.0)
    for result, full in ((first, False), (later, False), (snapshot, True)):
        events = row_events(
            USER, result.changes, source="src", scope="sales", observed=OBSERVED, snapshot=full
        )
        assert len(events) == len(result.changes) > 0
        for event in events:
            op = event.type.rsplit(".", 1)[1]
            key = event.data["key"]
            assert event.id == stable_id("src", "userActivity", key, op, OBSERVED.isoformat())
    ops = [e.type.rsplit(".", 1)[1] for e in row_events(USER, later.changes, **_where(False))]
    assert ops == ["RowChanged", "RowRemoved"]


def _where(snapshot: bool) -> dict[str, Any]:
    return {"source": "src", "scope": "sales", "observed": OBSERVED, "snapshot": snapshot}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02T03:00:00Z", datetime(2026, 1, 2, 3, tzinfo=UTC)),
        ("2026-01-02T03:00:00-07:00", datetime(2026, 1, 2, 3, tzinfo=timezone(timedelta(hours=-7)))),
        ("2026-01-02T03:00:00", datetime(2026, 1, 2, 3, tzinfo=UTC)),  # no offset: UTC
        ("", None),
        ("yesterday", None),
        (1767322800, None),
        (None, None),
    ],
)
def test_a_row_event_s_time_is_its_parsed_state_start(text: Any, expected: datetime | None) -> None:
    parsed = parse_time(text)
    assert parsed == expected
    assert parsed is None or parsed.utcoffset() == expected.utcoffset()  # type: ignore[union-attr]
    row = user("a", stateStartTime=text)
    result = diff_snapshot(USER, ScopeState(), [row], scope="sales", full=True, now=1.0)
    (event,) = row_events(USER, result.changes, **_where(True))
    assert event.time == (expected or OBSERVED)


def test_changes_built_by_their_slots_equal_constructed_ones() -> None:
    check = ROW_READERS["userActivity"].check
    rows = [user("a"), user("b"), user("c", dur="7")]
    prev = diff_snapshot(USER, ScopeState(), rows, scope="sales", full=True, now=1.0, check=check)
    added = {c.key[1]: c for c in prev.changes}
    cmp_a = {k: v for k, v in user("a").items() if k not in USER.ticking}
    assert added["a"] == RowChange("added", ("sales", "a"), user("a"), cmp_a)
    cmp_c = cmp_a | {"userId": "c", "preferredName": "Agent c"}
    assert added["c"] == RowChange(
        "added", ("sales", "c"), user("c", dur=7), cmp_c, deviations=("$.stateDur",)
    )
    new = [user("a", dur=5), user("c", dur="9")]  # a and c unchanged (ticking), b removed
    result = diff_snapshot(USER, prev.state, new, scope="sales", full=True, now=2.0, check=check)
    by_key = {c.key[1]: c for c in result.changes}
    assert by_key["a"] == RowChange("unchanged", ("sales", "a"), user("a", dur=5), cmp_a)
    assert by_key["c"] == RowChange(
        "unchanged",
        ("sales", "c"),
        user("c", dur=9),
        cmp_c,
        deviations=("$.stateDur",),
    )
    cmp_b = cmp_a | {"userId": "b", "preferredName": "Agent b"}
    assert by_key["b"] == RowChange("removed", ("sales", "b"), user("b"), cmp_b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        by_key["a"].change = "added"  # type: ignore[misc]
    assert hash(by_key["a"].key) == hash(("sales", "a"))


def test_an_agent_state_built_by_its_slots_equals_a_constructed_one() -> None:
    row = user("a", "notready", reasonId="lunch", teamId="")
    made = user_activity_state(row, ("sales", "a"), source="src", queues=("worktype/w1",))
    assert made == AgentState(
        vendor="alvaria",
        source="src",
        agent_id="a",
        state=State.NOT_READY,
        agent_name="Agent a",
        vendor_state="notready",
        reason_code="lunch",
        since=datetime(2026, 1, 2, 3, tzinfo=UTC),
        queue_ids=("team/sales", "worktype/w1"),
    )
    assert made.to_event().id == dataclasses.replace(made).to_event().id
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.state = State.BUSY  # type: ignore[misc]
    blank = user_activity_state(user("b", ""), ("b",), source="src")
    assert (blank.vendor_state, blank.state, blank.queue_ids) == (None, State.UNKNOWN, ("team/sales",))

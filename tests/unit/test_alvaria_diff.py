"""Snapshot diffing: add / change / remove / no-op, ticking fields, refresh snapshots, bad rows, ids,
deviating rows (tolerant reading)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamd.publish.encoding import encode, header_dict
from streamd.sources.alvaria.diff import DiffResult, ScopeState, diff_snapshot, needs_full
from streamd.sources.alvaria.models import EVENT_MODELS, ROW_MODELS, ROW_READERS
from streamd.sources.alvaria.rowevents import parse_time, row_events
from streamd.sources.alvaria.shapes import SHAPES
from streamd.telemetry import REGISTRY

USER = SHAPES["userActivity"]
OBSERVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def user(
    uid: str, state: str = "idle", *, dur: int = 0, start: str = "2026-01-02T03:00:00Z", **kw: Any
) -> dict[str, Any]:
    row = {
        "userId": uid,
        "teamId": "sales",
        "preferredName": f"Agent {uid}",
        "stateId": state,
        "reasonId": "",
        "stateStartTime": start,
        "interactionCount": 0,
        "stateDur": dur,
        "signOnDur": dur + 100,
    }
    return row | kw


def diff(prev: ScopeState, rows: list[Any], *, full: bool = False, **kw: Any) -> DiffResult:
    return diff_snapshot(USER, prev, rows, scope="sales", full=full, now=10.0, **kw)


def seeded(*rows: dict[str, Any]) -> ScopeState:
    return diff(ScopeState(), list(rows), full=True).state


def test_first_snapshot_reports_every_row_as_added() -> None:
    result = diff(ScopeState(), [user("a"), user("b")], full=True)
    assert [(c.change, c.key) for c in result.changes] == [
        ("added", ("sales", "a")),
        ("added", ("sales", "b")),
    ]
    assert result.state.last_full == 10.0


def test_unchanged_snapshot_is_a_no_op() -> None:
    prev = seeded(user("a"), user("b"))
    result = diff(prev, [user("a"), user("b")])
    assert result.changes == []
    assert result.bad == []


def test_ticking_durations_alone_are_not_a_change() -> None:
    prev = seeded(user("a", dur=5))
    result = diff(prev, [user("a", dur=65)])
    assert result.changes == []
    assert result.state.rows[("sales", "a")]["stateDur"] == 65  # the latest row is kept for snapshots


def test_changed_row_lists_changed_fields_and_previous_values() -> None:
    prev = seeded(user("a"))
    result = diff(prev, [user("a", "active", dur=3, start="2026-01-02T03:01:00Z", interactionCount=1)])
    (change,) = result.changes
    assert change.change == "changed"
    assert change.changed == ("stateId", "stateStartTime", "interactionCount")
    assert change.previous == {
        "stateId": "idle",
        "stateStartTime": "2026-01-02T03:00:00Z",
        "interactionCount": 0,
    }
    assert change.gap is False


def test_new_state_start_with_same_state_flags_a_missed_transition() -> None:
    prev = seeded(user("a", "active"))
    (change,) = diff(prev, [user("a", "active", start="2026-01-02T03:09:00Z")]).changes
    assert change.gap is True


def test_field_disappearing_is_a_change() -> None:
    prev = seeded(user("a", reasonName="Break"))
    (change,) = diff(prev, [user("a")]).changes
    assert change.changed == ("reasonName",)
    assert change.previous == {"reasonName": "Break"}


def test_added_and_removed_rows() -> None:
    prev = seeded(user("a"), user("b"))
    result = diff(prev, [user("b"), user("c")])
    assert [(c.change, c.key[1]) for c in result.changes] == [("added", "c"), ("removed", "a")]
    assert result.changes[1].row == user("a")  # a removal carries the last row seen
    assert set(result.state.rows) == {("sales", "b"), ("sales", "c")}


def test_full_refresh_reports_unchanged_rows_too() -> None:
    prev = seeded(user("a"), user("b"))
    result = diff(prev, [user("a"), user("b", "active")], full=True)
    assert [c.change for c in result.changes] == ["unchanged", "changed"]


def test_empty_answer_is_held_back_until_it_repeats() -> None:
    prev = seeded(user("a"))
    first = diff(prev, [], empty_polls_before_removal=3)
    assert first.held_empty
    assert first.changes == []
    second = diff(first.state, [], empty_polls_before_removal=3)
    assert second.held_empty
    assert second.changes == []
    third = diff(second.state, [], empty_polls_before_removal=3)
    assert [c.change for c in third.changes] == ["removed"]
    assert third.state.rows == {}


def test_rows_coming_back_reset_the_empty_streak() -> None:
    prev = seeded(user("a"))
    held = diff(prev, [], empty_polls_before_removal=2).state
    back = diff(held, [user("a")], empty_polls_before_removal=2)
    assert back.changes == []
    assert back.state.empty_streak == 0


def checked(prev: ScopeState, rows: list[Any], *, full: bool = False) -> DiffResult:
    return diff(prev, rows, full=full, check=ROW_READERS["userActivity"].check)


def test_a_deviating_row_is_published_coerced_with_its_deviations() -> None:
    deviating = user("a", interactionCount="many", stateDur="7", reasonName={"x": 1}, extra=[1])
    result = checked(ScopeState(), [deviating, user("b")])
    assert result.bad == []
    first, second = result.changes
    assert (first.change, first.key) == ("added", ("sales", "a"))
    assert first.row["stateDur"] == 7  # unambiguous: coerced
    assert first.row["interactionCount"] == "many"  # ambiguous: kept as received
    assert first.row["reasonName"] == {"x": 1}
    assert first.row["extra"] == [1]
    assert set(first.deviations) == {"$.interactionCount", "$.stateDur", "$.reasonName", "$.extra"}
    assert second.deviations == ()
    assert deviating["stateDur"] == "7"  # the answer itself is not modified
    assert result.state.rows[("sales", "a")] is deviating  # the state keeps the row as received


def test_a_new_representation_of_the_same_value_is_no_change() -> None:
    prev = checked(ScopeState(), [user("a", interactionCount=1)]).state
    assert checked(prev, [user("a", interactionCount="1")]).changes == []
    (change,) = checked(prev, [user("a", interactionCount="2")]).changes
    assert (change.changed, change.previous, change.row["interactionCount"]) == (
        ("interactionCount",),
        {"interactionCount": 1},
        2,
    )
    assert change.deviations == ("$.interactionCount",)
    (snapshot,) = checked(prev, [user("a", interactionCount="1")], full=True).changes
    assert (snapshot.change, snapshot.row["interactionCount"]) == ("unchanged", 1)
    assert snapshot.deviations == ("$.interactionCount",)


def test_previous_values_are_the_published_ones() -> None:
    prev = checked(ScopeState(), [user("a", interactionCount="1")]).state
    (change,) = checked(prev, [user("a", interactionCount=3)]).changes
    assert change.previous == {"interactionCount": 1}
    assert change.deviations == ()


def test_snapshot_rows_keep_their_deviations_and_a_ticking_field_is_still_checked() -> None:
    prev = checked(ScopeState(), [user("a"), user("b", reasonName=5)]).state
    assert prev.clean == {("sales", "a")}
    quiet = checked(prev, [user("a", stateDur="7"), user("b", reasonName=5)])  # not published, not checked
    assert quiet.changes == []
    snapshot = checked(quiet.state, [user("a", stateDur="8"), user("b", reasonName=5)], full=True)
    assert [(c.change, c.deviations) for c in snapshot.changes] == [
        ("unchanged", ("$.stateDur",)),
        ("unchanged", ("$.reasonName",)),
    ]
    assert snapshot.changes[0].row["stateDur"] == 8
    assert snapshot.changes[1].row["reasonName"] == "5"
    again = checked(snapshot.state, [user("a", stateDur=9), user("b", reasonName=5)], full=True)
    assert [c.deviations for c in again.changes] == [(), ("$.reasonName",)]


def test_every_ticking_field_is_a_documented_integer() -> None:
    for name, shape in SHAPES.items():
        for field_name in shape.ticking:
            assert ROW_MODELS[name].model_fields[field_name].annotation == int | None, (name, field_name)


def test_a_removed_row_is_published_as_last_seen_with_its_deviations() -> None:
    prev = checked(ScopeState(), [user("a", stateDur="7")]).state
    (removed,) = checked(prev, []).changes
    assert (removed.change, removed.row["stateDur"], removed.deviations) == ("removed", 7, ("$.stateDur",))


def test_deviation_paths_point_into_the_kafka_value_and_are_counted() -> None:
    result = checked(ScopeState(), [user("a", interactionCount="many", more={"x": 1})])
    before = REGISTRY.get_sample_value(
        "streamd_deviations_total", {"source": "dev1", "type": "alvaria.userActivity.RowAdded"}
    )
    (event,) = row_events(
        USER, result.changes, source="dev1", scope="sales", observed=OBSERVED, snapshot=False
    )
    after = REGISTRY.get_sample_value(
        "streamd_deviations_total", {"source": "dev1", "type": "alvaria.userActivity.RowAdded"}
    )
    assert event.deviations == ("$.row.interactionCount", "$.row.more")
    assert (after or 0) - (before or 0) == 1
    headers = header_dict(encode(event, "p.").headers)
    assert orjson.loads(headers["streamd_deviations"]) == ["$.row.interactionCount", "$.row.more"]
    clean = checked(ScopeState(), [user("a")])
    (plain,) = row_events(
        USER, clean.changes, source="dev1", scope="sales", observed=OBSERVED, snapshot=False
    )
    assert plain.deviations == ()
    assert "streamd_deviations" not in header_dict(encode(plain, "p.").headers)


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"teamId": "sales", "userId": {"id": "a"}}, "userId"),
        ({"teamId": "sales", "userId": True}, "userId"),
        ({"teamId": "sales", "userId": ""}, "userId"),
        ({"teamId": ["sales"], "userId": "a"}, "teamId"),
    ],
)
def test_a_row_without_a_usable_key_field_is_unroutable(row: dict[str, Any], field: str) -> None:
    result = checked(ScopeState(), [row])
    assert result.changes == []
    (bad,) = result.bad
    assert bad.error_type == "missing_key"
    assert f"without a usable {field}" in bad.reason
    assert checked(result.state, [row]).bad == []  # reported once while it stays the same


def test_a_number_key_is_its_text_and_the_published_row_says_so() -> None:
    (change,) = checked(ScopeState(), [user("a") | {"userId": 42}]).changes
    assert change.key == ("sales", "42")
    assert change.row["userId"] == "42"
    assert change.deviations == ("$.userId",)


def test_row_without_identity_is_bad_once() -> None:
    nameless = {"teamId": "sales", "stateId": "idle"}
    first = diff(ScopeState(), [nameless, "not a row"])
    assert [b.error_type for b in first.bad] == ["missing_key", "missing_key"]
    assert diff(first.state, [nameless, "not a row"]).bad == []


def test_duplicate_key_keeps_the_first_row() -> None:
    result = diff(ScopeState(), [user("a"), user("a", "active")])
    assert [b.error_type for b in result.bad] == ["duplicate_key"]
    assert result.state.rows[("sales", "a")]["stateId"] == "idle"


def test_missing_scope_field_falls_back_to_the_polled_scope() -> None:
    row = user("a")
    del row["teamId"]
    assert USER.key_of(row, "sales") == ("sales", "a")
    assert USER.key_of(row | {"teamId": ""}, "sales") == ("sales", "a")
    channel = SHAPES["channelActivity"]
    assert channel.key_of({"interactionTypeId": "inboundacd"}, "wt1") == ("wt1", "inboundacd", "")


def test_prev_state_is_not_mutated() -> None:
    prev = seeded(user("a"))
    before = dict(prev.rows)
    diff(prev, [user("a", "active"), user("b")])
    assert dict(prev.rows) == before


def test_needs_full_first_time_and_after_refresh_every() -> None:
    assert needs_full(ScopeState(), 0.0, 300.0)
    state = ScopeState(last_full=100.0)
    assert not needs_full(state, 399.0, 300.0)
    assert needs_full(state, 400.0, 300.0)


def test_row_events_types_keys_and_snapshot_flag() -> None:
    prev = seeded(user("a"), user("b"))
    result = diff(prev, [user("a", "active", start="2026-01-02T03:02:00Z"), user("c")])
    events = row_events(
        USER, result.changes, source="cloud1", scope="sales", observed=OBSERVED, snapshot=False
    )
    assert [e.type for e in events] == [
        "alvaria.userActivity.RowChanged",
        "alvaria.userActivity.RowAdded",
        "alvaria.userActivity.RowRemoved",
    ]
    assert {e.topic for e in events} == {"alvaria.userActivity"}
    assert [e.key for e in events] == ["cloud1:sales:a", "cloud1:sales:c", "cloud1:sales:b"]
    assert events[0].time == datetime(2026, 1, 2, 3, 2, tzinfo=UTC)  # the vendor's stateStartTime
    assert events[2].time == OBSERVED
    assert not any(e.snapshot for e in events)
    assert list(events[0].data["changed"]) == ["stateId", "stateStartTime"]


def test_refresh_snapshot_events_are_rows_marked_snapshot_and_removals_stay_removals() -> None:
    prev = seeded(user("a"), user("b"))
    result = diff(prev, [user("a")], full=True)
    events = row_events(
        USER, result.changes, source="cloud1", scope="sales", observed=OBSERVED, snapshot=True
    )
    assert [(e.type, e.snapshot) for e in events] == [
        ("alvaria.userActivity.Row", True),
        ("alvaria.userActivity.RowRemoved", False),
    ]
    assert events[0].data["change"] == "unchanged"


def test_event_ids_are_deterministic_per_row_version_and_poll() -> None:
    result = diff(ScopeState(), [user("a"), user("b")])

    def ids(observed: datetime, rows: Any = result.changes) -> list[str | None]:
        events = row_events(USER, rows, source="cloud1", scope="sales", observed=observed, snapshot=False)
        return [e.id for e in events]

    assert ids(OBSERVED) == ids(OBSERVED)
    assert len(set(ids(OBSERVED))) == 2
    later = OBSERVED.replace(second=6)
    assert set(ids(OBSERVED)).isdisjoint(ids(later))  # A -> B -> A -> B never reuses an id
    # the ticking fields do not change the id of a row version
    ticked = diff(ScopeState(), [user("a", dur=99), user("b", dur=99)]).changes
    assert ids(OBSERVED, ticked) == ids(OBSERVED)


def test_event_values_validate_against_the_published_models() -> None:
    result = diff(seeded(user("a")), [user("a", "active")])
    (event,) = row_events(USER, result.changes, source="s", scope="sales", observed=OBSERVED, snapshot=False)
    model = EVENT_MODELS[event.type]
    parsed = model.model_validate(event.data)
    assert parsed.row.stateId == "active"  # type: ignore[attr-defined]


def test_parse_time_accepts_zulu_offsets_and_rejects_garbage() -> None:
    assert parse_time("2018-02-07T11:29:46Z") == datetime(2018, 2, 7, 11, 29, 46, tzinfo=UTC)
    assert parse_time("2018-02-07T11:29:46-07:00") == datetime(2018, 2, 7, 18, 29, 46, tzinfo=UTC)
    assert parse_time("2018-02-07T11:29:46") == datetime(2018, 2, 7, 11, 29, 46, tzinfo=UTC)
    assert parse_time("") is None
    assert parse_time("soon") is None
    assert parse_time(5) is None


ids_ = st.sampled_from(["a", "b", "c", "d", "e"])
snapshots = st.lists(
    st.tuples(ids_, st.sampled_from(["idle", "active", "wrap"]), st.integers(0, 9)), max_size=6
)


@given(snapshots, snapshots)
def test_applying_the_changes_to_the_old_snapshot_gives_the_new_one(old: Any, new: Any) -> None:
    def rows(spec: Any) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for uid, state, dur in spec:
            seen.setdefault(uid, user(uid, state, dur=dur))
        return list(seen.values())

    prev = diff(ScopeState(), rows(old)).state
    result = diff(prev, rows(new))
    rebuilt = {k: {f: v for f, v in r.items() if f not in USER.ticking} for k, r in prev.rows.items()}
    for change in result.changes:
        if change.change == "removed":
            del rebuilt[change.key]
        else:
            rebuilt[change.key] = change.cmp
    assert rebuilt == dict(result.state.cmp)
    assert all(c.changed for c in result.changes if c.change == "changed")

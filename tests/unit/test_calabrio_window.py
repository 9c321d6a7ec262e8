"""Pure window arithmetic of the Calabrio activity poller: boundaries, overlap, restarts."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.sources.calabrio import window
from streamd.sources.calabrio.window import ActivityKey, Window, WindowCursor

OVERLAP = 60_000
SPAN = 3_600_000


def key(ts: int, agent: str = "101", state: str = "TALK") -> ActivityKey:
    return (agent, ts, state, None)


def poll(
    cursor: WindowCursor, now: int, returned: list[ActivityKey]
) -> tuple[list[ActivityKey], WindowCursor]:
    """One acknowledged cycle: plan, select, advance."""
    win = window.plan(cursor, now, OVERLAP, SPAN)
    published = window.select(cursor, win, returned)
    return published, window.advance(cursor, win, published, OVERLAP)


def test_first_window_reaches_lookback_back_without_overlap() -> None:
    cursor = window.start(1_000_000, 300_000)
    assert window.plan(cursor, 1_000_000, OVERLAP, SPAN) == Window(700_000, 1_000_000)


def test_later_windows_start_one_overlap_before_the_last_end() -> None:
    cursor = WindowCursor(end=1_000_000)
    assert window.plan(cursor, 1_010_000, OVERLAP, SPAN) == Window(940_000, 1_010_000)


def test_window_is_capped_by_max_span_and_never_passes_now() -> None:
    cursor = WindowCursor(end=0)
    win = window.plan(cursor, 10 * SPAN, OVERLAP, SPAN)
    assert win == Window(-OVERLAP, SPAN - OVERLAP)
    assert window.plan(WindowCursor(end=5_000), 4_000, 0, SPAN).empty


def test_activity_exactly_at_window_end_is_published_once_in_the_next_window() -> None:
    cursor = WindowCursor(end=1_000_000)
    # toTime is exclusive: the server does not return ts == 1_060_000 for [940_000, 1_060_000)
    first, cursor = poll(cursor, 1_060_000, [key(1_000_500)])
    assert first == [key(1_000_500)]
    second, cursor = poll(cursor, 1_070_000, [key(1_000_500), key(1_060_000)])
    assert second == [key(1_060_000)]
    third, _ = poll(cursor, 1_080_000, [key(1_060_000)])
    assert third == []


def test_activity_exactly_at_the_overlap_start_is_not_republished() -> None:
    cursor = WindowCursor(end=1_000_000)
    _, cursor = poll(cursor, 1_060_000, [key(1_000_000)])
    # the next window starts exactly at 1_060_000 - OVERLAP = 1_000_000 (inclusive)
    assert window.plan(cursor, 1_070_000, OVERLAP, SPAN).from_ms == 1_000_000
    again, _ = poll(cursor, 1_070_000, [key(1_000_000)])
    assert again == []


def test_late_activity_inside_the_overlap_is_published() -> None:
    cursor = WindowCursor(end=1_000_000)
    _, cursor = poll(cursor, 1_060_000, [key(1_050_000)])
    late = key(1_030_000, state="HOLD")  # happened in the last window, visible only now
    published, _ = poll(cursor, 1_070_000, [late, key(1_050_000)])
    assert published == [late]


def test_state_begun_before_from_is_dropped_after_the_first_window() -> None:
    cursor = WindowCursor(end=1_000_000)
    before = key(900_000, state="HOLD")  # returned because the agent left it inside the window
    published, _ = poll(cursor, 1_060_000, [before, key(1_010_000)])
    assert published == [key(1_010_000)]


def test_first_window_publishes_states_begun_before_it() -> None:
    cursor = window.start(1_000_000, 60_000)
    published, cursor = poll(cursor, 1_000_000, [key(900_000, state="HOLD"), key(950_000)])
    assert published == [key(900_000, state="HOLD"), key(950_000)]
    assert not cursor.initial


def test_duplicates_inside_one_response_are_published_once() -> None:
    cursor = WindowCursor(end=1_000_000)
    published, _ = poll(cursor, 1_060_000, [key(1_010_000), key(1_010_000)])
    assert published == [key(1_010_000)]


def test_seen_keys_are_pruned_to_the_next_overlap() -> None:
    cursor = WindowCursor(end=1_000_000)
    _, cursor = poll(cursor, 1_060_000, [key(1_001_000), key(1_059_000)])
    _, cursor = poll(cursor, 1_200_000, [])
    assert cursor.seen == frozenset()
    assert cursor.end == 1_200_000


def test_cursor_survives_a_restart_through_its_string_form() -> None:
    cursor = WindowCursor(
        end=1_060_000, seen=frozenset({key(1_050_000), ("7", 1_055_000, "NOT_READY_BUSY", "3")})
    )
    text = window.dump(cursor)
    assert window.load(text) == cursor
    assert window.dump(window.load(text) or cursor) == text
    assert window.load(window.dump(window.start(5, 1))) == WindowCursor(end=4, initial=True)


def test_a_late_activity_is_new_but_not_canonical() -> None:
    cursor = WindowCursor(end=1_000_000, latest=MappingProxyType({"101": 990_000}))
    keys = [key(980_000), key(985_000, "102"), key(995_000), key(995_000, state="HOLD"), key(999_000)]
    assert window.canonical(cursor, keys) == [False, True, True, False, True]


def test_the_newest_published_timestamp_per_agent_moves_with_the_cursor_only() -> None:
    cursor = WindowCursor(end=1_000_000, latest=MappingProxyType({"101": 990_000, "103": 5}))
    win = window.plan(cursor, 1_010_000, OVERLAP, SPAN)
    moved = window.advance(cursor, win, [key(995_000), key(980_000), key(1_001_000, "102")], OVERLAP)
    assert dict(moved.latest) == {"101": 995_000, "102": 1_001_000, "103": 5}
    assert dict(cursor.latest) == {"101": 990_000, "103": 5}  # the old cursor is unchanged
    assert window.advance(moved, win, [key(900_000)], OVERLAP).latest == moved.latest  # late: no regress


def test_the_newest_timestamps_survive_a_restart_and_an_old_cursor_still_loads() -> None:
    cursor = WindowCursor(end=1_060_000, seen=frozenset({key(1_050_000)}), latest=MappingProxyType({"7": 3}))
    assert window.load(window.dump(cursor)) == cursor
    before = '{"v": 1, "end": 1060000, "initial": false, "seen": [["101", 1050000, "TALK", null]]}'
    assert window.load(before) == WindowCursor(end=1_060_000, seen=frozenset({key(1_050_000)}))


def test_unreadable_cursor_loads_as_none() -> None:
    for text in (
        None,
        "",
        "nope",
        '{"v": 99, "end": 1}',
        '{"v": 1}',
        '{"v": 1, "end": 1, "seen": [[1]]}',
        '{"v": 2, "end": 1, "latest": {"7": "soon"}}',
        '{"v": 2, "end": 1, "latest": [1]}',
    ):
        assert window.load(text) is None


# --- property: every activity once, whatever the poll times, delays and restarts -------------

Activity = tuple[str, int, int]  # agent, timestamp, visible_at


def serve(activities: list[Activity], win: Window, now: int) -> list[ActivityKey]:
    """What the API returns: [from, to) plus the state left inside the window (002 L4590-4603)."""
    out: list[ActivityKey] = []
    for agent in sorted({a for a, _, _ in activities}):
        visible = sorted(ts for a, ts, vis in activities if a == agent and vis <= now)
        inside = [ts for ts in visible if win.from_ms <= ts < win.to_ms]
        if inside:
            before = [ts for ts in visible if ts < win.from_ms]
            out += [key(ts, agent) for ts in ([before[-1]] if before else []) + inside]
    return out


@settings(max_examples=150, deadline=None)
@given(
    raw=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 400_000), st.integers(0, OVERLAP)),
        max_size=40,
        unique_by=lambda t: (t[0], t[1]),
    ),
    steps=st.lists(st.tuples(st.integers(1, 90_000), st.booleans()), min_size=1, max_size=30),
)
def test_every_activity_is_published_exactly_once(
    raw: list[tuple[str, int, int]], steps: list[tuple[int, bool]]
) -> None:
    start = 100_000
    activities = [(a, start + ts, start + ts + delay) for a, ts, delay in raw]
    now = start
    cursor = window.start(now, 0)
    published: list[ActivityKey] = []
    states: dict[str, list[int]] = {}  # the canonical states published, per agent

    def publish(new: list[ActivityKey]) -> None:
        new = sorted(new, key=lambda k: (k[1], k[0]))
        published.extend(new)
        for k, canonical in zip(new, window.canonical(cursor, new), strict=True):
            if canonical:
                states.setdefault(k[0], []).append(k[1])

    for advance_by, restart in steps:
        now += advance_by
        win = window.plan(cursor, now, OVERLAP, SPAN)
        new = window.select(cursor, win, serve(activities, win, now))
        publish(new)
        cursor = window.advance(cursor, win, new, OVERLAP)
        if restart:
            cursor = window.load(window.dump(cursor)) or cursor
    # a final poll long after everything became visible
    now = max([now, *(vis for _, _, vis in activities)]) + OVERLAP
    while True:
        win = window.plan(cursor, now, OVERLAP, SPAN)
        new = window.select(cursor, win, serve(activities, win, now))
        publish(new)
        cursor = window.advance(cursor, win, new, OVERLAP)
        if win.to_ms >= now:
            break
    expected = sorted(key(ts, a) for a, ts, _ in activities if ts >= start)
    assert sorted(published) == expected
    assert len(published) == len(set(published))
    for agent, timestamps in states.items():  # an agent's state never goes back in time ...
        assert timestamps == sorted(set(timestamps))
        assert timestamps[-1] == max(ts for a, ts, _ in activities if a == agent)  # ... and ends newest

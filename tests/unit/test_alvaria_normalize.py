"""Canonical mapping and typed models, on the seed's own example payloads (seed 003)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from streamd.errors import NormalizationError
from streamd.events import AgentState, QueueMetric, State
from streamd.sources.alvaria.agents import STATE_TABLE, map_state, presence_events, user_activity_events
from streamd.sources.alvaria.diff import RowChange, ScopeState, diff_snapshot
from streamd.sources.alvaria.models import (
    EVENT_MODELS,
    ChannelActivityRow,
    ListActivity,
    PresenceUser,
    QueryDataList,
    TeamActivityRow,
    UserActivityRow,
    UsersCollection,
)
from streamd.sources.alvaria.normalize import (
    TEAM_COUNTERS,
    channel_activity_events,
    longest_wait_seconds,
    queue_age_events,
    team_activity_events,
)
from streamd.sources.alvaria.scope_events import AgentWorkTypes
from streamd.sources.alvaria.shapes import SHAPES

OBSERVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# Verbatim from seed 003 (the 200 examples of each endpoint).
SEED_LIST: dict[str, Any] = {
    "kind": "via#listActivity",
    "contactList": "ContactList1",
    "recordsAvailable": 100,
    "recordsAttempted": 100,
    "recordsInActive": 100,
    "callsBusy": 25,
    "passcountPenetration": 30,
    "passcountSaturation": 70,
    "listPenetration": 70,
    "listSaturation": 40,
}
SEED_TEAM: dict[str, Any] = {
    "kind": "via#queryDataList",
    "totalItems": 2,
    "rows": [
        {
            "teamId": "salesTeam",
            "teamName": "Sales Team",
            "notReadyCount": 0,
            "parkCount": 0,
            "parkWarningCount": 0,
            "idleCount": 1,
            "pendingActiveCount": 0,
            "activeCount": 0,
            "wrapCount": 0,
            "wrapWarningCount": 0,
            "multiLineCount": 0,
            "holdCount": 0,
            "previewCount": 0,
        }
    ],
}
SEED_USER: dict[str, Any] = {
    "kind": "via#queryDataList",
    "totalItems": 2,
    "rows": [
        {
            "userId": "Keran123",
            "teamId": "salseTeam",
            "preferredName": "Keran Bloggs",
            "teamName": "Sales team",
            "signOnTime": "2018-02-07T11:29:46Z",
            "stateId": "active",
            "stateName": "Active",
            "stateStartTime": "2018-02-07T11:29:46Z",
            "reasonId": "break",
            "reasonName": "",
            "interactionCount": 1,
            "signOnTimeLocal": "2018-02-07T11:29:46-07:00",
            "stateStartTimeLocal": "2018-02-07T11:29:46-07:00",
            "stateDur": 5,
            "signOnDur": 664,
        }
    ],
}
SEED_CHANNEL: dict[str, Any] = {
    "kind": "via#queryDataList",
    "totalItems": 2,
    "rows": [
        {
            "interactionTypeId": "InboundEmail",
            "channelTypeId": "email",
            "workTypeId": "worktype30_id",
            "interactionTypeName": "Inbound Email",
            "channelTypeName": "Email",
            "workTypeName": "workType30",
            "dialCount": 0,
            "activeCount": 0,
            "queueCount": 0,
            "selfServiceCount": 0,
            "previewCount": 0,
            "holdCount": 0,
            "inactiveCount": 0,
            "wrapCount": 0,
            "ringCount": 0,
            "longestWaitingQueueTime": "2018-02-07T11:29:46Z",
            "selfServiceDur": 5,
            "queueDur": 5,
            "activeDur": 0,
            "previewDur": 0,
            "maxQueueDur": 0,
        }
    ],
}
SEED_PRESENCE: dict[str, Any] = {
    "kind": "via#presenceDataList",
    "users": [
        {
            "userId": "Keran123",
            "firstName": "Mahesh",
            "lastName": "Kumar",
            "ehubSessionId": 2323,
            "emailAddress": "agent@alvaria.com",
        }
    ],
    "totalItems": 1,
}
SEED_STATE_IDS = [
    "uninitialized",
    "active",
    "exception",
    "held",
    "idle",
    "loggedoff",
    "loggedon",
    "multiline",
    "notready",
    "park",
    "parkwarning",
    "pendingactive",
    "preview",
    "reserved",
    "wrap",
    "wrapwarning",
    "usercleared",
]


def added(row: dict[str, Any], query: str = "userActivity") -> RowChange:
    key = SHAPES[query].key_of(row, None)
    assert key is not None
    return RowChange("added", key, row, row)


def test_seed_examples_validate_with_every_field_typed() -> None:
    assert ListActivity.model_validate(SEED_LIST).recordsInActive == 100
    team = TeamActivityRow.model_validate(QueryDataList.model_validate(SEED_TEAM).rows[0])
    assert team.idleCount == 1
    user = UserActivityRow.model_validate(SEED_USER["rows"][0])
    assert user.stateStartTime == datetime(2018, 2, 7, 11, 29, 46, tzinfo=UTC)
    assert user.signOnTimeLocal is not None
    assert user.signOnTimeLocal.utcoffset() is not None
    channel = ChannelActivityRow.model_validate(SEED_CHANNEL["rows"][0])
    assert channel.channelTypeId == "email"  # outside the seed's own enum: enums are open
    presence = PresenceUser.model_validate(UsersCollection.model_validate(SEED_PRESENCE).users[0])
    assert presence.ehubSessionId == "2323"  # schema says string, the example sends an integer
    assert presence.emailAddress == "agent@alvaria.com"


def test_every_documented_field_is_a_model_field() -> None:
    for model, example in (
        (ListActivity, SEED_LIST),
        (TeamActivityRow, SEED_TEAM["rows"][0]),
        (UserActivityRow, SEED_USER["rows"][0]),
        (ChannelActivityRow, SEED_CHANNEL["rows"][0]),
        (PresenceUser, SEED_PRESENCE["users"][0]),
    ):
        assert set(example) <= set(model.model_fields), model.__name__


def test_blank_date_means_none_and_unknown_fields_are_kept() -> None:
    row = ChannelActivityRow.model_validate({"longestWaitingQueueTime": "", "newField": 1})
    assert row.longestWaitingQueueTime is None
    assert row.model_extra == {"newField": 1}


def test_event_models_cover_every_query_and_change() -> None:
    assert len(EVENT_MODELS) == 20
    assert "alvaria.presence.RowRemoved" in EVENT_MODELS
    assert "alvaria.userActivity.Row" in EVENT_MODELS


def test_seed_user_row_maps_to_busy_agent_state() -> None:
    (event,) = user_activity_events(
        added(SEED_USER["rows"][0]), source="cloud1", observed=OBSERVED, snapshot=False
    )
    state = event.data
    assert isinstance(state, AgentState)
    assert (state.agent_id, state.state, state.vendor_state, state.reason_code) == (
        "Keran123",
        State.BUSY,
        "active",
        "break",
    )
    assert state.agent_name == "Keran Bloggs"
    assert state.since == datetime(2018, 2, 7, 11, 29, 46, tzinfo=UTC)
    assert event.key == "cloud1:Keran123"
    assert event.topic == "agent-state"


@pytest.mark.parametrize("state_id", SEED_STATE_IDS)
def test_every_seed_state_id_has_a_mapping(state_id: str) -> None:
    assert state_id in STATE_TABLE
    assert map_state(state_id.upper()) is STATE_TABLE[state_id]  # compared case-insensitively


def test_unknown_state_is_unknown_and_keeps_the_vendor_string() -> None:
    row = SEED_USER["rows"][0] | {"stateId": "meditating"}
    (event,) = user_activity_events(added(row), source="s", observed=OBSERVED, snapshot=False)
    assert (event.data.state, event.data.vendor_state) == (State.UNKNOWN, "meditating")
    assert map_state(None) is State.UNKNOWN


def test_state_map_overrides_the_table() -> None:
    assert map_state("Park", {"park": State.AVAILABLE}) is State.AVAILABLE
    assert map_state("idle", {"park": State.AVAILABLE}) is State.AVAILABLE
    assert map_state("notready", {"park": State.AVAILABLE}) is State.NOT_READY


def test_interaction_count_change_alone_gives_no_agent_state() -> None:
    row = SEED_USER["rows"][0]
    change = RowChange("changed", ("k",), row, row, ("interactionCount",), {"interactionCount": 0})
    assert user_activity_events(change, source="s", observed=OBSERVED, snapshot=False) == []
    state_change = RowChange("changed", ("k",), row, row, ("stateId",), {"stateId": "idle"})
    assert len(user_activity_events(state_change, source="s", observed=OBSERVED, snapshot=False)) == 1


def test_removed_user_row_gives_no_agent_state_but_snapshot_rows_do() -> None:
    row = SEED_USER["rows"][0]
    assert (
        user_activity_events(
            RowChange("removed", ("k",), row, row), source="s", observed=OBSERVED, snapshot=False
        )
        == []
    )
    unchanged = RowChange("unchanged", ("k",), row, row)
    (event,) = user_activity_events(unchanged, source="s", observed=OBSERVED, snapshot=True)
    assert event.snapshot


def test_user_row_without_user_id_is_a_normalization_error() -> None:
    nameless = {"stateId": "idle"}
    change = RowChange("added", ("k",), nameless, nameless)
    with pytest.raises(NormalizationError) as info:
        user_activity_events(change, source="s", observed=OBSERVED, snapshot=False)
    assert info.value.error_type == "missing_field"


def test_seed_channel_row_gives_every_metric() -> None:
    events = channel_activity_events(
        added(SEED_CHANNEL["rows"][0], "channelActivity"), source="c", observed=OBSERVED, snapshot=False
    )
    metrics = {e.data.metric: e.data for e in events}
    assert len(metrics) == 15
    queue = metrics["waiting"]
    assert isinstance(queue, QueueMetric)
    assert queue.queue_id == "worktype/worktype30_id/InboundEmail/email"
    assert queue.queue_name == "workType30 / Inbound Email / Email"
    assert (queue.value, queue.unit) == (0, "contacts")  # a zero count is a value, not a missing one
    assert (metrics["longest_wait_seconds"].value, metrics["longest_wait_seconds"].unit) == (
        SEED_CHANNEL["rows"][0]["maxQueueDur"],
        "seconds",
    )
    assert "queueCount" not in metrics
    assert "maxQueueDur" not in metrics
    assert (metrics["queueDur"].value, metrics["queueDur"].unit) == (5, "seconds")
    assert metrics["longestWaitingQueueTime"].value == "2018-02-07T11:29:46Z"
    assert {e.topic for e in events} == {"queue-metrics"}
    assert len({e.key for e in events}) == 15


def test_longest_wait_is_max_queue_dur_else_the_age_of_the_longest_waiting_contact() -> None:
    seed = SEED_CHANNEL["rows"][0]
    assert longest_wait_seconds(seed, OBSERVED) == seed["maxQueueDur"]
    without = {k: v for k, v in seed.items() if k != "maxQueueDur"}
    waiting_since = "2026-01-02T03:03:20Z"  # 45 s before OBSERVED
    assert longest_wait_seconds(without | {"longestWaitingQueueTime": waiting_since}, OBSERVED) == 45
    assert longest_wait_seconds(without | {"longestWaitingQueueTime": ""}, OBSERVED) == 0  # none waiting
    assert longest_wait_seconds(without | {"longestWaitingQueueTime": "soon"}, OBSERVED) is None
    assert (
        longest_wait_seconds(seed | {"maxQueueDur": "n/a", "longestWaitingQueueTime": None}, OBSERVED) is None
    )


def test_an_unchanged_channel_row_still_gives_its_ticking_longest_wait() -> None:
    row = SEED_CHANNEL["rows"][0] | {"maxQueueDur": 75}
    (event,) = queue_age_events(("wt", "InboundEmail", "email"), row, source="c", observed=OBSERVED)
    metric = event.data
    assert isinstance(metric, QueueMetric)
    assert (metric.queue_id, metric.metric, metric.value, metric.unit) == (
        "worktype/wt/InboundEmail/email",
        "longest_wait_seconds",
        75,
        "seconds",
    )
    assert (event.key, event.snapshot, metric.as_of) == (
        "c:worktype/wt/InboundEmail/email:longest_wait_seconds",
        False,
        OBSERVED,
    )
    assert queue_age_events(("k",), {"maxQueueDur": [1]}, source="c", observed=OBSERVED) == []


def test_an_added_channel_row_without_max_queue_dur_gets_the_age_of_its_oldest_contact() -> None:
    row = {k: v for k, v in SEED_CHANNEL["rows"][0].items() if k != "maxQueueDur"}
    row["longestWaitingQueueTime"] = "2026-01-02T03:04:00Z"
    events = channel_activity_events(
        added(row, "channelActivity"), source="c", observed=OBSERVED, snapshot=False
    )
    assert {e.data.metric: e.data.value for e in events}["longest_wait_seconds"] == 5


def test_changed_channel_row_gives_changed_counters_plus_current_durations() -> None:
    row = SEED_CHANNEL["rows"][0] | {"queueCount": 2}
    change = RowChange("changed", ("k",), row, row, ("queueCount",), {"queueCount": 0})
    events = channel_activity_events(change, source="c", observed=OBSERVED, snapshot=False)
    assert [e.data.metric for e in events] == [
        "waiting",
        "selfServiceDur",
        "queueDur",
        "activeDur",
        "previewDur",
        "longest_wait_seconds",
    ]
    assert events[0].data.value == 2


def test_seed_team_row_gives_eleven_counters_and_the_canonical_agent_counts() -> None:
    row = SEED_TEAM["rows"][0]
    change = added(row, "teamActivity")
    events = team_activity_events(change, source="c", observed=OBSERVED, snapshot=True)
    assert len(events) == 13
    by_metric = {e.data.metric: e.data for e in events}
    idle = by_metric["agents_available"]
    assert (idle.queue_id, idle.queue_name, idle.value, idle.unit) == (
        "team/salesTeam",
        "Sales Team",
        1,
        "agents",
    )
    assert "idleCount" not in by_metric
    busy = sum(
        row[f] for f in ("activeCount", "pendingActiveCount", "holdCount", "multiLineCount", "previewCount")
    )
    assert (by_metric["agents_busy"].value, by_metric["agents_busy"].unit) == (busy, "agents")
    assert by_metric["agents_logged_in"].value == sum(row[f] for f in TEAM_COUNTERS)
    assert by_metric["agents_logged_in"].value > busy
    assert all(e.snapshot for e in events)


def test_removed_team_row_gives_no_metrics() -> None:
    row = SEED_TEAM["rows"][0]
    assert (
        team_activity_events(
            RowChange("removed", ("k",), row, row), source="c", observed=OBSERVED, snapshot=False
        )
        == []
    )


@pytest.mark.parametrize("figure", [{"n": 1}, "many", True, [1]])
def test_an_unusable_figure_is_skipped_and_the_other_metrics_still_flow(figure: Any) -> None:
    row = SEED_TEAM["rows"][0] | {"idleCount": figure}
    events = team_activity_events(added(row, "teamActivity"), source="c", observed=OBSERVED, snapshot=False)
    metrics = {e.data.metric for e in events}
    assert "agents_available" not in metrics
    assert "idleCount" not in metrics
    assert "agents_logged_in" not in metrics  # a sum over an unusable figure is not published
    assert "agents_busy" in metrics
    assert len(events) == 11


def test_a_timestamp_figure_must_be_a_date_time_or_blank() -> None:
    def timestamps(value: Any) -> list[Any]:
        row = SEED_CHANNEL["rows"][0] | {"longestWaitingQueueTime": value}
        events = channel_activity_events(
            added(row, "channelActivity"), source="c", observed=OBSERVED, snapshot=False
        )
        return [e.data.value for e in events if e.data.metric == "longestWaitingQueueTime"]

    assert timestamps("2018-02-07T11:29:46Z") == ["2018-02-07T11:29:46Z"]
    assert timestamps("") == [""]
    assert timestamps(None) == [None]
    assert timestamps("soon") == []
    assert timestamps(5) == []


def test_queue_ids_come_from_the_row_key_so_a_missing_id_falls_back_to_the_scope() -> None:
    row = {k: v for k, v in SEED_CHANNEL["rows"][0].items() if k != "workTypeId"}
    key = SHAPES["channelActivity"].key_of(row, "wt9")
    assert key is not None
    events = channel_activity_events(
        RowChange("added", key, row, row), source="c", observed=OBSERVED, snapshot=False
    )
    assert {e.data.queue_id for e in events} == {"worktype/wt9/InboundEmail/email"}


def test_unusable_optional_agent_fields_are_left_out_and_the_state_still_flows() -> None:
    row = SEED_USER["rows"][0] | {
        "preferredName": {"first": "Keran"},
        "stateId": ["active"],
        "reasonId": 7,
        "stateStartTime": "soon",
    }
    (event,) = user_activity_events(added(row), source="s", observed=OBSERVED, snapshot=False)
    state = event.data
    assert (state.agent_id, state.state) == ("Keran123", State.UNKNOWN)
    assert (state.agent_name, state.vendor_state, state.reason_code, state.since) == (None, None, None, None)
    assert event.time == OBSERVED


def test_presence_logoff_is_logged_out() -> None:
    row = SEED_PRESENCE["users"][0]
    removed = RowChange("removed", ("Keran123",), row, row)
    (event,) = presence_events(removed, source="s", observed=OBSERVED, snapshot=False, report_logon=False)
    assert (event.data.state, event.data.vendor_state, event.data.agent_name) == (
        State.LOGGED_OUT,
        "LoggedOff",
        "Mahesh Kumar",
    )


def test_presence_removal_from_one_worktype_while_on_another_is_no_logoff() -> None:
    row = SEED_PRESENCE["users"][0]
    removed = RowChange("removed", ("Keran123",), row, row)
    events = presence_events(
        removed, source="s", observed=OBSERVED, snapshot=False, report_logon=True, logged_on_elsewhere=True
    )
    assert events == []


def test_presence_logon_only_when_user_activity_is_not_polled() -> None:
    row = SEED_PRESENCE["users"][0]
    assert (
        presence_events(added(row), source="s", observed=OBSERVED, snapshot=False, report_logon=False) == []
    )
    (event,) = presence_events(added(row), source="s", observed=OBSERVED, snapshot=False, report_logon=True)
    assert (event.data.state, event.data.vendor_state) == (State.UNKNOWN, "LoggedOn")


def test_presence_relogin_is_a_changed_session_id() -> None:
    shape = SHAPES["presence"]
    row = SEED_PRESENCE["users"][0]
    prev = diff_snapshot(shape, ScopeState(), [row], scope=None, full=True, now=0.0).state
    result = diff_snapshot(shape, prev, [row | {"ehubSessionId": 2324}], scope=None, full=False, now=1.0)
    (change,) = result.changes
    assert change.changed == ("ehubSessionId",)
    (event,) = presence_events(change, source="s", observed=OBSERVED, snapshot=False, report_logon=True)
    assert event.data.vendor_state == "LoggedOn"


def test_agent_queue_ids_are_the_team_then_the_known_worktypes() -> None:
    row = SEED_USER["rows"][0]
    (event,) = user_activity_events(
        added(row), source="s", observed=OBSERVED, snapshot=False, work_types=("wt1", "wt2")
    )
    assert event.data.queue_ids == (f"team/{row['teamId']}", "worktype/wt1", "worktype/wt2")
    (alone,) = user_activity_events(added(row), source="s", observed=OBSERVED, snapshot=False)
    assert alone.data.queue_ids == (f"team/{row['teamId']}",)


def test_a_presence_logon_carries_the_polled_and_the_known_worktypes_a_logoff_none() -> None:
    row = SEED_PRESENCE["users"][0]

    def logon(**kw: Any) -> tuple[str, ...]:
        (event,) = presence_events(
            added(row, "presence"), source="s", observed=OBSERVED, snapshot=False, report_logon=True, **kw
        )
        return tuple(event.data.queue_ids)

    assert logon() == ()  # org-wide presence knows no worktype
    assert logon(work_type_id="wt2") == ("worktype/wt2",)
    assert logon(work_type_id="wt2", work_types=("wt1", "wt2")) == ("worktype/wt1", "worktype/wt2")
    removed = RowChange("removed", ("Keran123",), row, row)
    (off,) = presence_events(
        removed, source="s", observed=OBSERVED, snapshot=False, report_logon=True, work_type_id="wt2"
    )
    assert off.data.queue_ids == ()


def test_agent_work_types_follow_the_presence_lists_each_user_is_on() -> None:
    shape = SHAPES["presence"]
    lists = {
        wt: diff_snapshot(shape, ScopeState(), users, scope=wt, full=True, now=0.0).state
        for wt, users in {"wt2": [{"userId": "u1"}, {"userId": "u2"}], "wt1": [{"userId": "u1"}]}.items()
    }
    known = AgentWorkTypes()
    known.update(lists)
    assert (known.of("u1"), known.of("u2"), known.of("u3")) == (("wt1", "wt2"), ("wt2",), ())
    known.update({"wt1": lists["wt1"]})  # u2 is on no list any more
    assert (known.of("u1"), known.of("u2")) == (("wt1",), ())


def test_agent_queue_ids_include_the_tiles_of_each_worktype() -> None:
    row = SEED_USER["rows"][0]
    channels = {"wt1": ("worktype/wt1/InboundEmail/email", "worktype/wt1/inboundacd/voice")}
    (event,) = user_activity_events(
        added(row),
        source="s",
        observed=OBSERVED,
        snapshot=False,
        work_types=("wt2", "wt1"),
        channels=channels,
    )
    assert event.data.queue_ids == (
        f"team/{row['teamId']}",
        "worktype/wt1",
        "worktype/wt1/InboundEmail/email",
        "worktype/wt1/inboundacd/voice",
        "worktype/wt2",  # no channelActivity row known for it: the worktype alone
    )
    (logon,) = presence_events(
        added(SEED_PRESENCE["users"][0], "presence"),
        source="s",
        observed=OBSERVED,
        snapshot=False,
        report_logon=True,
        work_type_id="wt1",
        channels=channels,
    )
    assert logon.data.queue_ids == ("worktype/wt1", *channels["wt1"])


def test_the_tiles_agents_carry_are_the_queue_ids_of_the_channel_metrics() -> None:
    shape = SHAPES["channelActivity"]
    rows = SEED_CHANNEL["rows"]
    state = diff_snapshot(shape, ScopeState(), rows, scope="wt", full=True, now=0.0)
    known = AgentWorkTypes()
    known.update_channels({"wt": state.state})
    metric_ids = {
        e.data.queue_id
        for change in state.changes
        for e in channel_activity_events(change, source="s", observed=OBSERVED, snapshot=True)
    }
    assert set(itertools.chain(*known.channels.values())) == metric_ids
    version = known.version
    known.update_channels({"wt": state.state})  # the same rows again: no change, no new version
    assert known.version == version
    known.update_channels({})
    assert (known.channels, known.version) == ({}, version + 1)

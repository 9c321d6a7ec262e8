"""Directory.enrich: reason labels, names, RTI agents, queue ids with pilots (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from streamd.events import AgentState, Event, State
from streamd.publish.memory import MemoryEmit
from streamd.sources.o2g.enrich import Directory, Enriching, config_groups, display_name, reason_labels
from streamd.sources.o2g.normalize import normalize, pilots_snapshot

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
T1 = datetime(2026, 1, 1, 8, 5, tzinfo=UTC)


def agent_event(login: str, sub: str = "READY", pg: str = "5001", **more: Any) -> dict[str, Any]:
    return {
        "eventName": "OnAgentStateChanged",
        "loginName": login,
        "state": {"mainState": "LOG_ON", "subState": sub, "pgNumber": pg, **more},
    }


def rti_agent(number: str, **attributes: Any) -> dict[str, Any]:
    return {
        "eventName": "OnAgentRtiChanged",
        "number": number,
        "name": "L" + number,
        "type": "Normal",
        **attributes,
    }


def states(events: list[Event]) -> list[AgentState]:
    return [e.data for e in events if isinstance(e.data, AgentState)]


def run(directory: Directory, obj: dict[str, Any], now: datetime = T0) -> list[Event]:
    return directory.enrich(normalize("pbx1", obj, now=now))


def test_the_seed_bodies_parse() -> None:
    seed_reasons = {  # 004 L13090-13100
        "number": "5",
        "reasons": [{"index": "1", "label": "Lunch"}, {"index": "2", "label": "Meeting"}, {"index": 3}],
    }
    assert reason_labels(seed_reasons) == {"1": "Lunch", "2": "Meeting"}
    assert reason_labels({"number": 0}) == {}
    seed_user = {
        "companyPhone": "70120",
        "firstName": "F70120",
        "lastName": "L70120",
        "loginName": "oxe70120",
    }
    assert display_name(seed_user) == "F70120 L70120"  # 004 L1305-1316
    assert display_name({"lastName": " Smith "}) == "Smith"
    assert display_name({"firstName": "", "lastName": None}) is None
    seed_config = {"type": "AGENT", "processingGroups": {"preferred": "70700", "groups": ["70700", "70701"]}}
    assert config_groups(seed_config) == ("70700", "70701")  # 004 L12347
    assert config_groups({"type": "AGENT"}) == ()
    assert config_groups({"processingGroups": {"groups": "70700"}}) == ()  # not a list: nothing guessed


def test_a_withdrawn_agent_carries_the_code_and_its_label_and_its_name() -> None:
    directory = Directory("pbx1")
    directory.labels = {"5001": {"1": "Lunch", "2": "Meeting"}}
    directory.names = {"oxe70100": "Ada Lovelace"}
    events = run(directory, agent_event("oxe70100", "WITHDRAW", withdrawReason=2))
    assert events[0].type == "o2g.agent.OnAgentStateChanged"
    assert events[0].data["state"]["withdrawReason"] == 2  # the vendor event keeps O2G's own fields
    (state,) = states(events)
    assert (state.state, state.reason_code, state.reason_label) == (State.NOT_READY, "2", "Meeting")
    assert state.agent_name == "Ada Lovelace"
    raw = normalize("pbx1", agent_event("oxe70100", "WITHDRAW", withdrawReason=2), now=T0)[1]
    assert events[1].id != raw.id  # the name and label are content: a new id (AgentState.to_event)
    assert events[1].id == state.to_event(time=raw.time, snapshot=raw.snapshot).id
    assert (events[1].time, events[1].key, events[1].topic) == (raw.time, raw.key, raw.topic)
    directory.names = {"oxe70100": "Ada King"}
    again = run(directory, agent_event("oxe70100", "WITHDRAW", withdrawReason=2))
    (renamed,) = [e for e in again if isinstance(e.data, AgentState)]
    assert renamed.id not in (raw.id, events[1].id)


def test_what_the_directory_does_not_know_stays_codes_and_logins() -> None:
    directory = Directory("pbx1")
    directory.labels = {"5002": {"2": "Meeting"}}  # another group's table
    plain = normalize("pbx1", agent_event("oxe70100", "WITHDRAW", withdrawReason=2), now=T0)
    events = directory.enrich(plain)
    assert events == plain
    (state,) = states(events)
    assert (state.reason_code, state.reason_label, state.agent_name) == ("2", None, None)


def test_queue_ids_are_the_agents_groups_then_the_pilots_that_serve_them() -> None:
    directory = Directory("pbx1")
    directory.groups = {"oxe70100": ("5002", "5001")}
    directory.pilots = {"5001": {"60142", "60141"}, "5002": {"60141"}, "5009": {"60149"}}
    (state,) = states(run(directory, agent_event("oxe70100", pg="5001")))
    assert state.queue_ids == ("5001", "5002", "60141", "60142")


def test_a_pilot_queueing_into_a_known_group_is_learnt_and_its_agents_are_published_again() -> None:
    directory = Directory("pbx1")
    run(directory, agent_event("oxe70100"), T0)
    run(directory, agent_event("oxe70101", "BUSY", pg="5002"), T0)
    queued = {
        "eventName": "OnPilotCallQueued",
        "pilot": "60141",
        "queue": "5001",
        "callRef": "1",
        "cause": "CAMP_ON",
    }
    events = run(directory, {**queued, "numberOfQueued": 1}, T1)
    assert [e.type for e in events] == [
        "o2g.pilot.OnPilotCallQueued",
        "streamd.agent.State",  # the link it taught, right after it
        "streamd.queue.Metric",
    ]
    (again,) = states(events)
    assert (again.agent_id, again.queue_ids, again.state, again.since) == (
        "oxe70100",
        ("5001", "60141"),
        State.AVAILABLE,
        T0,
    )
    assert directory.pilots == {"5001": {"60141"}}
    assert states(run(directory, queued, T1)) == []  # known already: nothing new
    unknown_queue = {**queued, "pilot": "60142", "queue": "7777"}
    assert states(run(directory, unknown_queue, T1)) == []
    assert "7777" not in directory.pilots
    (later,) = states(run(directory, agent_event("oxe70100", "BUSY"), T1))
    assert later.queue_ids == ("5001", "60141")


def test_a_call_a_pilot_distributes_to_an_agent_links_the_pilot_to_the_agents_group() -> None:
    directory = Directory("pbx1")
    directory.logins = {"70101": "oxe70101"}
    run(directory, agent_event("oxe70101", pg="5002"))
    removed = {
        "eventName": "OnPilotCallRemoved",
        "pilot": "60142",
        "releasingDevice": "60142",
        "newDestination": "70101",
        "callRef": "1",
        "cause": "DISTRIBUTED",
    }
    (state,) = states(run(directory, removed, T1))
    assert state.queue_ids == ("5002", "60142")
    assert states(run(directory, {**removed, "newDestination": "70999", "pilot": "60143"})) == []


def test_rti_agent_events_of_a_known_number_yield_canonical_states_under_the_login() -> None:
    directory = Directory("pbx1")
    directory.logins = {"60113": "oxe60113"}
    directory.labels = {"5001": {"1": "Lunch"}}
    events = run(directory, rti_agent("60113", serviceState="Assigned", phoneState="Idle", currentPG="5001"))
    assert events[0].type == "o2g.rti.OnAgentRtiChanged"
    (state,) = states(events)
    assert (state.agent_id, state.state, state.vendor_state, state.queue_ids) == (
        "oxe60113",
        State.AVAILABLE,
        "Assigned/Idle",
        ("5001",),
    )
    assert state.agent_name == "L60113"  # RTI's name while the user service has none
    assert states(run(directory, rti_agent("60113", nbOfServedACDCalls=4))) == []  # a counter: no state
    (busy,) = states(run(directory, rti_agent("60113", phoneState="AcdConversation"), T1))
    assert (busy.state, busy.since, busy.queue_ids) == (
        State.BUSY,
        T1,
        ("5001",),
    )  # merged with the earlier delta
    assert (
        states(run(directory, rti_agent("60113", serviceState="Assigned", phoneState="AcdConversation")))
        == []
    )
    (away,) = states(run(directory, rti_agent("60113", serviceState="Withdrawn", withdrawReason=1)))
    assert (away.state, away.reason_code, away.reason_label) == (State.NOT_READY, "1", "Lunch")
    assert states(run(directory, rti_agent("60999", serviceState="Assigned", phoneState="Idle"))) == []


def test_an_rti_state_the_agent_package_already_said_is_not_published_twice() -> None:
    directory = Directory("pbx1")
    directory.logins = {"70100": "oxe70100"}
    run(directory, agent_event("oxe70100", "BUSY"), T0)
    assert (
        states(run(directory, rti_agent("70100", serviceState="Assigned", phoneState="AcdRinging"), T1)) == []
    )
    (wrapup,) = states(run(directory, rti_agent("70100", phoneState="WrapUp"), T1))
    assert (wrapup.state, wrapup.queue_ids) == (
        State.AFTER_CALL_WORK,
        ("5001",),
    )  # the group the agent package said


def test_an_rti_agent_on_a_named_pilot_links_the_pilot_to_its_current_group() -> None:
    directory = Directory("pbx1")
    directory.logins = {"70100": "oxe70100"}
    directory.enrich(pilots_snapshot("pbx1", "1", {"pilotList": [{"number": "60141", "name": "PILOT_1"}]}))
    run(directory, agent_event("oxe70100"))
    events = run(directory, rti_agent("70100", pilotName="PILOT_1", currentPG="5001"))
    (state,) = states(events)
    assert state.queue_ids == ("5001", "60141")
    assert directory.pilots == {"5001": {"60141"}}


def test_a_refresh_that_learnt_more_republishes_only_the_agents_it_changes() -> None:
    directory = Directory("pbx1")
    run(directory, agent_event("oxe70100", "WITHDRAW", withdrawReason=3), T0)
    run(directory, agent_event("oxe70101"), T0)
    assert directory.republish() == []
    directory.labels = {"5001": {"3": "Coffee"}}
    directory.names = {"oxe70100": "Ada"}
    events = directory.republish()
    (state,) = states(events)
    assert (state.agent_id, state.agent_name, state.reason_label, state.since) == (
        "oxe70100",
        "Ada",
        "Coffee",
        T0,
    )
    assert events[0].time != T0
    assert not events[0].snapshot
    assert directory.republish() == []


@pytest.mark.anyio
async def test_the_enriching_emitter_enriches_both_ways_of_emitting() -> None:
    directory = Directory("pbx1")
    directory.names = {"oxe70100": "Ada"}
    memory = MemoryEmit()
    emit = Enriching(memory, directory)
    await emit(normalize("pbx1", agent_event("oxe70100"), snapshot=True))
    await emit.push(normalize("pbx1", agent_event("oxe70100", "BUSY")))
    got = states(memory.events)
    assert [(s.agent_name, s.state) for s in got] == [("Ada", State.AVAILABLE), ("Ada", State.BUSY)]
    assert [e.snapshot for e in memory.events] == [True, True, False, False]


def test_a_user_event_renames_the_agent_at_once_and_teaches_its_number() -> None:
    directory = Directory("pbx1")
    directory.names = {"oxe70100": "Ada"}
    run(directory, agent_event("oxe70100"), T0)
    changed = {
        "eventName": "OnUserInfoChanged",
        "loginName": "oxe70100",
        "user": {"loginName": "oxe70100", "firstName": "Ada", "lastName": "King", "companyPhone": "70100"},
    }
    events = run(directory, changed, T1)
    assert events[0].type == "o2g.user.OnUserInfoChanged"
    (state,) = states(events)
    assert (state.agent_name, state.since) == ("Ada King", T0)
    assert directory.logins == {"70100": "oxe70100"}
    created = {"eventName": "OnUserCreated", "user": {"loginName": "oxe70200", "lastName": "New"}}
    assert states(run(directory, created, T1)) == []  # not an agent seen yet: nothing to publish
    assert directory.names["oxe70200"] == "New"


def test_republished_states_pass_the_directory_again_unchanged_and_later_changes_still_apply() -> None:
    directory = Directory("pbx1")
    run(directory, agent_event("oxe70100", "WITHDRAW", withdrawReason=1), T0)
    directory.names = {"oxe70100": "Ada"}
    republished = directory.republish()
    assert directory.enrich(republished) == republished  # keep_fresh emits them through Enriching
    directory.names = {"oxe70100": "Ada King"}
    directory.labels = {"5001": {"1": "Lunch"}}
    (state,) = states(directory.republish())
    assert (state.agent_name, state.reason_label) == ("Ada King", "Lunch")

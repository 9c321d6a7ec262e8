"""normalize(): topics, types, keys, canonical events, unknown and invalid payloads, snapshots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamd.errors import NormalizationError
from streamd.events import AgentState, QueueMetric, State
from streamd.publish.encoding import encode, header_dict
from streamd.sources.o2g.models import EVENTS
from streamd.sources.o2g.normalize import (
    SNAPSHOT_AGENT_STATE,
    SNAPSHOT_PILOTS,
    agent_state_snapshot,
    normalize,
    pilots_snapshot,
    snapshot_events,
)
from streamd.telemetry import REGISTRY

FIXTURES = Path(__file__).parent.parent / "fixtures" / "o2g"


def fixture(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((FIXTURES / "events" / f"{name}.json").read_text())["event"]
    return event


def rest(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "rest" / name).read_text())["body"]
    return body


def unknown_count(source: str) -> float:
    value = REGISTRY.get_sample_value(
        "streamd_errors_total", {"source": source, "stage": "processing", "error_type": "unknown_event"}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("event", "key"),
    [
        ({"eventName": "OnCallRemoved", "loginName": "oxe1", "callRef": "77"}, "oxe1"),
        ({"eventName": "OnUserStateModified", "loginName": "oxe1", "state": "FREE"}, "oxe1"),
        ({"eventName": "OnComRecordsDeleted", "loginName": "oxe1"}, "oxe1"),
        ({"eventName": "OnUserInfoChanged", "user": {"loginName": "oxe2"}, "loginName": "oxe1"}, "oxe2"),
        ({"eventName": "OnUserInfoChanged", "user": {}, "loginName": "oxe1"}, "oxe1"),
        ({"eventName": "OnUserInfoChanged", "user": {}}, "unknown-user"),
        ({"eventName": "OnUserCreated", "user": {"loginName": "oxe3"}}, "oxe3"),
        ({"eventName": "OnUserDeleted", "loginName": "oxe3"}, "oxe3"),
        ({"eventName": "OnSupervisorHelpRequested", "loginName": "oxe4"}, "oxe4"),
        (
            {"eventName": "OnPilotCallRemoved", "pilot": "60141", "callRef": "9", "cause": "DISTRIBUTED"},
            "60141",
        ),
        ({"eventName": "OnCtiLinkDown", "nodeId": "7"}, "system"),
        ({"eventName": "OnPbxObjectInstanceDeleted", "objectName": "S", "objectId": "1", "nodeId": "7"}, "7"),
        ({"eventName": "OnQueueRtiChanged", "name": "Q", "number": "60131", "type": "Normal"}, "queue:60131"),
        ({"eventName": "OnAgentRtiChanged", "name": "A", "number": "60113", "type": "IVR"}, "agent:60113"),
        (
            {"eventName": "OnPGAgentRtiChanged", "name": "G", "number": "60121", "type": "Agent"},
            "pgAgent:60121",
        ),
        (
            {"eventName": "OnPGOtherRtiChanged", "name": "O", "number": "60122", "type": "Guide"},
            "pgOther:60122",
        ),
        ({"eventName": "OnPilotRtiChanged", "name": "P", "number": "60141"}, "pilot:60141"),
        ({"eventName": "OnAcdStatsProgress", "supervisor": "60100", "step": "COLLECT"}, "60100"),
        ({"eventName": "OnToneGeneratedStop", "rsiPoint": "65000", "callRef": "5"}, "65000"),
        ({"eventName": "OnToneGeneratedStop", "callRef": "5"}, "5"),
        ({"eventName": "OnRouteEnd"}, "rsi"),
    ],
)
def test_vendor_event_topic_type_and_key(event: dict[str, Any], key: str) -> None:
    vendor = normalize("pbx1", event)[0]
    package = EVENTS[event["eventName"]].package
    assert vendor.topic == f"o2g.{package}"
    assert vendor.type == f"o2g.{package}.{event['eventName']}"
    assert vendor.key == f"pbx1:{key}"
    assert vendor.source == "pbx1"
    assert vendor.data is event  # the raw dict: every vendor field kept
    assert vendor.snapshot is False


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_every_seed_example_normalizes(name: str) -> None:
    events = normalize("pbx1", fixture(name))
    assert events[0].type.endswith(f".{name}")
    assert events[0].time.tzinfo is not None


def test_user_info_changed_goes_to_the_user_topic() -> None:
    assert normalize("s", fixture("OnUserInfoChanged"))[0].topic == "o2g.user"


def test_agent_state_change_adds_a_canonical_state() -> None:
    event = {
        "eventName": "OnAgentStateChanged",
        "loginName": "oxe60113",
        "state": {"mainState": "LOG_ON", "subState": "WITHDRAW", "pgNumber": "60121", "withdrawReason": 3},
    }
    vendor, canonical = normalize("pbx1", event, snapshot=True)
    assert vendor.snapshot is True
    assert canonical.topic == "agent-state"
    assert canonical.key == "pbx1:oxe60113"
    assert canonical.snapshot is True
    state = canonical.data
    assert isinstance(state, AgentState)
    assert state.state is State.NOT_READY
    assert state.vendor == "o2g"
    assert state.vendor_state == "LOG_ON/WITHDRAW"
    assert state.reason_code == "3"
    assert state.queue_ids == ("60121",)
    assert state.since == vendor.time


def test_pilot_rti_delta_gives_one_metric_per_present_figure() -> None:
    event = {
        "eventName": "OnPilotRtiChanged",
        "name": "Sales",
        "number": "60141",
        "nbOfWaitingCalls": 0,
        "state": "Opened",
    }
    vendor, *metrics = normalize("pbx1", event)
    assert vendor.key == "pbx1:pilot:60141"
    by_metric = {m.data.metric: m for m in metrics}
    assert set(by_metric) == {"waiting", "state"}
    waiting = by_metric["waiting"].data
    assert isinstance(waiting, QueueMetric)
    assert waiting.value == 0  # zero is a value, not "missing"
    assert waiting.unit == "contacts"
    assert waiting.queue_id == "60141"
    assert waiting.queue_name == "Sales"
    assert by_metric["waiting"].key == "pbx1:60141:waiting"


def test_queue_rti_delta_maps_queue_figures() -> None:
    event = {
        "eventName": "OnQueueRtiChanged",
        "name": "Q1",
        "number": "60131",
        "type": "Normal",
        "fillingRate": 40,
    }
    _, metric = normalize("pbx1", event)
    assert metric.data.metric == "filling_rate"
    assert metric.data.value == 40


def test_pilot_call_queued_reports_the_queue_depth() -> None:
    event = fixture("OnPilotCallQueued") | {"pilot": "60141", "numberOfQueued": 4}
    _, metric = normalize("pbx1", event)
    assert (metric.data.queue_id, metric.data.metric, metric.data.value) == ("60141", "waiting", 4)
    without = {k: v for k, v in event.items() if k != "numberOfQueued"}
    assert len(normalize("pbx1", without)) == 1


def test_processing_group_rti_delta_gives_the_canonical_agent_counts() -> None:
    event = {
        "eventName": "OnPGAgentRtiChanged",
        "name": "Sales agents",
        "number": "5001",
        "type": "Agent",
        "nbOfFreeAgents": 3,
        "nbOfBusyAgents": 0,
        "nbOfLoggedOnAgents": 7,
        "nbOfAgentsInPause": 2,
    }
    vendor, *metrics = normalize("pbx1", event)
    assert (vendor.topic, vendor.type) == ("o2g.rti", "o2g.rti.OnPGAgentRtiChanged")
    assert vendor.data["nbOfFreeAgents"] == 3  # the vendor topic keeps O2G's names
    got = {
        m.data.metric: (m.data.value, m.data.unit, m.data.queue_id, m.data.queue_name, m.key) for m in metrics
    }
    assert got == {
        "agents_available": (3, "agents", "5001", "Sales agents", "pbx1:5001:agents_available"),
        "agents_busy": (0, "agents", "5001", "Sales agents", "pbx1:5001:agents_busy"),
        "agents_logged_in": (7, "agents", "5001", "Sales agents", "pbx1:5001:agents_logged_in"),
        "agents_in_pause": (2, "agents", "5001", "Sales agents", "pbx1:5001:agents_in_pause"),
    }
    assert all(isinstance(m.data, QueueMetric) and m.topic == "queue-metrics" for m in metrics)


def test_rti_agent_events_alone_have_no_canonical_state() -> None:
    """Without the directory (:mod:`.enrich`) an agent's number is not its login."""
    assert len(normalize("pbx1", fixture("OnAgentRtiChanged"))) == 1


def test_unknown_event_is_published_and_counted() -> None:
    before = unknown_count("unk1")
    event = {"eventName": "OnRtiPilotChanged", "number": "60141", "x": 1}
    (out,) = normalize("unk1", event)
    assert out.topic == "o2g.rti"
    assert out.type == "o2g.rti.UnknownO2GEvent"
    assert out.key == "unk1:60141"
    assert out.data is event
    assert unknown_count("unk1") == before + 1


def test_unknown_event_without_package_or_entity() -> None:
    (out,) = normalize("unk2", {"eventName": "OnMystery", "payload": [1]}, snapshot=True)
    assert out.topic == "o2g.unknown"
    assert out.type == "o2g.unknown.UnknownO2GEvent"
    assert out.key == "unk2:unknown"
    assert out.snapshot is True


def test_unknown_event_ignores_non_scalar_key_candidates() -> None:
    (out,) = normalize("unk3", {"eventName": "OnUserMoved", "loginName": {"x": 1}, "nodeId": 7})
    assert out.key == "unk3:7"


def test_channel_information_is_not_an_event() -> None:
    assert normalize("s", {"eventName": "OnChannelInformation", "text": "keepalive"}) == []
    assert normalize("s", {"eventName": "OnChannelInformation", "text": "hello"}) == []


@pytest.mark.parametrize("event", [{}, {"eventName": ""}, {"eventName": 5}, {"text": "x"}])
def test_missing_event_name_raises(event: dict[str, Any]) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize("s", event)
    assert info.value.error_type == "missing_event_name"


@pytest.mark.parametrize(
    ("event", "paths"),
    [
        ({"eventName": "OnCallCreated", "loginName": "oxe1"}, ["$.callRef"]),  # required field missing
        ({"eventName": "OnAgentStateChanged", "loginName": "oxe1", "state": "LOG_ON"}, ["$.state"]),
        (
            {
                "eventName": "OnPilotCallQueued",
                "pilot": "1",
                "caller": "2",
                "callRef": "3",
                "numberOfQueued": "x",
            },
            ["$.cause", "$.numberOfQueued"],
        ),
        ({"eventName": "OnDeviceStateModified", "loginName": "oxe1", "deviceStates": {}}, ["$.deviceStates"]),
        (
            {
                "eventName": "OnCallCreated",
                "loginName": "oxe1",
                "callRef": "7",
                "participants": [
                    {"participantId": "1", "identity": {"displayName": "Anonymous"}, "x": {"y": 1}}
                ],
            },
            ["$.participants[0].identity.id", "$.participants[0].x"],
        ),
    ],
)
def test_a_deviating_event_is_published_with_its_deviations(event: dict[str, Any], paths: list[str]) -> None:
    vendor = normalize("s", event)[0]
    assert vendor.type == f"o2g.{vendor.topic.split('.')[1]}.{event['eventName']}"
    assert list(vendor.deviations) == paths
    assert vendor.data == event  # kept as received: nothing here has an unambiguous coercion
    headers = header_dict(encode(vendor, "p.").headers)
    assert json.loads(headers["streamd_deviations"]) == paths


def test_unambiguous_deviations_are_coerced_and_still_listed() -> None:
    event = {
        "eventName": "OnPilotRtiChanged",
        "number": 60141,
        "name": "PILOT",
        "nbOfWaitingCalls": "3",
        "other": {"n": 1},
    }
    vendor, *canonical = normalize("s", event)
    assert vendor.key == "s:pilot:60141"
    assert vendor.data["nbOfWaitingCalls"] == 3
    assert vendor.data["other"] == {"n": 1}
    assert set(vendor.deviations) == {"$.number", "$.nbOfWaitingCalls", "$.other"}
    assert event["nbOfWaitingCalls"] == "3"  # the input itself is not modified
    number_as_text = normalize(
        "s", {"eventName": "OnDeviceStateModified", "loginName": 42, "deviceStates": []}
    )
    assert number_as_text[0].data["loginName"] == "42"
    assert number_as_text[0].deviations == ("$.loginName",)
    assert any(e.data.metric == "waiting" and e.data.value == 3 for e in canonical)


def test_the_canonical_state_still_flows_when_other_fields_deviate() -> None:
    event = {
        "eventName": "OnAgentStateChanged",
        "loginName": "oxe1",
        "state": {"mainState": "LOG_ON", "subState": "BUSY", "pgNumber": 5001, "surprise": [1]},
    }
    vendor, canonical = normalize("s", event)
    assert vendor.deviations
    assert canonical.data.state is State.BUSY


@pytest.mark.parametrize(
    "event",
    [
        {"eventName": "OnCallCreated", "callRef": "1"},
        {"eventName": "OnCallCreated", "loginName": {"id": 1}, "callRef": "1"},
        {"eventName": "OnPilotCallQueued", "pilot": "", "callRef": "3"},
        {"eventName": "OnQueueRtiChanged", "number": None},
    ],
)
def test_an_event_without_a_usable_key_is_unroutable(event: dict[str, Any]) -> None:
    with pytest.raises(NormalizationError) as info:
        normalize("s", event)
    assert info.value.error_type == "missing_key"
    assert str(info.value).startswith(event["eventName"])


# -- snapshots ----------------------------------------------------------------------------------------


def test_agent_state_snapshot_of_the_seed_example() -> None:
    vendor, canonical = agent_state_snapshot("pbx1", "oxe1002", rest("agent_state_logged_on.json"))
    assert vendor.type == "o2g.agent.OnAgentStateChanged"
    assert vendor.key == "pbx1:oxe1002"
    assert vendor.snapshot is True
    assert vendor.data["state"] == rest("agent_state_logged_on.json")
    assert canonical.snapshot is True
    assert canonical.data.state is State.AVAILABLE  # LOGGED_ON / IDLE in the seed's example
    assert canonical.data.queue_ids == ("5001",)  # pgGroupNumber


def test_agent_state_snapshot_logged_off() -> None:
    _, canonical = snapshot_events(
        "pbx1", SNAPSHOT_AGENT_STATE, {"loginName": "oxe1", "state": rest("agent_state_logged_off.json")}
    )
    assert canonical.data.state is State.LOGGED_OUT
    assert canonical.data.vendor_state == "LOGGED_OFF"


def test_agent_state_snapshot_of_a_deviating_body_is_published() -> None:
    vendor, canonical = agent_state_snapshot("pbx1", "oxe1", {"subState": "READY", "mainState": 3})
    assert vendor.deviations == ("$.state.mainState",)
    assert canonical.data.state is State.UNKNOWN


def test_pilots_snapshot_list() -> None:
    body = {
        "pilotList": [
            rest("pilot.json"),
            {"number": "60142", "state": "Closed", "detailedState": "BLOCKED"},
            {},
        ]
    }
    events = snapshot_events("pbx1", SNAPSHOT_PILOTS, {"nodeId": 1, "pilots": body})
    assert all(e.snapshot for e in events)
    pilots = [e for e in events if e.type == "o2g.pilot.PilotSnapshot"]
    assert [p.key for p in pilots] == ["pbx1:60141", "pbx1:60142"]
    assert pilots[0].topic == "o2g.pilot"
    assert pilots[0].data["nodeId"] == "1"
    assert pilots[0].data["queueState"] == "s_Opened"
    metrics = {(e.data.queue_id, e.data.metric): e.data.value for e in events if e.topic == "queue-metrics"}
    assert metrics == {
        ("60141", "expected_waiting_time"): 0,
        ("60141", "saturated"): False,
        ("60142", "state"): "Closed",
        ("60142", "detailed_state"): "BLOCKED",
    }


def test_pilots_snapshot_single_pilot_and_empty_list() -> None:
    events = pilots_snapshot("pbx1", "1", rest("pilot.json"))
    assert events[0].type == "o2g.pilot.PilotSnapshot"
    assert pilots_snapshot("pbx1", "1", {"pilotList": None}) == []
    assert pilots_snapshot("pbx1", "1", {}) == []


def test_pilots_snapshot_of_a_deviating_body() -> None:
    assert pilots_snapshot("pbx1", "1", {"pilotList": "nope"}) == []
    pilot, *_ = pilots_snapshot("pbx1", "1", {"number": "1", "saturation": "maybe"})
    assert pilot.key == "pbx1:1"
    assert pilot.deviations == ("$.saturation",)
    assert pilot.data["saturation"] == "maybe"


def test_unknown_snapshot_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown O2G snapshot kind"):
        snapshot_events("pbx1", "telephony", {})


def test_the_events_of_one_chunk_share_their_reading_time() -> None:
    from streamd.sources.o2g.chunk import to_events

    state = {"mainState": "LOG_ON", "subState": "BUSY"}
    items: list[Any] = [
        {"eventName": "OnAgentStateChanged", "loginName": f"oxe{i}", "state": state} for i in range(3)
    ]
    events = to_events("pbx1", [*items, {"eventName": "OnChannelInformation", "text": "keepalive"}])
    assert [e.type for e in events] == ["o2g.agent.OnAgentStateChanged", "streamd.agent.State"] * 3
    assert len({e.time for e in events}) == 1
    now = events[0].time.replace(year=2030)
    assert {e.time for e in normalize("pbx1", items[0], now=now)} == {now}

"""Every O2G event model parses the seed's examples; the registry covers the seed's package list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamd.sources.o2g.models import EVENT_MODELS, EVENTS, PACKAGES, UnknownO2GEvent, guess_package
from streamd.sources.o2g.models_callcenter import AgentState, Pilot, Pilots
from streamd.sources.o2g.models_other import ComHistoryRecord
from streamd.sources.o2g.models_telephony import HuntingGroupStatus

FIXTURES = Path(__file__).parent.parent / "fixtures" / "o2g"
EVENT_FILES = sorted((FIXTURES / "events").glob("*.json"))

# The seed's package list (004 L2083-2099) plus OnServerStart (Maintenance, 004 L8949).
SEED_PACKAGES = {
    "telephony": {
        "OnCallCreated",
        "OnCallModified",
        "OnCallRemoved",
        "OnUserStateModified",
        "OnDeviceStateModified",
        "OnTelephonyState",
        "OnDynamicStateChanged",
    },
    "eventSummary": {"OnEventSummaryUpdated"},
    "unifiedComLog": {
        "OnComRecordCreated",
        "OnComRecordModified",
        "OnComRecordsDeleted",
        "OnComRecordsAck",
        "OnComRecordsUnAck",
    },
    "user": {"OnUserInfoChanged"},
    "userManagement": {"OnUserCreated", "OnUserDeleted"},
    "routingManagement": {"OnRoutingStateChanged"},
    "agent": {
        "OnAgentStateChanged",
        "OnSupervisorHelpRequested",
        "OnSupervisorHelpCancelled",
        "OnAgentSkillChanged",
    },
    "rsi": {
        "OnRouteRequest",
        "OnRouteEnd",
        "OnToneGeneratedStart",
        "OnToneGeneratedStop",
        "OnDigitCollected",
    },
    "pilot": {"OnPilotCallCreated", "OnPilotCallQueued", "OnPilotCallRemoved"},
    "system": {"OnLicenseExpiration", "OnPbxLoaded", "OnCtiLinkDown", "OnCtiLinkUp", "OnServerStart"},
    "pbxManagement": {
        "OnPbxObjectInstanceCreated",
        "OnPbxObjectInstanceModified",
        "OnPbxObjectInstanceDeleted",
    },
    "rti": {
        "OnAgentRtiChanged",
        "OnPilotRtiChanged",
        "OnPGAgentRtiChanged",
        "OnQueueRtiChanged",
        "OnPGOtherRtiChanged",
    },
    "acdstats": {"OnAcdStatsProgress"},
}


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def test_registry_is_exactly_the_seed_catalog() -> None:
    assert {name: spec.package for name, spec in EVENTS.items()} == {
        name: package for package, names in SEED_PACKAGES.items() for name in names
    }
    assert set(PACKAGES) == set(SEED_PACKAGES)


def test_every_event_has_a_fixture() -> None:
    names = {p.name.split(".")[0] for p in EVENT_FILES}
    assert names == set(EVENTS)


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda p: p.stem)
def test_model_parses_seed_example(path: Path) -> None:
    event = load(path)["event"]
    model = EVENTS[event["eventName"]].model.model_validate(event)
    # every field of the example is kept: declared or extra
    dumped = model.model_dump(exclude_unset=True)
    assert set(dumped) == set(event)


def test_templates_come_from_the_seed() -> None:
    origins = {load(p)["origin"] for p in EVENT_FILES}
    assert "seed template" in origins
    assert sum(load(p)["origin"] == "seed template" for p in EVENT_FILES) == 44  # 22 templates x 2


def test_unknown_vendor_fields_are_kept() -> None:
    event = load(FIXTURES / "events" / "OnUserStateModified.json")["event"] | {"newField": {"x": 1}}
    model = EVENTS["OnUserStateModified"].model.model_validate(event)
    assert model.model_extra == {"newField": {"x": 1}}


def test_open_enums_accept_values_outside_the_table() -> None:
    state = AgentState.model_validate({"mainState": "SOMETHING_NEW", "subState": "ALSO_NEW"})
    assert state.mainState == "SOMETHING_NEW"


def test_required_field_missing_fails() -> None:
    with pytest.raises(ValueError, match="callRef"):
        EVENTS["OnCallCreated"].model.model_validate({"eventName": "OnCallCreated", "loginName": "oxe1"})


def test_event_name_must_match_the_model() -> None:
    with pytest.raises(ValueError, match="eventName"):
        EVENTS["OnCallCreated"].model.model_validate(
            {"eventName": "OnCallRemoved", "loginName": "a", "callRef": "1"}
        )


def test_seed_agent_state_examples_parse() -> None:
    on = AgentState.model_validate(load(FIXTURES / "rest" / "agent_state_logged_on.json")["body"])
    assert on.pg_number() == "5001"  # seed spelling pgGroupNumber
    off = AgentState.model_validate(load(FIXTURES / "rest" / "agent_state_logged_off.json")["body"])
    assert off.pg_number() is None
    assert AgentState.model_validate({"mainState": "LOG_ON", "pgNumber": "7"}).pg_number() == "7"


def test_seed_pilot_example_parses() -> None:
    pilot = Pilot.model_validate(load(FIXTURES / "rest" / "pilot.json")["body"])
    assert pilot.rules is not None
    assert pilot.rules.ruleList is not None
    assert [r.active for r in pilot.rules.ruleList] == [False, True]
    assert pilot.model_extra == {"queueState": "s_Opened"}
    assert Pilots.model_validate({"pilotList": None}).pilotList is None


def test_hunting_group_logon_accepts_the_seed_string() -> None:
    assert HuntingGroupStatus.model_validate({"logon": "true"}).logon is True


def test_partial_comlog_record_is_accepted() -> None:
    record = ComHistoryRecord.model_validate({"recordId": 5, "acknowledged": True, "participants": None})
    assert record.comRef is None


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("OnRtiPilotChanged", "rti"),
        ("OnRtiFilterChanged", "rti"),
        ("OnSomethingRtiChanged", "rti"),
        ("OnPreferencesChanged", "user"),
        ("OnComRecordDeleted", "unifiedComLog"),
        ("OnCallTransferred", "telephony"),
        ("OnPilotSomething", "pilot"),
        ("OnPbxRestart", "system"),
        ("OnPbxObjectMoved", "pbxManagement"),
        ("OnRouteStart", "rsi"),
        ("Whatever", "unknown"),
    ],
)
def test_guess_package(name: str, package: str) -> None:
    assert guess_package(name) == package


def test_event_models_cover_every_type_and_build_a_schema() -> None:
    for name, spec in EVENTS.items():
        assert EVENT_MODELS[f"o2g.{spec.package}.{name}"] is spec.model
    assert EVENT_MODELS["o2g.unknown.UnknownO2GEvent"] is UnknownO2GEvent
    assert EVENT_MODELS["o2g.rti.UnknownO2GEvent"] is UnknownO2GEvent
    assert "o2g.pilot.PilotSnapshot" in EVENT_MODELS
    for model in EVENT_MODELS.values():
        schema = model.model_json_schema()
        assert schema["type"] == "object"
    cause = EVENT_MODELS["o2g.telephony.OnCallRemoved"].model_json_schema()["properties"]["cause"]
    assert "CLEARED" in cause["anyOf"][0]["examples"]

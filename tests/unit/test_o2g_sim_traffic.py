"""The simulator's traffic is valid O2G: every generated event normalizes without a dead letter."""

from __future__ import annotations

from collections import Counter

import pytest

from streamd.sim.o2g_traffic import O2GTraffic
from streamd.sources.o2g.normalize import normalize


def test_generated_traffic_normalizes_and_covers_every_state() -> None:
    traffic = O2GTraffic(agents=20, pilots=2, seed=7)
    names: Counter[str] = Counter()
    sub_states: set[str] = set()
    for _ in range(3000):
        for event in traffic.tick():
            assert normalize("pbx1", event)  # raises NormalizationError on an invalid payload
            names[event["eventName"]] += 1
            if event["eventName"] == "OnAgentStateChanged":
                sub_states.add(event["state"].get("subState", event["state"]["mainState"]))
    assert set(names) == {
        "OnAgentStateChanged",
        "OnPilotCallCreated",
        "OnPilotCallQueued",
        "OnPilotCallRemoved",
        "OnCallCreated",
        "OnCallRemoved",
    }
    assert sub_states == {"READY", "BUSY", "WRAPUP", "PAUSE", "WITHDRAW", "LOG_OFF"}


def test_same_seed_same_traffic() -> None:
    first, second = O2GTraffic(agents=5, pilots=1, seed=3), O2GTraffic(agents=5, pilots=1, seed=3)
    assert [first.tick() for _ in range(50)] == [second.tick() for _ in range(50)]


def test_the_full_mix_adds_rti_event_summary_and_system_events_that_normalize() -> None:
    from streamd.sim.o2g_traffic import SYSTEM_EVERY

    traffic = O2GTraffic(agents=20, pilots=2, seed=7, full_mix=True)
    names: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for _ in range(SYSTEM_EVERY):
        for event in traffic.tick():
            for normalized in normalize("pbx1", event):  # raises NormalizationError on an invalid payload
                kinds[normalized.type] += 1
            names[event["eventName"]] += 1
    assert set(names) == {
        "OnAgentStateChanged",
        "OnPilotCallCreated",
        "OnPilotCallQueued",
        "OnPilotCallRemoved",
        "OnCallCreated",
        "OnCallRemoved",
        "OnAgentRtiChanged",
        "OnPilotRtiChanged",
        "OnQueueRtiChanged",
        "OnEventSummaryUpdated",
        "OnLicenseExpiration",
    }
    assert names["OnAgentRtiChanged"] == names["OnAgentStateChanged"]
    assert names["OnLicenseExpiration"] == 1
    assert any("queue" in kind.lower() for kind in kinds)  # canonical queue metrics come out of it


def test_without_the_full_mix_the_traffic_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamd.sim.o2g_traffic import MIX_ENV

    core = O2GTraffic(agents=5, pilots=1, seed=3)
    plain = [core.tick() for _ in range(50)]
    monkeypatch.setenv(MIX_ENV, "full")
    mixed = O2GTraffic(agents=5, pilots=1, seed=3)
    assert mixed.full_mix
    assert [[e for e in mixed.tick() if e["eventName"] in CORE] for _ in range(50)] == plain


CORE = {"OnAgentStateChanged", "OnPilotCallCreated", "OnPilotCallQueued", "OnPilotCallRemoved",
        "OnCallCreated", "OnCallRemoved"}  # fmt: skip

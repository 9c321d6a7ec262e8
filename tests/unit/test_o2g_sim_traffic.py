"""The simulator's traffic is valid O2G: every generated event normalizes without a dead letter."""

from __future__ import annotations

from collections import Counter

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

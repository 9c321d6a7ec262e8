"""The fast constructors of frozen slotted dataclasses, the canonical ids, and the module split of
``streamd.events`` (envelope and markers re-exported)."""

from __future__ import annotations

import dataclasses
import gc
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

import streamd.events
from streamd.events import (
    AgentAdherence,
    AgentState,
    Event,
    QueueMetric,
    State,
    frozen_constructor,
    new_agent_state,
    new_event,
    new_queue_metric,
    stable_id,
)
from streamd.sources.alvaria.diff import RowChange, _row_change

WHEN = datetime(2026, 11, 24, 12, 30, 5, 123000, tzinfo=UTC)


def _all_fields(cls: type) -> dict[str, Any]:
    """A value for every field of a canonical type, none of them its default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in ("since", "as_of", "scheduled_start", "scheduled_end", "time"):
            values[f.name] = WHEN
        elif f.name == "state":
            values[f.name] = State.NOT_READY
        elif f.name == "queue_ids":
            values[f.name] = ("q1", "q2")
        elif f.name == "value":
            values[f.name] = 2.5
        else:
            values[f.name] = f"v-{f.name}"
    return values


@pytest.mark.parametrize("cls", [AgentState, QueueMetric, AgentAdherence])
def test_a_fast_constructor_builds_what_the_class_builds(cls: type) -> None:
    values = _all_fields(cls)
    fast = frozen_constructor(cls)(**values)
    assert type(fast) is cls
    assert fast == cls(**values)
    assert hash(fast) == hash(cls(**values))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.source = "other"


def test_defaults_and_default_factories_are_those_of_the_class() -> None:
    required = {"vendor": "o2g", "source": "s", "agent_id": "1", "state": State.BUSY}
    assert new_agent_state(**required) == AgentState(**required)
    assert new_queue_metric(vendor="v", source="s", queue_id="q", metric="m", value=None) == QueueMetric(
        vendor="v", source="s", queue_id="q", metric="m", value=None
    )
    before = datetime.now(UTC)
    event = new_event(topic="t", type="x", source="s", key="k", data={})  # type: ignore[call-arg]
    assert before <= event.time <= datetime.now(UTC) + timedelta(seconds=1)  # Event's utcnow factory
    assert (event.id, event.snapshot, event.deviations) == (None, False, ())


def test_keyword_only_classes_stay_keyword_only_unless_positional() -> None:
    with pytest.raises(TypeError):
        new_agent_state("o2g", "s", "1", State.BUSY)  # type: ignore[misc]
    fields = ("t", "x.y.Z", "s", "s:1", {"a": 1}, WHEN, "id-1", True, ("$.a",))
    names = [f.name for f in msgspec.structs.fields(Event)]
    assert new_event(*fields) == Event(**dict(zip(names, fields, strict=True)))


def test_an_event_is_frozen_hashable_and_never_tracked_by_the_collector() -> None:
    """envelope rule 7: the msgspec struct keeps the frozen dataclass's behaviour, untracked."""
    event = new_event("t", "x.y.Z", "s", "s:1", {"nested": [1, {"a": 2}]}, WHEN, "id-1")
    assert new_event is Event
    assert not gc.is_tracked(event)  # its data (a tracked dict) is, as before
    assert gc.is_tracked(event.data)
    with pytest.raises(AttributeError):
        event.key = "other"  # type: ignore[misc]
    assert hash(Event(topic="t", type="x", source="s", key="k", data="d", time=WHEN)) == hash(
        new_event("t", "x", "s", "k", "d", WHEN)
    )
    changed = msgspec.structs.replace(event, deviations=("$.a",))
    assert (changed.deviations, changed.data, event.deviations) == (("$.a",), event.data, ())
    assert changed != event
    assert repr(event).startswith("Event(topic='t', type='x.y.Z'")


def test_the_alvaria_row_change_is_the_dataclass_constructor() -> None:
    made = _row_change("added", ("k",), {"a": 1}, {"a": 1}, ("$.a",))
    assert made == RowChange("added", ("k",), {"a": 1}, {"a": 1}, deviations=("$.a",))


def test_only_frozen_slotted_dataclasses_with_every_field_in_init() -> None:
    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    for cls in (NoSlots, NotFrozen, dict):
        with pytest.raises(TypeError, match="not a frozen slotted dataclass"):
            frozen_constructor(cls)
    with pytest.raises(TypeError, match=r"Derived\.b is not set by __init__"):
        frozen_constructor(Derived)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="Checked has a __post_init__"):
        frozen_constructor(Checked)


@pytest.mark.parametrize(
    "state",
    [
        AgentState(vendor="o2g", source="s", agent_id="1", state=State.BUSY),
        AgentState(
            vendor="o2g", source="s", agent_id="1", state=State.AFTER_CALL_WORK, agent_name="Ann",
            vendor_state="WITHDRAW", reason_code="12", reason_label="Lunch", since=WHEN,
            queue_ids=("q1", "q2", "team/3"),
        ),
    ],
    ids=["minimal", "every-field"],
)  # fmt: skip
def test_agent_state_ids_are_the_stable_id_of_the_documented_parts(state: AgentState) -> None:
    when = WHEN + timedelta(seconds=1)
    expected = stable_id(
        f"s:{state.agent_id}", state.state, state.vendor_state, state.reason_code, when.isoformat(),
        state.agent_name, state.reason_label, *state.queue_ids,
    )  # fmt: skip
    assert state.to_event(time=when).id == expected


@pytest.mark.parametrize("value", [3, 2.5, 0.1 + 0.2, "12", True, None, -0.0, 10**20])
def test_queue_metric_ids_are_the_stable_id_of_the_documented_parts(value: Any) -> None:
    metric = QueueMetric(vendor="v", source="s", queue_id="q", metric="waiting", value=value, as_of=WHEN)
    assert metric.to_event().id == stable_id("s:q:waiting", value, WHEN.isoformat())
    assert metric.to_event().time is WHEN


def test_adherence_ids_and_topics_are_unchanged() -> None:
    adherence = AgentAdherence(
        vendor="calabrio", source="c", agent_id="7", status="out", since=WHEN, state=State.BUSY,
        scheduled_activity="Lunch",
    )  # fmt: skip
    event = adherence.to_event()
    assert event.id == stable_id("c:7", "out", "Lunch", State.BUSY, WHEN.isoformat())
    assert (event.topic, event.type, event.key, event.time) == (
        "agent-adherence",
        "streamd.agent.Adherence",
        "c:7",
        WHEN,
    )


def test_every_name_streamd_events_exports_is_importable_from_it() -> None:
    for name in streamd.events.__all__:
        assert getattr(streamd.events, name) is not None
    from streamd.events import DEADLETTER_TOPIC, SOURCE_STATUS_TOPIC, DeadLetter, SourceGap, SourceStatus

    assert (DEADLETTER_TOPIC, SOURCE_STATUS_TOPIC) == ("deadletter", "source-status")
    letter = DeadLetter.of(source="s", stage="decode", error_type="e", error="x", raw=b"{")
    assert letter.to_event().topic == DEADLETTER_TOPIC
    gap = SourceGap(source="s", **{"from": WHEN}, to=WHEN, reason="r")
    assert gap.to_event().topic == SOURCE_STATUS_TOPIC
    status = SourceStatus(source="s", scope="node:1", status="stale", reason="r", since=WHEN)
    assert status.to_event().key == "s"

"""The Calabrio source against a simulator whose traffic partly deviates from the document:
every routable activity and adherence row is published once, with its deviations listed."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from streamd.events import AGENT_STATE_TOPIC, DEADLETTER_TOPIC, AgentState, Event
from streamd.publish.encoding import encode, header_dict
from streamd.publish.memory import MemoryEmit
from streamd.schemas import event_schema, events_schema
from streamd.sim.calabrio import CalabrioSimulator
from streamd.sources.calabrio.config import CalabrioSourceConfig
from streamd.sources.calabrio.models import (
    ACTIVITY_TOPIC,
    ACTIVITY_TYPE,
    ADHERENCE_TOPIC,
    ADHERENCE_TYPE,
    AGENT_STATES,
)
from streamd.sources.calabrio.source import CalabrioSource
from streamd.telemetry import REGISTRY
from tests.helpers import Clock, MemoryCursors, no_sleep, source_deps

pytestmark = pytest.mark.anyio

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def source(sim: CalabrioSimulator, clock: Clock[int], cursors: MemoryCursors, **cfg: Any) -> CalabrioSource:
    config = CalabrioSourceConfig.model_validate(
        {
            "kind": "calabrio",
            "name": "wfm-dev",
            "url": sim.url,
            "username": sim.username,
            "password": sim.password,
            "interval": 1,
            "timeout": 0.9,
            "overlap": 60,
            "reference_publish": False,  # the reference job has tests of its own
            "initial_lookback": 0,
            **cfg,
        }
    )
    return CalabrioSource(
        config, source_deps("wfm-dev", cursors=cursors), now_ms=clock, sleep=no_sleep, cycles=1
    )


def deviations_counted(ce_type: str) -> float:
    value = REGISTRY.get_sample_value("streamd_deviations_total", {"source": "wfm-dev", "type": ce_type})
    return value or 0.0


def at(value: Any, path: str) -> Any:
    """The value at a ``$.a[0].b`` path (identifier keys only); KeyError when it is not there."""
    for part in path[2:].replace("[", ".").replace("]", "").split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def check_published(event: Event, schema: dict[str, Any]) -> None:
    """What a consumer reads: the header lists the deviations, the schema describes the value,
    every listed path that names a field the vendor added is in the value."""
    record = encode(event, "streamd.")
    headers = header_dict(record.headers)
    value = orjson.loads(record.value)
    Draft202012Validator(schema).validate(value)
    if not event.deviations:
        assert "streamd_deviations" not in headers
        return
    assert orjson.loads(headers["streamd_deviations"]) == list(event.deviations)
    for path in event.deviations:
        if "simExtra" in path:  # an unknown field: kept as received
            assert at(value, path) is not None, path


async def test_every_routable_activity_is_published_once_with_its_deviations() -> None:
    rng = random.Random(11)
    clock, cursors, emit = Clock(T0), MemoryCursors(), MemoryEmit()
    before = deviations_counted(ACTIVITY_TYPE)
    scripted: set[tuple[str, int]] = set()
    async with CalabrioSimulator(agents=4, clock_ms=clock, deviate=0.4, seed=5) as sim:
        for _ in range(80):
            agent, ts = rng.choice((101, 102, 103, 104)), T0 + rng.randrange(0, 600_000)
            state = rng.choice(AGENT_STATES)
            reason = str(rng.randint(1, 9)) if state == "NOT_READY_BUSY" else None
            sim.add_activity(agent, ts, state, reason, visible_at=ts + rng.randrange(0, 50_000))
            scripted.add((str(agent), ts))
        src = source(sim, clock, cursors)
        async with src.client() as client:
            poller = src.activity_poller(client)
            while clock.now < T0 + 700_000:
                clock.now += rng.randrange(5_000, 40_000)
                await poller.session(emit, lambda: None)
        deviated = {(str(a), ts) for a, ts in sim.deviated_activities}
    assert not [e for e in emit.events if e.topic == DEADLETTER_TOPIC]
    vendor = [e for e in emit.events if e.topic == ACTIVITY_TOPIC]
    published = [(e.data["agentId"], e.data["timestamp"]) for e in vendor]
    assert len(published) == len(set(published))  # once each, re-reads of the overlap included
    assert set(published) == scripted
    assert 0 < len(deviated) < len(scripted)  # the share deviated, the rest conformed
    assert {p for p, e in zip(published, vendor, strict=True) if e.deviations} == deviated
    assert deviations_counted(ACTIVITY_TYPE) - before == len(deviated)
    document = events_schema()
    for event in vendor:
        assert isinstance(event.data["timestamp"], int)  # "1767225..." was coerced
        check_published(event, event_schema(document, ACTIVITY_TYPE))
    canonical = [e.data for e in emit.events if e.topic == AGENT_STATE_TOPIC]
    newest: dict[str, int] = {}
    expected = []  # the canonical state follows every vendor event newer than its agent's last one
    for agent, ts in published:
        if ts > newest.get(agent, -1):
            newest[agent] = ts
            expected.append((agent, ts))
    assert len(expected) < len(published)  # some arrived late: they stay on the vendor topic
    assert [(s.agent_id, int(s.since.timestamp() * 1000)) for s in canonical] == expected
    assert all(isinstance(s, AgentState) and s.agent_name for s in canonical)  # enriched throughout


async def test_every_adherence_row_is_published_with_its_deviations() -> None:
    clock, emit = Clock(T0), MemoryEmit()
    before = deviations_counted(ADHERENCE_TYPE)
    async with CalabrioSimulator(agents=12, clock_ms=clock, deviate=0.5, seed=2) as sim:
        sim.add_activity(101, T0 - 1_000, "TALK")
        src = source(sim, clock, MemoryCursors(), adherence=True, adherence_page_size=5)
        for job in src.jobs(emit):
            await job.session(lambda: None)
    assert not [e for e in emit.events if e.topic == DEADLETTER_TOPIC]
    rows = [e for e in emit.events if e.topic == ADHERENCE_TOPIC]
    assert [e.key for e in rows] == [f"wfm-dev:{101 + i}" for i in range(12)]
    deviating = {int(e.data["agentId"]) for e in rows if e.deviations}
    assert deviating == sim.deviated_adherence
    assert 0 < len(deviating) < 12
    assert deviations_counted(ADHERENCE_TYPE) - before == len(deviating)
    document = events_schema()
    for event in rows:
        assert event.data["date"] == "2026-01-01"
        check_published(event, event_schema(document, ADHERENCE_TYPE))

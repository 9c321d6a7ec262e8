"""The Alvaria source against a simulator whose rows deviate (issue 13): every routable row is published."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from streamd.events import Event, State
from streamd.publish.encoding import encode, header_dict
from streamd.publish.memory import MemoryEmit
from streamd.schemas import event_schema, events_schema
from streamd.sim.alvaria import AlvariaSimulator, Fault
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.shapes import SHAPES
from streamd.sources.alvaria.source import AlvariaSource
from streamd.telemetry import REGISTRY
from tests.helpers import running, source_deps

pytestmark = pytest.mark.anyio

SOURCE = "deviant1"  # its own name: the deviation counter is process-wide


def make_source(sim: AlvariaSimulator, **overrides: Any) -> AlvariaSource:
    overrides.setdefault("timeout", "2s")
    cfg = AlvariaSourceConfig.model_validate(sim.source_config(SOURCE, **overrides))
    return AlvariaSource(cfg, source_deps(SOURCE, delays=lambda: itertools.repeat(0)), jitter=0)


def served(sim: AlvariaSimulator) -> set[tuple[str, str]]:
    """(query, row key) of every row the simulator answers (its world does not move here)."""
    world, now = sim.world, sim.clock()
    answers: list[tuple[str, str | None, list[dict[str, Any]]]] = [
        *(("listActivity", name, [world.list_row(name)]) for name in world.contact_lists),
        *(("teamActivity", team, world.team_rows(team)) for team in world.team_ids),
        *(("userActivity", team, world.user_rows(team, now)) for team in world.team_ids),
        *(("channelActivity", wt, world.channel_rows(wt, now)) for wt in world.work_type_ids),
        ("presence", None, world.presence_users()),
    ]
    return {
        (query, ":".join(SHAPES[query].key_of(row, scope) or ()))
        for query, scope, rows in answers
        for row in rows
    }


def deviations_counted() -> float:
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name == "streamd_deviations_total" and sample.labels.get("source") == SOURCE:
                total += sample.value
    return total


def snapshot_rows(emit: MemoryEmit) -> dict[tuple[str, str], Event]:
    return {
        (e.data["query"], e.data["key"]): e
        for e in emit.events
        if e.topic.startswith("alvaria.") and e.type.endswith(".Row")
    }


async def until_emitted(predicate: Any, emit: MemoryEmit, timeout: float = 10.0) -> None:
    while not predicate():
        await emit.wait_for(len(emit.events) + 1, timeout=timeout)


async def test_every_routable_row_is_published_with_the_paths_it_deviates_at() -> None:
    async with AlvariaSimulator(agents=12, auto_advance=False, deviate=0.5, seed=7) as sim:
        expected = served(sim)
        emit = MemoryEmit()
        counted = deviations_counted()
        source = make_source(sim, interval="50ms", refresh_every="1h")
        async with running(source, emit):
            await until_emitted(lambda: set(snapshot_rows(emit)) >= expected, emit)
            rows = snapshot_rows(emit)
            # a deviating agent changes state: the change is published too, and its AgentState
            agent = next(
                key.split(":")[1]
                for (query, key) in sorted(sim.deviations)
                if query == "userActivity" and "$.stateId" not in sim.deviations[(query, key)]
            )
            sim.world.set_state(agent, "active", now=sim.clock())
            await until_emitted(
                lambda: any(
                    e.data["row"]["userId"] == agent for e in emit.of_type("alvaria.userActivity.RowChanged")
                ),
                emit,
            )
            await until_emitted(
                lambda: any(
                    e.data.agent_id == agent and e.data.state is State.BUSY
                    for e in emit.of_type("streamd.agent.State")
                ),
                emit,
            )
        assert set(rows) == expected  # every row, none dead-lettered
        assert [e for e in emit.events if e.topic == "deadletter"] == []
        deviating = {k for k in expected if k in sim.deviations}
        assert 0 < len(deviating) < len(expected)  # the share is a share
        document = events_schema()
        for (query, key), event in rows.items():
            paths = {"$.row" + p[1:] for p in sim.deviations.get((query, key), ())}
            assert set(event.deviations) == paths, (query, key)
            record = encode(event, "streamd.")
            headers = header_dict(record.headers)
            assert set(orjson.loads(headers.get("streamd_deviations", "[]"))) == paths
            Draft202012Validator(event_schema(document, event.type)).validate(orjson.loads(record.value))
        (changed,) = [
            e for e in emit.of_type("alvaria.userActivity.RowChanged") if e.data["row"]["userId"] == agent
        ]
        assert changed.deviations
        published_deviating = [e for e in emit.events if e.deviations]
        assert deviations_counted() - counted == len(published_deviating)
        # the canonical events still flow for every agent and every queue, deviating or not
        states = {e.data.agent_id for e in emit.of_type("streamd.agent.State")}
        assert states == {key.split(":")[1] for (query, key) in expected if query == "userActivity"}
        queues = {e.data.queue_id for e in emit.of_type("streamd.queue.Metric")}
        assert queues == {f"team/{key}" for (q, key) in expected if q == "teamActivity"} | {
            "worktype/" + key.replace(":", "/") for (q, key) in expected if q == "channelActivity"
        }


async def test_keyless_and_malformed_answers_are_still_dead_letters_with_their_raw_text() -> None:
    keyless = orjson.dumps(
        {"kind": "via#presenceDataList", "users": [{"firstName": "Ana", "ehubSessionId": 1}]}
    )
    async with AlvariaSimulator(agents=2, auto_advance=False, deviate=1.0) as sim:
        sim.faults.add("presence", Fault(200, body=b'{"users": [truncated'))
        sim.faults.add("presence", Fault(200, body=keyless))
        emit = MemoryEmit()
        source = make_source(sim, queries=["presence"], interval="20ms")
        async with running(source, emit):
            # the keyless answer was the first snapshot: the real rows come as additions
            await until_emitted(lambda: emit.of_type("alvaria.presence.RowAdded"), emit)
        dead = [e.data for e in emit.events if e.topic == "deadletter"]
        assert [d.error_type for d in dead] == ["invalid_json", "missing_key"]
        assert dead[0].raw == '{"users": [truncated'
        assert orjson.loads(dead[1].raw or "") == {"firstName": "Ana", "ehubSessionId": 1}
        assert "without a usable userId" in dead[1].error
        added = emit.of_type("alvaria.presence.RowAdded")
        assert added
        assert all(e.deviations for e in added)  # deviate=1.0: every row


def test_the_deviations_are_seeded_and_do_not_depend_on_the_request_order() -> None:
    def answers(seed: int, order: list[str]) -> dict[tuple[str, str], tuple[str, ...]]:
        sim = AlvariaSimulator(agents=8, auto_advance=False, deviate=0.5, seed=seed, clock=lambda: 0.0)
        for team in order:
            sim.deviating("userActivity", team, sim.world.user_rows(team, 0.0))
        return sim.deviations

    first = answers(3, ["team1", "team2"])
    assert first == answers(3, ["team2", "team1"])
    assert first != answers(4, ["team1", "team2"])
    assert AlvariaSimulator(deviate=0.0).deviating("presence", None, [{"userId": "u"}]) == [{"userId": "u"}]
    with pytest.raises(ValueError, match="between 0 and 1"):
        AlvariaSimulator(deviate=1.5)

"""Alvaria simulator -> the daemon (in process) -> the embedded broker, read back by a consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from streamd.publish.encoding import header_dict
from streamd.sim.alvaria import AlvariaSimulator
from tests.harness import running_daemon
from tests.kafka_helpers import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]


def ce_types(records: list[Any]) -> list[str]:
    return [header_dict(r.headers)["ce_type"] for r in records]


async def test_snapshot_then_changes_reach_kafka(tmp_path: Path) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        block = sim.source_config("cloud1", queries=["userActivity", "presence"], interval="100ms")
        async with running_daemon(tmp_path, block) as runtime:
            bootstrap = runtime.bootstrap
            topic = "streamd.alvaria.userActivity"
            snapshot = await read_topic(bootstrap, topic, lambda rs: len(rs) >= 4)
            assert ce_types(snapshot) == ["alvaria.userActivity.Row"] * 4
            assert all(header_dict(r.headers).get("streamd_snapshot") for r in snapshot)
            assert {r.key for r in snapshot} == {
                f"cloud1:team{1 + i % 2}:agent{i + 1:05d}".encode() for i in range(4)
            }

            sim.world.set_state("agent00003", "notready", now=sim.clock(), reason_id="lunch")
            records = await read_topic(
                bootstrap, topic, lambda rs: "alvaria.userActivity.RowChanged" in ce_types(rs)
            )
            changed = next(r for r in records if header_dict(r.headers)["ce_type"].endswith("RowChanged"))
            value = orjson.loads(changed.value)
            assert value["row"]["stateId"] == "notready"
            assert value["previous"]["stateId"] == "idle"
            assert "streamd_snapshot" not in header_dict(changed.headers)

            states = await read_topic(
                bootstrap,
                "streamd.agent-state",
                lambda rs: any(orjson.loads(r.value)["state"] == "not_ready" for r in rs),
            )
            not_ready = [
                orjson.loads(r.value) for r in states if orjson.loads(r.value)["state"] == "not_ready"
            ]
            assert [(s["agent_id"], s["reason_code"]) for s in not_ready] == [("agent00003", "lunch")]


async def test_the_longest_wait_reaches_kafka_every_poll_while_nothing_else_changes(tmp_path: Path) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        queue = sim.world.queues[("wt1.104", "inboundacd")]
        queue.waiting, queue.oldest = 2, sim.clock() - 30  # two contacts, the first waiting 30 s
        block = sim.source_config("cloud1", queries=["channelActivity"], work_type_ids=["wt1.104"])
        key = b"cloud1:worktype/wt1.104/inboundacd/voice:longest_wait_seconds"
        async with running_daemon(tmp_path, block | {"interval": "100ms"}) as runtime:

            def waits(records: list[Any]) -> list[int]:
                return [orjson.loads(r.value)["value"] for r in records if r.key == key]

            metrics = await read_topic(
                runtime.bootstrap,
                "streamd.queue-metrics",
                lambda rs: len(set(waits(rs))) >= 3,  # it ticked twice
            )
            vendor = await read_topic(
                runtime.bootstrap, "streamd.alvaria.channelActivity", lambda rs: len(rs) >= 2
            )
    values = waits(metrics)
    assert values == sorted(values)
    assert values[0] >= 30
    assert len(values) > len(set(values))  # published on every poll, not only when the figure moved
    assert ce_types(vendor) == ["alvaria.channelActivity.Row"] * 2  # the vendor rows never changed


async def test_agent_states_carry_their_team_and_worktypes_as_queue_ids(tmp_path: Path) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        assert sim.world.agents["agent00001"].work_types == {wt1, wt2}
        block = sim.source_config(
            "cloud1", queries=["userActivity", "presence"], presence_work_type_ids=[wt1, wt2]
        )
        async with running_daemon(tmp_path, block | {"interval": "100ms"}) as runtime:
            await read_topic(runtime.bootstrap, "streamd.alvaria.presence", lambda rs: len(rs) >= 4)
            sim.world.set_state("agent00001", "notready", now=sim.clock(), reason_id="lunch")
            sim.world.set_state("agent00002", "wrap", now=sim.clock())
            records = await read_topic(
                runtime.bootstrap,
                "streamd.agent-state",
                lambda rs: {"not_ready", "after_call_work"} <= {orjson.loads(r.value)["state"] for r in rs},
            )
    states = {
        (v["agent_id"], v["state"]): v["queue_ids"] for v in map(orjson.loads, (r.value for r in records))
    }
    assert states["agent00001", "not_ready"] == ["team/team1", f"worktype/{wt1}", f"worktype/{wt2}"]
    assert states["agent00002", "after_call_work"] == ["team/team2", f"worktype/{wt2}"]


async def test_a_team_created_while_running_reaches_kafka_without_a_config_change(tmp_path: Path) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        block = sim.source_config(
            "cloud1", queries=["userActivity"], team_ids=[], discover=["teams"], discover_every="300ms"
        )
        async with running_daemon(tmp_path, block | {"interval": "100ms"}) as runtime:
            topic = "streamd.alvaria.userActivity"
            await read_topic(runtime.bootstrap, topic, lambda rs: len(rs) >= 4)
            sim.world.add_team("team3", "Night shift")
            sim.world.add_agent("agent00099", now=sim.clock(), team_id="team3")
            records = await read_topic(
                runtime.bootstrap, topic, lambda rs: b"cloud1:team3:agent00099" in {r.key for r in rs}
            )
    (added,) = [orjson.loads(r.value) for r in records if r.key == b"cloud1:team3:agent00099"]
    assert (added["scope"], added["row"]["teamName"]) == ("team3", "Night shift")
    assert len(sim.requests("teams")) >= 2  # read again every discover_every


def tiles(work_type: str) -> list[str]:
    return [f"worktype/{work_type}/inboundacd/voice", f"worktype/{work_type}/inboundchat/chat"]


async def test_a_worktype_tile_and_its_agents_meet_in_the_wallboards_queue_filter(tmp_path: Path) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        block = sim.source_config(  # presence and channelActivity both poll the discovered worktypes
            "cloud1",
            queries=["userActivity", "presence", "channelActivity"],
            work_type_ids=[],
            discover=["work_types"],
        )
        async with running_daemon(tmp_path, block | {"interval": "100ms"}) as runtime:
            expected = ["team/team2", f"worktype/{wt2}", *tiles(wt2)]  # agent00002 serves wt2 only
            await read_topic(
                runtime.bootstrap,
                "streamd.agent-state",
                lambda rs: expected in [orjson.loads(r.value)["queue_ids"] for r in rs],
            )
            keys = {f"cloud1:{t}:waiting".encode() for t in tiles(wt1) + tiles(wt2)}
            await read_topic(  # the tiles: published under the ids the agents carry
                runtime.bootstrap, "streamd.queue-metrics", lambda rs: keys <= {r.key for r in rs}
            )
            url = f"http://127.0.0.1:{runtime.http_port}/api/v1/state"
            async with httpx.AsyncClient() as client:

                async def shown() -> tuple[set[str], set[str]]:
                    state = (await client.get(url, params={"queue": tiles(wt1)[0]})).json()
                    return {a["agent_id"] for a in state["agents"]}, {m["queue_id"] for m in state["metrics"]}

                with anyio.fail_after(20):
                    while await shown() != (  # wt1's agents, from both teams, and the tile
                        {"agent00001", "agent00003", "agent00004"},
                        {tiles(wt1)[0]},
                    ):
                        await anyio.sleep(0.05)


async def test_an_agent_joining_a_worktype_reaches_kafka_again_with_its_new_queues(tmp_path: Path) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        wt1, wt2 = sim.world.work_type_ids
        block = sim.source_config(
            "cloud1", queries=["userActivity", "presence"], presence_work_type_ids=[wt1, wt2]
        )

        def queues_of(records: list[Any]) -> list[list[str]]:
            values = (orjson.loads(r.value) for r in records)
            return [v["queue_ids"] for v in values if v["agent_id"] == "agent00002"]

        async with running_daemon(tmp_path, block | {"interval": "100ms"}) as runtime:
            before = ["team/team2", f"worktype/{wt2}"]
            await read_topic(
                runtime.bootstrap, "streamd.agent-state", lambda rs: queues_of(rs)[-1:] == [before]
            )
            sim.world.assign("agent00002", wt1)  # the agent's own row does not change
            after = ["team/team2", f"worktype/{wt1}", f"worktype/{wt2}"]
            records = await read_topic(
                runtime.bootstrap, "streamd.agent-state", lambda rs: queues_of(rs)[-1:] == [after]
            )
    states = [orjson.loads(r.value) for r in records if orjson.loads(r.value)["agent_id"] == "agent00002"]
    assert (states[-1]["state"], states[-1]["since"]) == (states[-2]["state"], states[-2]["since"])

"""Alvaria simulator -> the daemon (in process) -> the embedded broker, read back by a consumer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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

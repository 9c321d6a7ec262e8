"""Alvaria simulator -> the daemon (in process) -> the embedded broker, read back by a consumer."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamd.app import Runtime, run_daemon
from streamd.config import Config
from streamd.publish.encoding import header_dict
from streamd.sim.alvaria import AlvariaSimulator

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]


async def read_topic(bootstrap: str, topic: str, until: Any, timeout: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        with anyio.fail_after(timeout):
            while not (partitions := consumer.partitions_for_topic(topic)):
                await consumer.topics()
                await anyio.sleep(0.1)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while not until(records):
                batch = await consumer.getmany(timeout_ms=200)
                for messages in batch.values():
                    records.extend(messages)
    finally:
        await consumer.stop()
    return records


def ce_types(records: list[Any]) -> list[str]:
    return [header_dict(r.headers)["ce_type"] for r in records]


async def test_snapshot_then_changes_reach_kafka(tmp_path: Path) -> None:
    async with AlvariaSimulator(agents=4, auto_advance=False) as sim:
        block = sim.source_config("cloud1", queries=["userActivity", "presence"], interval="100ms")
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": "embedded"},
                "http": {"listen": "127.0.0.1:0"},
                "spool": {"path": str(tmp_path / "spool.db")},
                "shutdown_grace": "3s",
                "sources": [block],
            }
        )
        runtime = Runtime(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run_daemon, config, runtime=runtime, handle_signals=False))
            with anyio.fail_after(30):
                await runtime.ready.wait()
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
            runtime.stop.set()

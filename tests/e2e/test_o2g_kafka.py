"""O2G simulator -> the daemon (in process) -> the embedded broker, read back by an independent consumer."""

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
from streamd.embedded import free_port
from streamd.publish.encoding import header_dict
from streamd.sim.o2g import O2GSimulator

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]


async def read_topic(bootstrap: str, topic: str, until: Any, timeout: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        with anyio.fail_after(timeout):
            while not (partitions := consumer.partitions_for_topic(topic)):
                await consumer.topics()  # refresh metadata until the topic exists
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


async def test_o2g_events_reach_kafka_with_keys_headers_and_snapshot_flag(tmp_path: Path) -> None:
    async with O2GSimulator(agents=3) as sim:
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": "embedded"},
                "http": {"listen": "127.0.0.1:0"},
                "spool": {"path": str(tmp_path / "spool.db")},
                "shutdown_grace": "3s",
                "sources": [
                    {
                        "kind": "o2g",
                        "name": "pbx1",
                        "url": sim.url,
                        "username": sim.username,
                        "password": sim.password,
                        "packages": ["agent", "pilot", "telephony"],
                    }
                ],
            }
        )
        runtime = Runtime(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run_daemon, config, runtime=runtime, handle_signals=False))
            with anyio.fail_after(30):
                await runtime.ready.wait()
            refs = [f"k{i}" for i in range(50)]
            sim.publish(
                *(
                    {
                        "eventName": "OnPilotCallCreated",
                        "pilot": "60141",
                        "caller": "6",
                        "callRef": r,
                        "cause": "NEW_CALL",
                    }
                    for r in refs
                )
            )
            pilot = await read_topic(
                runtime.bootstrap, "streamd.o2g.pilot", lambda rs: len(rs) >= 2 + len(refs)
            )
            states = await read_topic(runtime.bootstrap, "streamd.agent-state", lambda rs: len(rs) >= 3)
            runtime.stop.set()

    calls = [r for r in pilot if header_dict(r.headers)["ce_type"] == "o2g.pilot.OnPilotCallCreated"]
    assert [orjson.loads(r.value)["callRef"] for r in calls] == refs  # one key, one partition: in order
    headers = header_dict(calls[0].headers)
    assert calls[0].key == b"pbx1:60141"
    assert headers["ce_source"] == "streamd/pbx1"
    assert headers["ce_subject"] == "pbx1:60141"
    assert "streamd_snapshot" not in headers
    snapshots = [r for r in pilot if header_dict(r.headers)["ce_type"] == "o2g.pilot.PilotSnapshot"]
    assert {r.key for r in snapshots} == {b"pbx1:60141", b"pbx1:60142"}
    assert all(header_dict(r.headers).get("streamd_snapshot") == "true" for r in snapshots)
    assert {r.key for r in states} == {b"pbx1:oxe70100", b"pbx1:oxe70101", b"pbx1:oxe70102"}
    assert {orjson.loads(r.value)["state"] for r in states} == {"available"}
    assert any(r.method == "DELETE" and r.path == "/api/rest/1.0/sessions" for r in sim.requests)


async def test_o2g_webhook_posts_are_acknowledged_after_kafka(tmp_path: Path) -> None:
    port = free_port()
    async with O2GSimulator(agents=1) as sim:
        source = {
            "kind": "o2g",
            "name": "pbx2",
            "url": sim.url,
            "username": sim.username,
            "password": sim.password,
            "packages": ["pilot"],
            "delivery": "webhook",
            "webhook_public_url": f"http://127.0.0.1:{port}/webhooks/o2g/pbx2",
            "webhook_secret": "s3cret",
        }
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": "embedded"},
                "http": {"listen": f"127.0.0.1:{port}"},
                "spool": {"path": str(tmp_path / "spool.db")},
                "shutdown_grace": "3s",
                "sources": [source],
            }
        )
        runtime = Runtime(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run_daemon, config, runtime=runtime, handle_signals=False))
            with anyio.fail_after(30):
                await runtime.ready.wait()
            refs = [f"w{i}" for i in range(20)]
            sim.publish(
                *(
                    {
                        "eventName": "OnPilotCallCreated",
                        "pilot": "60142",
                        "caller": "6",
                        "callRef": r,
                        "cause": "NEW_CALL",
                    }
                    for r in refs
                )
            )
            with anyio.fail_after(10):
                while len(sim.webhook_log) < len(refs):
                    await anyio.sleep(0.02)
            pilot = await read_topic(
                runtime.bootstrap, "streamd.o2g.pilot", lambda rs: len(rs) >= 2 + len(refs)
            )
            runtime.stop.set()

    assert [status for _, status in sim.webhook_log] == [200] * len(refs)  # 2xx only once acked
    calls = [r for r in pilot if header_dict(r.headers)["ce_type"] == "o2g.pilot.OnPilotCallCreated"]
    assert [orjson.loads(r.value)["callRef"] for r in calls] == refs
    assert {r.key for r in calls} == {b"pbx2:60142"}

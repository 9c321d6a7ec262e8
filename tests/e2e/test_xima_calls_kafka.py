"""Xima call-finished pushes (WebService Integration) -> the daemon's /webhooks/xima/{source} ->
the embedded broker, read back by an independent consumer."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from streamd.embedded import free_port
from streamd.publish.encoding import header_dict
from streamd.sim.xima import WebServiceProfile, XimaSimulator
from tests.harness import running_daemon
from tests.helpers import until
from tests.kafka_helpers import read_topic

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]


async def test_finished_calls_reach_kafka_keyed_by_call_id_and_are_answered_after_it(tmp_path: Path) -> None:
    port = free_port()
    target = f"http://127.0.0.1:{port}/webhooks/xima/cr1"
    profile = WebServiceProfile(target, headers={"X-Streamd-Secret": "s3cret"})
    async with XimaSimulator(agents=4, profiles=[profile]) as sim:
        block = {
            "kind": "xima",
            "name": "cr1",
            "url": sim.url,
            "api_key": sim.api_key,
            "metrics": [],
            "calls": {"secret": "s3cret"},
        }
        async with running_daemon(tmp_path, block, listen=f"127.0.0.1:{port}") as runtime:
            while len(sim.world.calls) < 6:
                sim.step()
            finished = list(sim.world.calls)
            await until(lambda: len(sim.webservice.sent) >= len(finished), timeout=10, interval=0.02)
            async with httpx.AsyncClient() as client:
                wrong = await client.post(
                    target, params={"callId": "1"}, headers={"X-Streamd-Secret": "nope"}
                )
                keyless = await client.post(
                    target, params={"agent": "Bob"}, headers={"X-Streamd-Secret": "s3cret"}
                )
            records = await read_topic(
                runtime.bootstrap, "streamd.xima.calls", lambda rs: len(rs) >= len(finished)
            )
            dead = await read_topic(runtime.bootstrap, "streamd.deadletter", lambda rs: len(rs) >= 1)

    assert [s.status for s in sim.webservice.sent] == [200] * len(finished)  # 2xx only once acked
    assert (wrong.status_code, keyless.status_code) == (401, 400)
    by_key = {r.key: orjson.loads(r.value) for r in records}  # (partitions: no order across keys)
    assert len(records) == len(finished)
    for call in finished:
        value = by_key[f"cr1:{call['callId']}".encode()]
        assert (value["call_id"], value["fields"], value["method"]) == (call["callId"], call, "POST")
    assert {header_dict(r.headers)["ce_type"] for r in records} == {"xima.calls.CallFinished"}
    assert len({header_dict(r.headers)["ce_id"] for r in records}) == len(finished)
    assert [orjson.loads(r.value)["error_type"] for r in dead] == ["missing_key"]

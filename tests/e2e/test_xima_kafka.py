"""Xima → the daemon (in process) → the embedded broker: realtime metrics after the initializing
phase, in websocket mode, and a historic export whose period cursor survives a daemon restart
(kept in the spool database) without repeating a period on Kafka; settle re-exports and one report
key configured twice, under their own keys and ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.publish.encoding import header_dict
from streamd.sim.xima import XimaSimulator
from tests.harness import running_daemon
from tests.kafka_helpers import read_topic

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


def summaries(records: list[Any]) -> list[str]:
    return [
        orjson.loads(r.value)["period_start"]
        for r in records
        if header_dict(r.headers)["ce_type"] == "xima.historic.Summary"
    ]


async def test_realtime_and_historic_survive_a_restart(tmp_path: Path) -> None:
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    async with EmbeddedBroker() as bootstrap, XimaSimulator(agents=3, tick=0.2) as sim:
        kafka = {"bootstrap_servers": bootstrap, "idempotence": False}  # outlives both daemons
        block = {
            "kind": "xima",
            "name": "cr1",
            "url": sim.url,
            "api_key": sim.api_key,
            "mode": "websocket",
            "interval": "1s",
            "timeout": "900ms",
            "metrics": "all",
            "historic": [{"key": "LT39K5C5", "every": "15m", "lag": "0s", "start": start.isoformat()}],
        }
        async with running_daemon(tmp_path, block, kafka=kafka):
            realtime = await read_topic(bootstrap, "streamd.xima.realtime", lambda rs: len(rs) >= 10)
            first = await read_topic(bootstrap, "streamd.xima.historic", lambda rs: len(summaries(rs)) >= 4)
        assert all(r.key.startswith(b"cr1:") for r in realtime)
        types = {header_dict(r.headers)["ce_type"] for r in realtime}
        assert types == {"xima.realtime.MetricValue"}
        # The same spool database, a new daemon process: the exported periods are not repeated.
        async with running_daemon(tmp_path, block, kafka=kafka):
            realtime_again = await read_topic(
                bootstrap, "streamd.xima.realtime", lambda rs: len(rs) > len(realtime) + 5
            )
            again = await read_topic(bootstrap, "streamd.xima.historic", lambda rs: len(rs) >= len(first))
    periods = summaries(again)
    assert len(periods) == len(set(periods)), f"a period was exported twice: {periods}"
    assert periods[:4] == summaries(first)[:4]
    assert len(realtime_again) > len(realtime)


async def test_settle_reexports_and_one_key_twice_reach_kafka_under_their_ids(tmp_path: Path) -> None:
    start = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    async with XimaSimulator(agents=2) as sim:
        report = {"key": "LT39K5C5", "every": "15m", "lag": "0s", "start": start.isoformat()}
        block = {
            "kind": "xima",
            "name": "cr1",
            "url": sim.url,
            "api_key": sim.api_key,
            "metrics": [],
            "historic": [
                {**report, "id": "talk", "settle": 1},
                {
                    **report,
                    "id": "talk-201",
                    "parameters": [{"name": "Rows (Agent)", "valueType": "AGENT_LIST", "value": ["201"]}],
                },
            ],
        }

        def settled(records: list[Any]) -> int:
            return sum(1 for r in records if orjson.loads(r.value).get("settle"))

        async with running_daemon(tmp_path, block) as runtime:
            records = await read_topic(
                runtime.bootstrap, "streamd.xima.historic", lambda rs: settled(rs) >= 3 * 3
            )
    summaries = [
        (r.key, orjson.loads(r.value))
        for r in records
        if header_dict(r.headers)["ce_type"] == "xima.historic.Summary"
    ]
    firsts = {(k, v["period_start"]) for k, v in summaries if not v["settle"]}
    again = {(k, v["period_start"]) for k, v in summaries if v["settle"]}
    assert {k for k, _ in firsts} == {b"cr1:talk", b"cr1:talk-201"}
    assert again
    assert {k for k, _ in again} == {b"cr1:talk"}
    assert again <= firsts  # a period settled was exported first
    ids = [header_dict(r.headers)["ce_id"] for r in records]
    assert len(ids) == len(set(ids))  # first exports, settle passes and the two exports: ids of their own

"""Xima → the daemon (in process) → the embedded broker: realtime metrics after the initializing
phase, in websocket mode, and a historic export whose period cursor survives a daemon restart
(kept in the spool database) without repeating a period on Kafka."""

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

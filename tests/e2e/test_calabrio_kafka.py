"""Calabrio → the daemon (in process) → the embedded broker: every activity is on Kafka once,
across a daemon restart that resumes from the window cursor kept in the spool database."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.publish.encoding import header_dict
from streamd.sim.calabrio import CalabrioSimulator
from tests.harness import running_daemon
from tests.helpers import until
from tests.kafka_helpers import read_topic

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


def activities(records: list[Any]) -> list[tuple[Any, ...]]:
    out = []
    for r in records:
        if header_dict(r.headers).get("streamd_snapshot") == "true":
            continue
        value = orjson.loads(r.value)
        out.append((r.key, orjson.dumps(value, option=orjson.OPT_SORT_KEYS)))
    return out


async def test_activities_once_across_a_restart(tmp_path: Path) -> None:
    async with EmbeddedBroker() as bootstrap, CalabrioSimulator(agents=3, auto=True, max_late_ms=500) as sim:
        kafka = {"bootstrap_servers": bootstrap, "idempotence": False}
        block = {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
                 "password": sim.password, "interval": "300ms", "timeout": "250ms", "overlap": "5s"}  # fmt: skip
        async with running_daemon(tmp_path, block, kafka=kafka):
            first = await read_topic(bootstrap, "streamd.calabrio.agent-state", lambda rs: len(rs) >= 3)
            polled = len(sim.requests)
            await until(lambda: len(sim.requests) >= polled + 6, timeout=10)  # a few more windows
        async with running_daemon(tmp_path, block, kafka=kafka):
            polled = len(sim.requests)
            await until(lambda: len(sim.requests) >= polled + 8, timeout=10)  # the next windows
        both = await read_topic(bootstrap, "streamd.calabrio.agent-state", lambda rs: len(rs) >= len(first))
    seen = activities(both)
    duplicates = [k for k, n in Counter(seen).items() if n > 1]
    assert not duplicates, f"published twice: {duplicates[:3]}"
    assert len(seen) >= 3
    assert sim.authorizations >= 2  # both daemons logged in

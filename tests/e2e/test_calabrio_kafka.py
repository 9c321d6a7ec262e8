"""Calabrio → the daemon (in process) → the embedded broker: every activity is on Kafka once,
across a daemon restart that resumes from the window cursor kept in the spool database, and
through unreadable answers and late activities (which never move an agent's state back)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.events import AgentState, State
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


async def test_an_unreadable_answer_and_a_late_activity_lose_nothing_and_never_go_back(
    tmp_path: Path,
) -> None:
    """Issue 15 items 7 and 8 through the daemon: the first answers are not JSON (the activity of
    102 is older than the overlap, so only a retried window can still read it), and TALK is
    captured after the READY that followed it."""
    async with EmbeddedBroker() as bootstrap, CalabrioSimulator(agents=2) as sim:
        start = sim.clock_ms()
        sim.add_activity(102, start - 60_000, "HOLD")
        sim.add_activity(101, start - 1_000, "READY_WAITING")
        sim.garble_next("not_json", path="/api/rest/scheduling/realTime/activity/detail", times=2)
        kafka = {"bootstrap_servers": bootstrap, "idempotence": False}
        block = {"kind": "calabrio", "name": "wfm", "url": sim.url, "username": sim.username,
                 "password": sim.password, "interval": "300ms", "timeout": "250ms", "overlap": "30s"}  # fmt: skip
        async with running_daemon(tmp_path, block, kafka=kafka):
            await read_topic(bootstrap, "streamd.agent-state", lambda rs: len(rs) >= 2)
            sim.add_activity(101, start - 1_500, "TALK")  # late: READY at -1.0 s followed it
            vendor = await read_topic(bootstrap, "streamd.calabrio.agent-state", lambda rs: len(rs) >= 3)
            polled = len(sim.calls("/api/rest/scheduling/realTime/activity/detail"))
            await until(lambda: len(sim.calls("/api/rest/scheduling/realTime/activity/detail")) >= polled + 3)
        states = await read_topic(bootstrap, "streamd.agent-state", lambda rs: len(rs) >= 2)
    published = sorted(
        (orjson.loads(r.value)["agentId"], orjson.loads(r.value)["agentState"]) for r in vendor
    )
    assert published == [("101", "READY_WAITING"), ("101", "TALK"), ("102", "HOLD")]
    last = {r.key: AgentState.from_json(r.value) for r in states}  # what a compacted topic keeps
    assert {k.decode(): (s.vendor_state, s.state) for k, s in last.items()} == {
        "wfm:101": ("READY_WAITING", State.AVAILABLE),
        "wfm:102": ("HOLD", State.BUSY),
    }
    assert "TALK" not in {AgentState.from_json(r.value).vendor_state for r in states}

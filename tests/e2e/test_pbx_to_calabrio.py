"""The PBX → WFM bridge end to end: O2G simulator → streamd (canonical agent states on the
embedded broker) → the calabrio-rtdc sink → the Calabrio simulator's data-capture endpoint.
The sink must deliver exactly the agent states the O2G source produced, each agent in order."""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from streamd.app import Runtime, run_daemon
from streamd.config import Config
from streamd.events import AgentState
from streamd.sim.calabrio import CalabrioSimulator, SimAgent, rtdc_sink_config
from streamd.sim.o2g import O2GSimulator
from streamd.sim.o2g_traffic import O2GTraffic
from streamd.sinks.calabrio_rtdc import RtdcMapping, to_record
from tests.kafka_helpers import read_back

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


def per_agent(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        out[r["acdAgentId"]].append((r["gisStateIdentifier"], r["timestamp"]))
    return dict(out)


async def test_sink_delivers_exactly_the_o2g_agent_states(tmp_path: Path) -> None:
    logins = list(O2GTraffic(agents=4, pilots=1).agents)  # the PBX's agents, as their ACD ids in WFM
    wfm_agents = [SimAgent(101 + i, login, "Agent", str(i)) for i, login in enumerate(logins)]
    async with O2GSimulator(agents=4, rate=0) as pbx, CalabrioSimulator(agents=wfm_agents) as wfm:
        source = {"kind": "o2g", "name": "pbx1", "url": pbx.url, "username": pbx.username,
                  "password": pbx.password, "packages": ["agent", "telephony"]}  # fmt: skip
        wfm_block = {"url": wfm.url, "username": wfm.username, "password": wfm.password}
        sink = {**rtdc_sink_config(wfm_block, from_="pbx1"), "flush_interval": "100ms", "map_by_acd_id": True}
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": "embedded"},
                "http": {"listen": "127.0.0.1:0"},
                "spool": {"path": str(tmp_path / "spool.db")},
                "sources": [source],
                "sinks": [sink],
            }
        )
        runtime = Runtime(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(run_daemon, config, runtime=runtime, handle_signals=False))
            with anyio.fail_after(30):
                await runtime.ready.wait()
            pbx.generate(300)  # agent state changes and calls, as a PBX would send them
            with anyio.fail_after(30):
                while True:
                    states = await anyio.to_thread.run_sync(
                        read_back, runtime.bootstrap, "streamd.agent-state", 10**6, 1.0
                    )
                    mapping = RtdcMapping.of(config.sinks[0])
                    expected = [
                        rec.wire()
                        for r in states
                        if (rec := to_record(AgentState.from_json(r.value), mapping, fallback_ms=0))
                        is not None
                    ]
                    if expected and len(wfm.captured) >= len(expected):
                        break
                    await anyio.sleep(0.2)
            runtime.stop.set()
    assert len(expected) > 20  # the snapshot plus real traffic
    assert per_agent(wfm.captured) == per_agent(expected)  # exactly those, each agent in order

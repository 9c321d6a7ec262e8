"""CPU time of one Alvaria poll cycle of 10,000 userActivity rows, side by side with orjson.loads.

What one cycle is: the HTTP answer's bytes through httpx (MockTransport, no sockets), JSON decode,
snapshot diff (validating new/changed rows), ``alvaria.userActivity`` events and canonical
``AgentState`` events - i.e. ``QuerySpec.fetch`` exactly as the source runs it. Three cycles:

- ``first``: the first poll (a full snapshot: every row validated and published),
- ``steady``: 1 % of agents changed state, every duration ticked (the common case),
- ``refresh``: the ``refresh_every`` snapshot (every row published again, none changed).

The agents are in mixed states, each started at its own second (over the last ``--rows``
seconds), as in a real contact centre. ``--same-start``: every agent idle since the same second,
as the simulator starts them (the bench before 2026-12-05); then every agent state has the same
``since``, which lets the last-timestamp cache of ``streamd.events`` hit as it never does in use.

The anchor is a plain ``orjson.loads`` of the same payload, timed in the same run.
Target: < 200 ms CPU per cycle; moonshot 50 ms.

Run: ``python -m bench.alvaria_diff [--rows 10000] [--repeat 7] [--same-start]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import httpx
import orjson

from bench.report import record
from streamd.app import tune_gc
from streamd.sim.alvaria import AlvariaWorld
from streamd.sources.alvaria.client import AlvariaClient, RateGate
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.diff import ScopeState
from streamd.sources.alvaria.query import Cursor, QuerySpec


def cpu(fn: Callable[[], Any]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


async def acpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    result = await fn()
    return time.process_time() - start, result


def payload(world: AlvariaWorld, now: float) -> bytes:
    rows = world.user_rows("team1", now)
    return orjson.dumps({"kind": "via#queryDataList", "totalItems": len(rows), "rows": rows})


def spread(world: AlvariaWorld, now: float) -> None:
    """Mixed states, each agent's started at its own second (up to ``len(agents)`` seconds ago)."""
    states = (("idle", ""), ("active", ""), ("wrap", ""), ("notready", "break"), ("active", ""))
    for n, agent in enumerate(world.agents.values()):
        state, reason = states[n % len(states)]
        world.set_state(agent.user_id, state, now=now - 1 - n, reason_id=reason)


async def run(rows: int, repeat: int, same_start: bool = False) -> None:
    world = AlvariaWorld(agents=rows, teams=1, work_types=1, now=1_800_000_000.0)
    if not same_start:
        spread(world, 1_800_000_000.0)
    body = {"bytes": payload(world, 1_800_000_000.0)}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body["bytes"]))
    cfg = AlvariaSourceConfig(
        kind="alvaria",
        name="bench",
        base_url="http://sim/via/v2/organizations/acme",
        token_url="http://sim/token",
        client_id="c",
        client_secret="s",
        api_key="k",
        queries=["userActivity"],
        team_ids=["team1"],
    )
    clock = {"now": 0.0}
    results: dict[str, list[float]] = {"first": [], "steady": [], "refresh": [], "orjson.loads": []}
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(transport=transport) as http:
        client = AlvariaClient(http, cfg, RateGate(lambda: clock["now"]))
        spec = QuerySpec("userActivity", config=cfg, client=client, clock=lambda: clock["now"])
        for i in range(repeat):
            now = 1_800_000_000.0 + 10 * i
            world.last_step = now
            body["bytes"] = payload(world, now)
            results["orjson.loads"].append(cpu(lambda: orjson.loads(body["bytes"])))
            clock["now"] = 0.0
            seconds, first = await acpu(lambda: spec.fetch({}))
            results["first"].append(seconds)
            # steady: 1 % of the agents change state; every stateDur/signOnDur ticks
            for n, agent in enumerate(world.agents.values()):
                if n % 100 == i % 100:
                    world.set_state(
                        agent.user_id, "active" if agent.state_id != "active" else "wrap", now=now + 5
                    )
            body["bytes"] = payload(world, now + 5)
            clock["now"] = 5.0
            cursor: Cursor = first.cursor
            seconds, steady = await acpu(partial(spec.fetch, cursor))
            results["steady"].append(seconds)
            clock["now"] = 400.0  # past refresh_every: a full snapshot, nothing changed
            cursor = steady.cursor
            seconds, refresh = await acpu(partial(spec.fetch, cursor))
            results["refresh"].append(seconds)
            counts = {
                "first": len(first.events),
                "steady": len(steady.events),
                "refresh": len(refresh.events),
            }
            assert isinstance(cursor[next(iter(cursor))], ScopeState)
    anchor = statistics.median(results["orjson.loads"])
    starts = "one state start" if same_start else "distinct state starts"
    print(
        f"alvaria poll cycle, {rows} userActivity rows ({starts}), {len(body['bytes']) / 1e6:.1f} MB,"
        f" median of {repeat}"
    )
    print(f"{'cycle':<14}{'CPU ms':>9}{'x orjson.loads':>16}{'events':>9}")
    for name, values in results.items():
        median = statistics.median(values)
        events = counts.get(name, 0)
        print(f"{name:<14}{median * 1000:>9.1f}{median / anchor:>16.1f}{events:>9}")
    print("target: < 200 ms CPU per cycle")
    worst = max(statistics.median(v) for k, v in results.items() if k != "orjson.loads")
    record(
        "Alvaria poll cycle, worst CPU ms (anchor: orjson.loads)",
        worst * 1000,
        anchor * 1000,
        unit="ms",
        target="< 200 ms",
        ok=worst < 0.2,
    )


def main() -> None:
    tune_gc()  # the daemon's GC settings (`streamd run` applies them)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--same-start", action="store_true", help="every agent idle since the same second (the old bench)"
    )
    args = parser.parse_args()
    anyio.run(run, args.rows, args.repeat, args.same_start)


if __name__ == "__main__":
    main()

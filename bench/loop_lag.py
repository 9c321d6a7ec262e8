"""The event loop never stalls: loop lag with 50,000 agents on the wallboard, 20 SSE clients
reconnecting, O2G traffic and a Kafka outage being spooled.

Processes, as in production: the daemon (``streamd run``), the O2G simulator (500 events/s on
the chunk channel), the SSE clients (one process, 20 clients that connect, read the snapshot and
reconnect), the embedded broker behind a fault-injecting proxy (``tests/faults/proxy.py``): after
5 s the broker is black-holed for 5 s (the daemon spools), then comes back. The wallboard starts
with 50,000 agents and 800 queue metrics already on the compacted topics.

The figure is the daemon's own ``streamd_event_loop_lag_seconds`` histogram over the run (a
ticker that asks to wake every 50 ms and records how late it woke): its p99 (the upper bound of
the bucket holding the 99th percentile; the buckets are fine around 20 ms: 10, 15, 17.5, 20),
and the shares of ticks later than 20 ms and 10 ms. Target: p99 under 20 ms, so the row is met
only when the p99 bucket ends below 20 ms (a p99 "<= 20 ms" is not met).

The bench also prints how long the daemon's event-loop thread waited for a CPU (Linux
schedstat): on the 2-core machine the SSE client process alone takes about a core parsing 11 MB
snapshots, so part of the lag is the machine's, not the daemon's. ``--nice 10`` runs the load
generators (the SSE clients and the simulator, elsewhere in production) at a lower priority.

Usage: python -m bench.loop_lag [--seconds 20] [--agents 50000] [--clients 20] [--nice 0]
       (python -m bench.loop_lag clients URL SECONDS N is the SSE client process)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from bench.report import record
from streamd.embedded import EmbeddedBroker, free_port
from streamd.events import AgentState, QueueMetric, State
from streamd.publish.encoding import encode
from streamd.sim.o2g_traffic import MIX_ENV
from tests.faults.proxy import FaultProxy  # run from the repository root, as every bench

PREFIX = "lag."


async def clients(url: str, seconds: float, n: int) -> None:
    """``n`` SSE clients that connect, read the whole snapshot and reconnect, for ``seconds``."""
    end = time.monotonic() + seconds
    snapshots = 0

    async def one() -> None:
        nonlocal snapshots
        async with httpx.AsyncClient(timeout=30) as http:
            while time.monotonic() < end:
                async with http.stream("GET", f"{url}/api/v1/stream") as response:
                    snapshot = False
                    async for line in response.aiter_lines():
                        if line.startswith("event: snapshot"):
                            snapshot = True
                        elif snapshot and line.startswith("data: "):  # read whole, as a page does
                            snapshots += 1
                            break

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    print(f"{snapshots} snapshots read", flush=True)


def lag_buckets(url: str) -> dict[float, float]:
    """The daemon's cumulative loop-lag histogram buckets (upper bound -> count)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("streamd_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def p99(before: dict[float, float], after: dict[float, float]) -> tuple[float, float]:
    """The p99 bucket bound of the observations between two scrapes, and how many there were."""
    deltas = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = deltas[-1][1] if deltas else 0.0
    for le, count in deltas:
        if count >= 0.99 * total:
            return le, total
    return float("inf"), total


def late(before: dict[float, float], after: dict[float, float], bound: float = 0.02) -> float:
    """The share of the ticks between two scrapes that woke later than ``bound`` seconds (a
    bucket bound of the histogram)."""
    if bound not in after:
        raise ValueError(f"the loop-lag histogram has no {bound} s bucket")
    total = after.get(float("inf"), 0.0) - before.get(float("inf"), 0.0)
    within = after[bound] - before.get(bound, 0.0)
    return 1 - within / total if total else 0.0


def shares(before: dict[float, float], after: dict[float, float]) -> str:
    """``x % later than 20 ms, y % later than 10 ms`` for the ticks between two scrapes."""
    return (
        f"{late(before, after, 0.02):.1%} later than 20 ms, {late(before, after, 0.01):.1%} later than 10 ms"
    )


def thread_times(pid: int) -> tuple[float, float]:
    """Seconds the main thread of process ``pid`` ran on a CPU and waited for one (Linux
    ``schedstat``; zeros where it cannot be read)."""
    try:
        ran, waited, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(ran) / 1e9, int(waited) / 1e9


async def seed_wallboard(bootstrap: str, agents: int) -> None:
    """The compacted canonical topics hold ``agents`` agents and 800 queue metrics already."""
    from bench.raw import raw_produce

    states = list(State)
    records = [
        encode(
            AgentState(
                vendor="o2g", source=f"pbx{i % 4}", agent_id=f"a{i}", state=states[i % len(states)],
                agent_name=f"Agent {i}", queue_ids=(f"q{i % 40}",),
            ).to_event(),
            PREFIX,
        )
        for i in range(agents)
    ]  # fmt: skip
    records += [
        encode(
            QueueMetric(vendor="o2g", source="pbx0", queue_id=f"q{q}", metric=f"m{m}", value=q).to_event(),
            PREFIX,
        )
        for q in range(40)
        for m in range(20)
    ]
    await raw_produce(bootstrap, records)


async def main(seconds: float, agents: int, n_clients: int, nice: int = 0) -> int:
    broker_port, proxy_port, port, sim_port = free_port(), free_port(), free_port(), free_port()
    proxy = FaultProxy(proxy_port, broker_port).start()
    url = f"http://127.0.0.1:{port}"
    sim = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-m",
            "streamd.sim.o2g",
            "--port",
            str(sim_port),
            "--agents",
            "200",
            "--rate",
            "500",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, MIX_ENV: "full"},  # the realistic mix: RTI, event summaries, system too
    )
    os.setpriority(os.PRIO_PROCESS, sim.pid, nice)
    try:
        async with EmbeddedBroker(port=broker_port, advertised_port=proxy_port) as bootstrap:
            await seed_wallboard(bootstrap, agents)
            with tempfile.TemporaryDirectory() as tmp:
                config = Path(tmp) / "streamd.yaml"
                config.write_text(
                    f"kafka: {{bootstrap_servers: '{bootstrap}', idempotence: false, topic_prefix: '{PREFIX}',"
                    " spool_after: 1s}\n"
                    f"http: {{listen: '127.0.0.1:{port}'}}\n"
                    f"spool: {{path: '{tmp}/spool.db'}}\n"
                    "sources:\n"
                    f"  - {{kind: o2g, name: pbx, url: 'http://127.0.0.1:{sim_port}', username: admin,"
                    " password: admin, packages: [agent, telephony, pilot, rti, eventSummary, system]}\n"
                )
                log = os.environ.get("BENCH_DAEMON_LOG")  # where the daemon's output goes, if kept
                daemon = subprocess.Popen(  # noqa: ASYNC220
                    [sys.executable, "-m", "streamd", "run", "-c", str(config)],
                    stdout=subprocess.DEVNULL,
                    stderr=open(log, "ab") if log else subprocess.DEVNULL,  # noqa: ASYNC230, SIM115
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
                try:
                    async with httpx.AsyncClient(timeout=10) as http:
                        with anyio.fail_after(60):
                            while True:
                                try:
                                    state = (await http.get(f"{url}/api/v1/state")).json()
                                    if len(state["agents"]) >= agents:
                                        break
                                except (httpx.HTTPError, ValueError, KeyError):
                                    pass
                                await anyio.sleep(0.5)
                    before, cpu_before, started = lag_buckets(url), thread_times(daemon.pid), time.monotonic()
                    load = subprocess.Popen(  # noqa: ASYNC220
                        [sys.executable, "-m", "bench.loop_lag", "clients", url, str(seconds), str(n_clients)]
                    )
                    os.setpriority(os.PRIO_PROCESS, load.pid, nice)
                    await anyio.sleep(5)
                    outage_start = lag_buckets(url)
                    proxy.mode = "blackhole"  # a Kafka outage: the daemon spools
                    await anyio.sleep(5)
                    proxy.mode = "pass"
                    outage_end = lag_buckets(url)
                    await anyio.to_thread.run_sync(load.wait)
                    after, cpu_after, ended = lag_buckets(url), thread_times(daemon.pid), time.monotonic()
                finally:
                    daemon.terminate()
                    daemon.wait(30)
    finally:
        sim.terminate()
        sim.wait(10)
        proxy.close()
    bound, ticks = p99(before, after)
    if ticks < seconds:  # the daemon measured nothing: no figure rather than a wrong one
        print(
            f"the daemon recorded {ticks:.0f} loop-lag ticks in {seconds:.0f} s: no figure", file=sys.stderr
        )
        return 1
    print(f"{agents} agents on the wallboard, {n_clients} SSE clients reconnecting for {seconds:.0f} s,")
    print(
        "O2G traffic at 500 events/s, a 5 s Kafka outage (black hole) in the middle"
        + (f"; SSE clients and simulator at nice {nice}" if nice else "")
    )
    print(
        f"event loop lag p99 <= {bound * 1000:.1f} ms over {ticks:.0f} ticks (target < 20 ms),"
        f" {shares(before, after)}; load average {os.getloadavg()[0]:.2f}"
    )
    for phase, (a, b) in {
        "before the outage": (before, outage_start),
        "during the outage": (outage_start, outage_end),
        "after the outage": (outage_end, after),
    }.items():
        phase_bound, phase_ticks = p99(a, b)
        print(
            f"  {phase:<18}: p99 <= {phase_bound * 1000:.1f} ms over {phase_ticks:.0f} ticks, {shares(a, b)}"
        )
    ran, waited = (cpu_after[i] - cpu_before[i] for i in range(2))
    if ran:
        print(
            f"the daemon's event-loop thread ran on a CPU {ran / (ended - started):.0%} of the run and waited"
            f" for one {waited / (ended - started):.0%} of the run (the machine's share of the lag)"
        )
    record(
        "event loop lag p99 ms (50k agents, 20 SSE, outage)",
        bound * 1000,
        None,
        unit="ms",
        target="< 20 ms",
        ok=bound < 0.02,  # the bucket holding p99 ends below 20 ms: "<= 20" is not met
    )
    over_20, over_10 = late(before, after, 0.02), late(before, after, 0.01)
    record(
        f"loop-lag ticks % > 20 ms (> 10 ms: {over_10:.1%})",
        over_20 * 100,
        None,
        unit="%",
        target="0 (the aim)",
        ok=over_20 == 0,
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["clients"]:
        anyio.run(clients, sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--nice", type=int, default=0, help="niceness of the SSE clients and the simulator")
    args = parser.parse_args()
    sys.exit(anyio.run(main, args.seconds, args.agents, args.clients, args.nice))

"""Memory of the wallboard hub: RSS for N agents (default 50,000) next to an empty baseline.

Run: ``python bench/wallboard_memory.py [--agents 50000] [--queues 200]``. Agents go through the
same path as in the daemon (JSON value from the ``agent-state`` topic -> ``AgentState.from_json`` ->
``StateHub.update_agent``), each with a name, a vendor state, two queues and a ``since``; every
agent then changes state once, so the replay buffer is full. Exits 1 above the 250 MB target.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.report import record
from streamd.events import AgentState, QueueMetric, State
from streamd.publish.encoding import dumps
from streamd.wallboard.consumer import decode_metric
from streamd.wallboard.hub import StateHub

TARGET_MB = 250
STATES = list(State)
VENDOR_STATES = {State.AVAILABLE: "READY", State.BUSY: "BUSY", State.AFTER_CALL_WORK: "WRAPUP"}


def rss_bytes() -> int:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def agent_value(i: int, state: State, t0: datetime, queues: int) -> bytes:
    return dumps(
        AgentState(
            vendor="o2g",
            source=f"pbx{i % 4}",
            agent_id=f"{40000 + i}",
            agent_name=f"Agent {i:05d} Lastname{i % 997}",
            state=state,
            vendor_state=VENDOR_STATES.get(state, "WITHDRAW"),
            reason_code=None if state is not State.NOT_READY else f"R{i % 12}",
            since=t0 + timedelta(seconds=i),
            queue_ids=(f"q{i % queues}", f"q{(i * 7) % queues}"),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=50_000)
    parser.add_argument("--queues", type=int, default=200)
    args = parser.parse_args(argv)

    hub = StateHub(max_agents=max(args.agents, 1), max_metrics=100_000)
    t0 = datetime(2026, 1, 1, 8, tzinfo=UTC)
    gc.collect()
    baseline = rss_bytes()

    for i in range(args.agents):
        hub.update_agent(AgentState.from_json(agent_value(i, STATES[i % 5], t0, args.queues)))
    for i in range(args.agents):  # one change each: the replay buffer fills up
        hub.update_agent(AgentState.from_json(agent_value(i, STATES[(i + 1) % 5], t0, args.queues)))
    gc.collect()
    with_agents = rss_bytes()

    metrics = ("waiting_calls", "longest_waiting_time_in_list", "service_level", "running_calls")
    for q in range(args.queues):
        for m in metrics:
            qm = QueueMetric(vendor="o2g", source="pbx0", queue_id=f"q{q}", metric=m, value=q, unit="calls")
            hub.update_metric(decode_metric(dumps(qm)))
    gc.collect()
    total = rss_bytes()

    per_agent = (with_agents - baseline) / max(args.agents, 1)
    mb = 1024 * 1024
    print(f"empty hub (baseline)       RSS {baseline / mb:8.1f} MB")
    print(
        f"{args.agents:>6} agents              RSS {with_agents / mb:8.1f} MB  (+{(with_agents - baseline) / mb:.1f} MB)"
    )
    print(
        f"+ {args.queues * len(metrics):>5} queue metrics     RSS {total / mb:8.1f} MB  (+{(total - with_agents) / mb:.1f} MB)"
    )
    print(
        f"bytes per agent            {per_agent:8.0f}  (with a full replay buffer: {len(hub._replay)} changes)"
    )
    print(
        f"target                     RSS < {TARGET_MB} MB: {'ok' if total < TARGET_MB * mb else 'EXCEEDED'}"
    )
    record(
        "wallboard RSS MB, 50k agents (anchor: empty hub)",
        total / mb,
        baseline / mb,
        unit="MB",
        target=f"< {TARGET_MB} MB",
        ok=total < TARGET_MB * mb,
    )
    return 0 if total < TARGET_MB * mb else 1


if __name__ == "__main__":
    sys.exit(main())

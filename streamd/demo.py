"""``streamd demo``: the embedded broker, every vendor simulator and the daemon, in one command.

It prints the URLs (health, metrics, wallboard) and a live count of published events, and stops
cleanly on Ctrl-C. Nothing outside this machine is contacted.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

from streamd.app import Runtime, run_daemon
from streamd.config import Config
from streamd.runtime import task_group
from streamd.telemetry import published_total

log = logging.getLogger("streamd.demo")

# A demo simulator: given the agent count, an async context manager yielding the source config
# (a dict, validated like any config file) of a simulator it has started.
DemoSimulator = Callable[[int], AbstractAsyncContextManager[dict[str, Any]]]


def demo_simulators() -> list[DemoSimulator]:
    """Every vendor simulator the demo starts."""
    from streamd.sim import alvaria, calabrio, o2g, xima

    return [o2g.demo_source, xima.demo_source, alvaria.demo, calabrio.demo_source]


def demo_sinks(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The PBX → Calabrio bridge: the O2G simulator's agent states pushed into the Calabrio one."""
    from streamd.sim.calabrio import rtdc_sink_config

    pbx = next((s for s in sources if s["kind"] == "o2g"), None)
    wfm = next((s for s in sources if s["kind"] == "calabrio"), None)
    if pbx is None or wfm is None:
        return []
    return [rtdc_sink_config(wfm, from_=pbx["name"])]


DEMO_WALLBOARD: dict[str, Any] = {
    "stale_after": "2m",
    "page_seconds": "10s",
    "thresholds": {
        "metrics": {
            "waiting": {"warn": 3, "alert": 6},
            "longest_wait_seconds": {"warn": 30, "alert": 60},
            "average_wait_seconds": {"warn": 45, "alert": 90},
        },
        "service_level_target": 80,
        "queues": {"o2g-sim:60141": {"metrics": {"waiting": {"warn": 2, "alert": 4}}}},
        "time_in_state": {
            "not_ready": {"warn": "5m", "alert": "15m"},
            "after_call_work": {"warn": "2m", "alert": "5m"},
            "busy": {"warn": "10m", "alert": "20m"},
        },
    },
    "views": {
        "floor": {"title": "Whole floor", "expand": ["logged_out", "unknown"]},
        "queues": {"title": "Queues", "sections": ["summary", "queues"]},
        "pbx": {"title": "PBX agents", "source": ["o2g-sim"]},
    },
    "reason_labels": {"wfm": {"1": "Break", "2": "Lunch", "7": "Training"}},
}
"""The demo's ``wallboard:`` section (config/demo.yaml spells it out; a test keeps them equal)."""


def demo_config(sources: list[dict[str, Any]], *, host: str, port: int, spool: Path) -> dict[str, Any]:
    """The config ``streamd demo`` runs, given its simulators' ``sources:`` entries (config/demo.yaml
    is this with fixed simulator ports; a test keeps them equal)."""
    return {
        "kafka": {"bootstrap_servers": "embedded", "topic_prefix": "streamd."},
        "http": {"listen": f"{_bracketed(host)}:{port}"},
        "spool": {"path": str(spool)},
        "wallboard": DEMO_WALLBOARD,
        "shutdown_grace": "5s",
        "sources": sources,
        "sinks": demo_sinks(sources),
    }


async def run_demo(
    port: int = 8080,
    agents: int = 20,
    duration: float | None = None,
    host: str = "127.0.0.1",
    replicas: int = 1,
) -> Runtime | None:
    """Run the demo until Ctrl-C (or ``duration`` seconds); HTTP on ``host`` (``0.0.0.0``: reachable
    from other machines, e.g. a demo on a remote VM). With ``replicas`` > 1, that many ``streamd
    run`` processes share the sources as a cluster (:mod:`streamd.cluster.demo`; returns None)."""
    if replicas > 1:
        from streamd.cluster.demo import run_replicas

        await run_replicas(replicas, port=port, agents=agents, duration=duration, host=host)
        return None
    async with AsyncExitStack() as stack:
        sources = [await stack.enter_async_context(sim(agents)) for sim in demo_simulators()]
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamd-demo-")))
        config = Config.model_validate(demo_config(sources, host=host, port=port, spool=workdir / "spool.db"))
        runtime = Runtime(config)
        async with task_group() as tg:  # a fatal start-up error surfaces as itself (one line)
            tg.start_soon(_report, runtime, len(sources), duration, host)
            await run_daemon(config, runtime=runtime)
            tg.cancel_scope.cancel()
    return runtime


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _shown_host(host: str) -> str:
    """The host to print in URLs: this machine's name when listening on every address."""
    if host in ("0.0.0.0", "::", "[::]", ""):
        import socket

        return socket.getfqdn() or "localhost"
    return _bracketed(host)


async def _report(runtime: Runtime, n_sources: int, duration: float | None, host: str = "127.0.0.1") -> None:
    await runtime.ready.wait()
    base = f"http://{_shown_host(host)}:{runtime.http_port}"
    out = sys.stderr
    print(f"\nstreamd demo running: Kafka (embedded) at {runtime.bootstrap}", file=out)
    if not n_sources:
        print("  no vendor simulators exist yet: the daemon runs with no sources", file=out)
    print(f"  wallboard  {base}/wallboard\n  state      {base}/api/v1/state", file=out)
    print(f"  health     {base}/readyz\n  metrics    {base}/metrics", file=out)
    print(
        f"  tail       streamd tail agent-state --bootstrap {runtime.bootstrap}\n  Ctrl-C to stop\n", file=out
    )
    with anyio.move_on_after(duration if duration is not None else float("inf")):
        while True:
            await anyio.sleep(5)
            print(f"  {published_total():.0f} events published", file=out)
    runtime.stop.set()

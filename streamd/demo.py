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


async def run_demo(
    port: int = 8080, agents: int = 20, duration: float | None = None, host: str = "127.0.0.1"
) -> Runtime:
    """Run the demo until Ctrl-C (or ``duration`` seconds); HTTP on ``host`` (``0.0.0.0``: reachable
    from other machines, e.g. a demo on a remote VM)."""
    async with AsyncExitStack() as stack:
        sources = [await stack.enter_async_context(sim(agents)) for sim in demo_simulators()]
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamd-demo-")))
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": "embedded"},
                "http": {"listen": f"{_bracketed(host)}:{port}"},
                "spool": {"path": str(workdir / "spool.db")},
                "shutdown_grace": "5s",
                "sources": sources,
                "sinks": demo_sinks(sources),
            }
        )
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

"""``streamd demo --replicas N``: the demo's simulators and N ``streamd run`` processes sharing
them through one embedded broker (docs/architecture.md "Several replicas").

Rules:

1. One embedded broker and one set of simulators, started here; N replicas, each a real
   ``streamd run`` process (its own event loop, metrics and spool, like a pod) with the demo's
   config plus ``cluster: {enabled: true}``, on ports ``port``, ``port + 1``, ... (``port`` 0: free
   ones). A config a replica would refuse is refused here first, with the reasons.
2. Each replica logs to a file in the demo's work directory (printed); the demo prints every
   replica's URLs, then the assignment read from each ``/readyz`` whenever it changes.
3. Ctrl-C, SIGTERM, SIGHUP or ``duration``: every replica (each in its own session, so a
   terminal's Ctrl-C reaches the demo only) gets SIGTERM (it unsubscribes and leaves the group) and is
   killed if it has not stopped within :data:`STOP_BOUND`; a replica that exits by itself stops
   the demo with the end of its log.
4. Every replica, like the broker, is tethered to the demo (:mod:`streamd.tether`): a demo that
   dies without stopping them (SIGKILL) has them stopped all the same (SIGTERM, as in rule 3).
"""

from __future__ import annotations

import itertools
import logging
import subprocess
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, Any

import anyio
import httpx
import yaml
from anyio.abc import Process

from streamd.config import Config
from streamd.embedded import EmbeddedBroker, free_port
from streamd.errors import FatalError, TransientError
from streamd.runtime import retry_until, task_group, watch_signals
from streamd.tether import kill_group, tethered

log = logging.getLogger("streamd.demo")

GROUP = "streamd-demo"
STOP_BOUND = 15.0
"""Seconds a replica has to stop after SIGTERM before it is killed."""
READY_BOUND = 60.0
"""Seconds every replica has to answer ``/readyz`` with 200."""


def replica_config(base: dict[str, Any], bootstrap: str) -> dict[str, Any]:
    """The demo's config as one replica of a cluster (rule 1)."""
    return {
        **base,
        "kafka": {**base["kafka"], "bootstrap_servers": bootstrap},
        "cluster": {"enabled": True, "group_id": GROUP, "session_timeout": "10s"},
    }


def owned(readyz: dict[str, Any]) -> list[str]:
    """The sources and sinks a replica runs, from its ``/readyz`` body."""
    components = readyz.get("components") or {}
    return sorted(
        n for n, c in components.items() if isinstance(c, dict) and c.get("kind") in ("source", "sink")
    )


class _Replica:
    def __init__(self, index: int, port: int, url: str, shown: str, log_path: Path) -> None:
        self.index, self.port, self.url, self.shown, self.log_path = index, port, url, shown, log_path
        self.process: Process | None = None
        self.owns: list[str] | None = None

    def tail(self) -> str:
        return self.log_path.read_bytes()[-2000:].decode("utf-8", "replace")

    def check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise FatalError(
                f"demo replica {self.index} exited ({self.process.returncode}); its log ends:\n{self.tail()}"
            )


async def run_replicas(
    n: int, *, port: int, agents: int, duration: float | None, host: str, out: IO[str] = sys.stderr
) -> None:
    """Run the demo with ``n`` replicas until Ctrl-C or ``duration`` seconds (module rules).

    Raises:
        FatalError: the broker did not start, a replica exited, or not every replica was ready
            within :data:`READY_BOUND`.
        ConfigError: the replicas' config is invalid.
    """
    stop = anyio.CancelScope()
    async with task_group() as signals:
        # Ctrl-C, SIGTERM, SIGHUP from the first instruction on: leave the block below, whose
        # stack stops the replicas, the simulators and the broker in order (rule 3)
        await signals.start(watch_signals, lambda _signum: stop.cancel())
        with stop:
            await _run_replicas(n, port=port, agents=agents, duration=duration, host=host, out=out)
        signals.cancel_scope.cancel()


async def _run_replicas(
    n: int, *, port: int, agents: int, duration: float | None, host: str, out: IO[str]
) -> None:
    from streamd.demo import _shown_host, demo_config, demo_simulators

    async with AsyncExitStack() as stack:
        bootstrap = await stack.enter_async_context(EmbeddedBroker())
        sources = [await stack.enter_async_context(sim(agents)) for sim in demo_simulators()]
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamd-demo-")))
        local = "127.0.0.1" if host in ("0.0.0.0", "", "::", "[::]") else host.strip("[]")
        replicas: list[_Replica] = []
        for i in range(n):
            p = port + i if port else free_port()
            cfg = replica_config(
                demo_config(sources, host=host, port=p, spool=workdir / f"spool-{i}.db"), bootstrap
            )
            Config.model_validate(cfg)  # rule 1: refused here, with the reasons
            path = workdir / f"replica-{i}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
            url = f"http://[{local}]:{p}" if ":" in local else f"http://{local}:{p}"
            replica = _Replica(i, p, url, f"http://{_shown_host(host)}:{p}", workdir / f"replica-{i}.log")
            replica.process = await _start(stack, path, replica.log_path)
            replicas.append(replica)
        await _all_ready(replicas)
        print(
            f"\nstreamd demo running {n} replicas: Kafka (embedded) at {bootstrap}, group {GROUP}", file=out
        )
        for r in replicas:
            print(f"  replica {r.index}  wallboard {r.shown}/wallboard  health {r.shown}/readyz", file=out)
            print(f"             log {r.log_path}", file=out)
        print(f"  tail       streamd tail agent-state --bootstrap {bootstrap}\n  Ctrl-C to stop\n", file=out)
        with anyio.move_on_after(duration if duration is not None else float("inf")):
            async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
                while True:
                    await _show_assignment(http, replicas, out)
                    await anyio.sleep(1)


async def _start(stack: AsyncExitStack, config: Path, log_path: Path) -> Process:
    log_file = stack.enter_context(log_path.open("wb"))
    process = await anyio.open_process(
        tethered([sys.executable, "-m", "streamd", "--log-format", "text", "run", "-c", str(config)]),
        stdin=subprocess.PIPE,  # rule 4: closed when the demo dies
        stdout=log_file,
        stderr=log_file,
        start_new_session=True,  # Ctrl-C reaches the demo only; it stops the replicas (rule 3)
    )
    stack.push_async_callback(_stop, process)
    return process


async def _stop(process: Process) -> None:
    """SIGTERM, then SIGKILL after :data:`STOP_BOUND` (rule 3)."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            try:
                process.terminate()
            except ProcessLookupError:
                return
            with anyio.move_on_after(STOP_BOUND):
                await process.wait()
            if process.returncode is None:
                kill_group(process.pid)  # the tether and the replica
                await process.wait()


async def _all_ready(replicas: list[_Replica]) -> None:
    """Wait until every replica answers ``/readyz`` with 200 (retried by the runtime).

    Raises:
        FatalError: a replica exited, or they were not all ready within :data:`READY_BOUND`.
    """
    async with httpx.AsyncClient(timeout=1, trust_env=False) as http:

        async def attempt() -> None:
            for r in replicas:
                r.check_alive()
                try:
                    ready = (await http.get(f"{r.url}/readyz")).status_code == 200
                except httpx.HTTPError as exc:
                    raise TransientError(f"replica {r.index}: {exc}") from None
                if not ready:
                    raise TransientError(f"replica {r.index} not ready yet")

        await retry_until(
            attempt,
            within=READY_BOUND,
            what=f"demo replicas (logs in {replicas[0].log_path.parent})",
            delays=lambda: itertools.repeat(0.2),
        )


async def _show_assignment(http: httpx.AsyncClient, replicas: list[_Replica], out: IO[str]) -> None:
    """One line per replica whose assignment changed (rule 2)."""
    for r in replicas:
        r.check_alive()
        try:
            body = (await http.get(f"{r.url}/readyz")).json()
        except (httpx.HTTPError, ValueError):
            continue  # busy or restarting: shown at the next look
        if not isinstance(body, dict) or "(joining)" in str(body.get("components", {}).get("cluster", {})):
            continue  # not in the group yet: nothing to show
        owns = owned(body)
        if owns != r.owns:
            r.owns = owns
            print(f"  replica {r.index} runs {', '.join(owns) or 'nothing'}", file=out)

"""O2G webhook delivery, 2xx only after durability, 32 keep-alive connections.

streamd: the daemon runs in process (``run_daemon``: embedded broker, publisher, pipeline, HTTP
server, an O2G source with ``delivery: webhook`` and a shared secret) against the O2G simulator,
which accepts the subscription; the load process then POSTs realistic O2G events (one per
request, as O2G sends them) to ``/webhooks/o2g/{source}?secret=...`` with the subscription id as
the Cookie header. Every 200 means the event was acknowledged by Kafka (or spooled).

anchor: the same load POSTs the same bodies to a trivial starlette endpoint (reads the body,
answers 200) served by the same server setup (``streamd.http.server.serve``, the same parser and
bounds) in the same process, in the same run: the HTTP stack's own ceiling.

The load generator is its own process and lean, as O2G is (~30 us of CPU per POST, where httpx
took ~450 and was the bound): raw asyncio connections, one request in flight on each, every
request's bytes built once (Content-Type, Cookie, Content-Length), each response read to its
Content-Length and checked (a status line, a Content-Length; anything else is counted as bad).
A 1 s warm-up is not counted. It prints POST/s, latency percentiles (request written to response
complete), the statuses and both processes' CPU per POST (the server's over the measured window).

Usage: python -m bench.o2g_webhook [--seconds 10] [--concurrency 32] [--linger 5ms] [--profile FILE]
           [--server uvicorn-httptools|uvicorn-h11|hypercorn] [--uvloop]
       (python -m bench.o2g_webhook load URL COOKIE SECONDS CONCURRENCY is the load process)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import anyio
import orjson
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.report import record
from streamd.app import Runtime, run_daemon, tune_gc
from streamd.config import Config
from streamd.embedded import free_port
from streamd.http.limits import HTTPTOOLS, Parser
from streamd.http.limits import protocol as bounded
from streamd.http.server import serve
from streamd.sim.o2g import O2GSimulator
from streamd.sim.o2g_traffic import O2GTraffic
from streamd.telemetry import published_total

SOURCE = "pbx-bench"
SERVE: list[Callable[..., Any]] = [serve]  # the server under test (``--server``)
SECRET = "s3cret"
WARMUP = 1.0

# -- the load process ------------------------------------------------------------------------------


def bodies(n: int = 5000) -> list[bytes]:
    """Realistic O2G events (every package: agent states, pilot and call events, RTI, event
    summaries, system), one JSON body each."""
    traffic = O2GTraffic(agents=200, pilots=2, seed=2, full_mix=True)
    out: list[bytes] = []
    while len(out) < n:
        out.extend(orjson.dumps(e) for e in traffic.tick())
    return out


def requests(url: str, cookie: str, payloads: list[bytes]) -> list[bytes]:
    """One complete HTTP/1.1 request per body, built once (what O2G sends: a keep-alive POST with
    Content-Type, Content-Length and the subscription id as Cookie)."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Cookie: {cookie}\r\n"
    ).encode()
    return [head + b"Content-Length: %d\r\n\r\n" % len(body) + body for body in payloads]


class BadResponse(Exception):
    """An answer that is not a complete HTTP/1.1 response with a Content-Length."""


class Connection(asyncio.Protocol):
    """One keep-alive client connection: one request in flight, its response parsed minimally
    (status line, headers to the blank line, a Content-Length body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.waiter: asyncio.Future[tuple[int, bool]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(BadResponse(f"connection closed before a complete response: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._parse()

    def _parse(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = self.buffer[:end].lower()
        lines = head.split(b"\r\n")
        status_line = lines[0]
        if not status_line.startswith(b"http/1.1 ") or len(status_line) < 12:
            self.waiter.set_exception(BadResponse(f"bad status line {status_line[:60]!r}"))
            return
        length = -1
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = b"close" in value
        if length < 0:
            self.waiter.set_exception(BadResponse("response without Content-Length"))
            return
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        self.buffer = self.buffer[total:]
        self.waiter.set_result((int(status_line[9:12]), close))

    async def send(self, request: bytes) -> tuple[int, bool]:
        """Send one request; its status and whether the server closes the connection after it."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


async def load(url: str, cookie: str, seconds: float, concurrency: int) -> None:
    """POST bodies over ``concurrency`` keep-alive connections for WARMUP + ``seconds``; print a
    JSON summary (latencies and statuses of the measured window, every request sent, this
    process's CPU seconds)."""
    wire = requests(url, cookie, bodies())
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = [0]
    started = time.perf_counter()
    measure_from, stop_at = started + WARMUP, started + WARMUP + seconds

    async def sender(k: int) -> None:
        connection: Connection | None = None
        i = k
        while (now := time.perf_counter()) < stop_at:
            if connection is None or connection.closed:
                _, connection = await loop.create_connection(Connection, host, port)
            try:
                status, close = await connection.send(wire[i % len(wire)])
            except BadResponse as exc:
                status, close = -1, True
                statuses[f"bad: {exc}"[:80]] += 1
            i += concurrency
            sent[0] += 1
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
                if status > 0:
                    statuses[str(status)] += 1
            if close and connection.transport is not None:
                connection.transport.close()
                connection = None
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    async def marker() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        sys.stdout.write("measuring\n")  # the server process measures its CPU from here
        sys.stdout.flush()

    cpu = time.process_time()
    await asyncio.gather(marker(), *(sender(k) for k in range(concurrency)))
    result = {
        "latencies": latencies,
        "statuses": dict(statuses),
        "seconds": seconds,
        "sent": sent[0],
        "load_cpu_us": (time.process_time() - cpu) / max(1, sent[0]) * 1e6,
    }
    print(orjson.dumps(result).decode())


# -- the two sides ---------------------------------------------------------------------------------


async def run_load(
    url: str, cookie: str, seconds: float, concurrency: int, profile: str | None = None
) -> dict[str, Any]:
    """Run the load process against ``url``; its summary plus this (server) process's CPU over the
    measured window (``cpu``: share of one core; ``cpu_us``: microseconds per answered POST)."""
    cmd = [sys.executable, "-m", "bench.o2g_webhook", "load", url, cookie, str(seconds), str(concurrency)]
    profiler = cProfile.Profile() if profile else None
    cpu = wall = 0.0
    lines: list[bytes] = []
    async with await anyio.open_process(cmd, stderr=None) as process:
        assert process.stdout is not None
        async for chunk in process.stdout:
            lines.extend(chunk.splitlines())  # the marker line is sent alone, flushed
            if b"measuring" in lines and not wall:
                cpu, wall = time.process_time(), time.perf_counter()
                if profiler:
                    profiler.enable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(profile))
        if await process.wait() != 0:
            raise RuntimeError(f"the load process failed (exit {process.returncode})")
    summary = dict(orjson.loads(b"".join(lines[lines.index(b"measuring") + 1 :])))
    summary["cpu"] = cpu / wall
    summary["cpu_us"] = cpu / max(1, len(summary["latencies"])) * 1e6
    return summary


async def serve_hypercorn(
    app: Any, host: str, port: int, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED, **_: Any
) -> None:
    """``streamd.http.server.serve``'s contract on hypercorn (``--server hypercorn``: measured, not
    shipped; no connection or head limits): serve until cancelled, then a graceful shutdown."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config as HypercornConfig

    port = port or free_port()
    config = HypercornConfig()
    config.bind, config.graceful_timeout, config.accesslog = [f"{host}:{port}"], 2.0, None
    stop, done = anyio.Event(), anyio.Event()

    async def run() -> None:
        try:
            with anyio.CancelScope(shield=True):  # hypercorn's graceful shutdown must not be cancelled
                await hypercorn_serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            while True:
                try:
                    await (await anyio.connect_tcp(host, port)).aclose()
                    break
                except OSError:
                    await anyio.sleep(0.01)
        task_status.started(port)
        try:
            await anyio.sleep_forever()
        finally:
            stop.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await done.wait()


def use_server(server: str) -> Callable[..., Any]:
    """The serve function for ``--server`` (uvicorn with either parser, both bounded as streamd
    serves; hypercorn patched in)."""
    import streamd.app
    import streamd.http.server

    if server == "hypercorn":
        streamd.app.serve = serve_hypercorn  # type: ignore[attr-defined]
        return serve_hypercorn
    parser: Parser = "httptools" if server == "uvicorn-httptools" else "h11"
    streamd.http.server.protocol = lambda limits, _: bounded(limits, parser)  # type: ignore[attr-defined]
    return serve


@asynccontextmanager
async def trivial_server() -> AsyncIterator[str]:
    """The anchor: a starlette endpoint that reads the body and answers 200, on streamd's uvicorn setup."""

    async def hook(request: Request) -> Response:
        await request.body()
        return Response(status_code=200)

    app = Starlette(routes=[Route("/webhooks/o2g/{source}", hook, methods=["POST"])])
    async with anyio.create_task_group() as tg:
        port = await tg.start(SERVE[0], app, "127.0.0.1", 0)
        yield f"http://127.0.0.1:{port}/webhooks/o2g/{SOURCE}"
        tg.cancel_scope.cancel()


@asynccontextmanager
async def daemon(
    workdir: Path, sim: O2GSimulator, kafka: dict[str, Any]
) -> AsyncIterator[tuple[Runtime, str]]:
    """streamd in process with an O2G webhook source subscribed to ``sim``; yields the hook URL."""
    port = free_port()
    hook = f"http://127.0.0.1:{port}/webhooks/o2g/{SOURCE}"
    config = Config.model_validate(
        {
            "kafka": {"bootstrap_servers": "embedded", **kafka},
            "http": {"listen": f"127.0.0.1:{port}"},
            "spool": {"path": str(workdir / "spool.db")},
            "shutdown_grace": "3s",
            "sources": [
                {
                    "kind": "o2g",
                    "name": SOURCE,
                    "url": sim.url,
                    "username": sim.username,
                    "password": sim.password,
                    "packages": ["agent", "pilot", "telephony", "rti", "eventSummary", "system"],
                    "delivery": "webhook",
                    "webhook_public_url": hook,
                    "webhook_secret": SECRET,
                }
            ],
        }
    )
    runtime = Runtime(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run_daemon, config, runtime=runtime, handle_signals=False))
        try:
            with anyio.fail_after(30):
                await runtime.ready.wait()
            yield runtime, f"{hook}?secret={SECRET}"
        finally:
            runtime.stop.set()


def summary(name: str, result: dict[str, Any]) -> str:
    ms: list[float] = sorted(float(x) * 1000 for x in result["latencies"])
    if not ms:
        return f"{name:<26}: no requests"

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p / 100 * len(ms)))]

    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result["statuses"].items()))
    return (
        f"{name:<26}: {len(ms) / result['seconds']:6.0f} POST/s  p50 {pct(50):6.1f}  p99 {pct(99):6.1f}  "
        f"max {ms[-1]:6.1f} ms  server CPU {result['cpu']:4.0%} = {result['cpu_us']:5.0f} us/POST  "
        f"(client {result['load_cpu_us']:4.0f} us/POST; {statuses})"
    )


async def main(
    seconds: float,
    concurrency: int,
    kafka: dict[str, Any],
    profile: str | None,
    server: str = "uvicorn-httptools" if HTTPTOOLS else "uvicorn-h11",
) -> None:
    SERVE[0] = use_server(server)
    tune_gc()  # what `streamd run` does before run_daemon: both sides get the daemon's GC settings
    with tempfile.TemporaryDirectory() as tmp:
        async with O2GSimulator(agents=20) as sim, daemon(Path(tmp), sim, kafka) as (_, hook):
            (sid,) = sim.subscriptions()
            async with trivial_server() as trivial:
                anchor = await run_load(trivial, sid, seconds, concurrency)
            before = published_total()
            ours = await run_load(hook, sid, seconds, concurrency, profile)
            acked = published_total() - before
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(
        f"O2G webhook POSTs, one event each, {concurrency} keep-alive connections, {seconds:.0f} s, "
        f"{server} on {loop}, load average {os.getloadavg()[0]:.2f}"
    )
    print(summary("trivial starlette endpoint", anchor))
    print(summary("streamd O2G webhook", ours))
    print(f"records acknowledged by Kafka during the streamd run: {acked:.0f}")
    print("target: >= 2,000 POST/s, p99 < 50 ms (moonshot 4,000/s)")
    rate = len(ours["latencies"]) / ours["seconds"]
    trivial_rate = len(anchor["latencies"]) / anchor["seconds"]
    p99 = (
        sorted(ours["latencies"])[int(0.99 * (len(ours["latencies"]) - 1))] * 1000
        if ours["latencies"]
        else float("inf")
    )
    record(
        "webhook POST/s, 2xx once durable (anchor: trivial endpoint)",
        rate,
        trivial_rate,
        unit="POST/s",
        target=">= 2,000 POST/s",
        ok=rate >= 2000,
    )
    record("webhook p99 ms", p99, None, unit="ms", target="<= 50 ms", ok=p99 <= 50)
    record(
        "webhook server CPU us per POST (anchor: trivial endpoint)",
        ours["cpu_us"],
        anchor["cpu_us"],
        unit="us",
        target="-",
        ok=True,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["load"]:
        anyio.run(load, sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
        parser.add_argument("--seconds", type=float, default=10)
        parser.add_argument("--concurrency", type=int, default=32)
        parser.add_argument("--linger", default=None, help="streamd's kafka.linger (default: the config's)")
        parser.add_argument("--profile", default=None, help="cProfile the daemon's run into this file")
        parser.add_argument(
            "--server",
            default="uvicorn-httptools" if HTTPTOOLS else "uvicorn-h11",
            choices=["uvicorn-h11", "uvicorn-httptools", "hypercorn"],
            help="the HTTP server (default: what streamd serves with)",
        )
        parser.add_argument("--uvloop", action="store_true", help="run on uvloop (anyio backend_options)")
        args = parser.parse_args()
        kafka = {} if args.linger is None else {"linger": args.linger}
        anyio.run(
            main,
            args.seconds,
            args.concurrency,
            kafka,
            args.profile,
            args.server,
            backend_options={"use_uvloop": args.uvloop},
        )

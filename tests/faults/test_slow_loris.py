"""Fault injection: a slow-loris client against the real daemon process. 300 connections that say
nothing, or trickle a request head a byte at a time and never finish it, are all closed once
``http.header_timeout`` has passed (each counted), while the daemon keeps answering others."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import SocketStream

from streamd.embedded import free_port
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import write_config

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]

IDLE, TRICKLING = 150, 150
HEAD = b"POST /webhooks/o2g/x HTTP/1.1\r\nhost: streamd\r\nx-pad: " + b"a" * 10_000


async def test_idle_and_trickling_connections_are_closed_after_the_header_timeout(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, "{bootstrap_servers: embedded}", "shutdown_grace: 3s")
    text = config.read_text().replace(
        f"http: {{listen: '127.0.0.1:{port}'}}", f"http: {{listen: '127.0.0.1:{port}', header_timeout: 1s}}"
    )
    config.write_text(text)
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    closed: list[str] = []
    streams: list[SocketStream] = []
    try:
        await anyio.to_thread.run_sync(daemon.wait_ready)

        async def idle() -> None:
            stream = await anyio.connect_tcp("127.0.0.1", port)
            streams.append(stream)
            try:
                while await stream.receive():
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                closed.append("idle")

        async def trickle() -> None:
            stream = await anyio.connect_tcp("127.0.0.1", port)
            streams.append(stream)
            for byte in HEAD:  # ~2,000 s at this pace: never done before the timeout
                try:
                    await stream.send(bytes([byte]))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    break
                await anyio.sleep(0.2)
            closed.append("trickling")

        # The timeout is 1 s (10 s until the daemon passes http.* to the server): bounded by 60 s.
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for _ in range(IDLE):
                    tg.start_soon(idle)
                for _ in range(TRICKLING):
                    tg.start_soon(trickle)
                while len(streams) < IDLE + TRICKLING:
                    await anyio.sleep(0.05)
                async with httpx.AsyncClient(timeout=5) as http:  # others are still answered
                    live = await http.get(daemon.url("/livez"))
        metrics = httpx.get(daemon.url("/metrics"), timeout=5).text
        code = await anyio.to_thread.run_sync(daemon.terminate, 10)
    finally:
        for stream in streams:
            await stream.aclose()
        daemon.kill()
    assert live.status_code == 200
    assert sorted(closed) == ["idle"] * IDLE + ["trickling"] * TRICKLING
    (counted,) = [
        line
        for line in metrics.splitlines()
        if line.startswith("streamd_errors_total") and '"header_timeout"' in line
    ]
    assert float(counted.split()[-1]) == IDLE + TRICKLING
    assert code == 0, daemon.log()

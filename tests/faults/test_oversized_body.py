"""Fault injection: oversized webhook bodies against the real daemon process. Four 50 MB POSTs at
once (two declaring their Content-Length, two chunked) are answered 413, and the daemon's peak
memory grows by a fraction of one body: nothing is read whole (the cap is ``max_event_size`` x
the batch factor, 4 MiB by default). The daemon answers webhooks normally afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from streamd.embedded import EmbeddedBroker, free_port
from streamd.sim.o2g import O2GSimulator
from streamd.sources.o2g.webhook import BATCH_FACTOR
from tests.e2e.daemon import Daemon
from tests.faults.daemon_helpers import write_config
from tests.sources.o2g_helpers import call

pytestmark = [pytest.mark.kafka, pytest.mark.anyio]

BODY = 50 * 1024 * 1024
CHUNK = b" " * 65536
MiB = 1024 * 1024


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def _body() -> AsyncIterator[bytes]:
    for _ in range(BODY // len(CHUNK)):
        yield CHUNK


async def test_oversized_webhook_bodies_get_413_and_are_never_read_whole(tmp_path: Path) -> None:
    port = free_port()
    async with EmbeddedBroker() as bootstrap, O2GSimulator(agents=1) as sim:
        config = write_config(
            tmp_path,
            port,
            f"{{bootstrap_servers: '{bootstrap}', idempotence: false}}",
            "shutdown_grace: 3s",
            "sources:",
            f"  - {{kind: o2g, name: wh, url: '{sim.url}', username: {sim.username}, password: {sim.password},"
            f" packages: [pilot], delivery: webhook, snapshot: false,"
            f" webhook_public_url: 'http://127.0.0.1:{port}/webhooks/o2g/wh'}}",
        )
        daemon = Daemon(config, port, tmp_path / "daemon.log").start()
        try:
            await anyio.to_thread.run_sync(daemon.wait_ready)
            assert daemon.process is not None
            pid = daemon.process.pid
            (sid,) = sim.subscriptions()
            url = daemon.url("/webhooks/o2g/wh")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # peak RSS := current RSS
            rss_before = _kib(pid, "VmRSS")
            statuses: list[int] = []

            async def post(http: httpx.AsyncClient, declared: bool) -> None:
                headers = {"Cookie": sid, **({"Content-Length": str(BODY)} if declared else {})}
                response = await http.post(url, content=_body(), headers=headers)
                statuses.append(response.status_code)

            with anyio.fail_after(60):
                async with httpx.AsyncClient(timeout=30) as http, anyio.create_task_group() as tg:
                    for declared in (True, True, False, False):
                        tg.start_soon(post, http, declared)
            growth = _kib(pid, "VmHWM") - rss_before
            sim.publish(call("after", pilot="60141", caller="6"))  # O2G's own POST still goes through
            with anyio.fail_after(20):
                while not sim.webhook_log:
                    await anyio.sleep(0.05)
            metrics = httpx.get(daemon.url("/metrics"), timeout=5).text
            code = await anyio.to_thread.run_sync(daemon.terminate, 10)
        finally:
            daemon.kill()
    assert statuses == [413] * 4, statuses
    # Two chunked bodies read up to the cap (BATCH_FACTOR MiB each), twice that for allocator slack;
    # reading them whole grew the peak by over 500 MiB.
    assert growth < 4 * BATCH_FACTOR * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
    assert [status for _, status in sim.webhook_log] == [200]
    body_too_large = [
        line
        for line in metrics.splitlines()
        if 'error_type="body_too_large"' in line and 'source="wh"' in line
    ]
    assert body_too_large, metrics
    assert float(body_too_large[0].split()[-1]) == 4.0, body_too_large
    assert code == 0, daemon.log()

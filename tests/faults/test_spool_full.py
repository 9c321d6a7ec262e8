"""Fault injection: Kafka refuses connections (a broker behind a FaultProxy) until the outage
spool (``spool.max_bytes``, 1 MiB) is full. Webhook POSTs are answered 2xx while the spool has
room, then 503 (O2G resends them, nothing is lost) while ``streamd_spool_events`` shows what is
held; once Kafka is back the spool drains and POSTs are answered 2xx again. The spool's refusal
is logged once when it starts and once when it has room again, never per POST, and no line
claims events were lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from streamd.app import Runtime, run_daemon
from streamd.config import Config
from streamd.embedded import EmbeddedBroker, free_port
from streamd.errors import PublishError
from streamd.events import Event
from streamd.publish.encoding import Record
from streamd.publish.pipeline import Delivery, Pipeline
from streamd.publish.spool import Spool
from streamd.sim.o2g import O2GSimulator
from streamd.telemetry import ERRORS
from tests.faults.daemon_helpers import samples
from tests.faults.proxy import FaultProxy
from tests.sources.o2g_helpers import call

pytestmark = pytest.mark.anyio

PAD = "x" * 100_000  # a 100 kB event: ten fill the 1 MiB spool


@asynccontextmanager
async def daemon(config: dict[str, Any]) -> AsyncIterator[Runtime]:
    """The daemon in process until ready; stopped cleanly when the block ends."""
    runtime = Runtime(Config.model_validate(config))
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run_daemon, runtime.config, runtime=runtime, handle_signals=False))
        try:
            with anyio.fail_after(30):
                await runtime.ready.wait()
            yield runtime
        finally:
            runtime.stop.set()


def spool_events(metrics: str) -> float:
    return samples(metrics, "streamd_spool_events")


@pytest.mark.kafka
async def test_a_full_spool_answers_503_shows_in_the_gauge_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port, broker_port, proxy_port = free_port(), free_port(), free_port()
    proxy = FaultProxy(proxy_port, broker_port).start()
    try:
        broker = EmbeddedBroker(port=broker_port, advertised_port=proxy_port)
        async with broker as bootstrap, O2GSimulator(agents=1) as sim:
            config = {
                "kafka": {"bootstrap_servers": bootstrap, "idempotence": False, "spool_after": "1s"},
                "http": {"listen": f"127.0.0.1:{port}"},
                "spool": {"path": str(tmp_path / "spool.db"), "max_bytes": 1_048_576},
                "shutdown_grace": "3s",
                "sources": [
                    {
                        "kind": "o2g",
                        "name": "wh",
                        "url": sim.url,
                        "username": sim.username,
                        "password": sim.password,
                        "packages": ["pilot"],
                        "delivery": "webhook",
                        "snapshot": False,
                        "webhook_public_url": f"http://127.0.0.1:{port}/webhooks/o2g/wh",
                    }
                ],
            }
            async with daemon(config), httpx.AsyncClient(timeout=15) as http:
                (sid,) = sim.subscriptions()
                url = f"http://127.0.0.1:{port}/webhooks/o2g/wh"
                n = 0

                async def post() -> int:
                    nonlocal n
                    n += 1
                    event = {**call(f"c{n}", pilot="60141", caller="6"), "pad": PAD}
                    response = await http.post(url, content=orjson.dumps(event), headers={"Cookie": sid})
                    return response.status_code

                async def metrics() -> str:
                    return (await http.get(f"http://127.0.0.1:{port}/metrics")).text

                assert await post() == 200
                proxy.mode = "refuse"  # Kafka is down
                before_full: list[int] = []
                with anyio.fail_after(60):
                    while not before_full or before_full[-1] == 200:
                        before_full.append(await post())
                held = spool_events(await metrics())
                refused = [await post() for _ in range(5)]
                held_after = spool_events(await metrics())
                proxy.mode = "pass"  # Kafka is back: the spool drains
                with anyio.fail_after(60):
                    while spool_events(await metrics()) > 0:
                        await anyio.sleep(0.1)
                recovered = [await post() for _ in range(3)]
    finally:
        proxy.close()
    assert before_full[-1] == 503, before_full
    assert set(before_full[:-1]) == {200}, before_full
    assert len(before_full) > 3  # the spool took several events first (2xx while it had room)
    assert held > 0  # the gauge shows what the full spool holds
    assert held_after == held
    assert refused == [503] * 5
    assert recovered == [200] * 3
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("streamd")]
    full = [m for m in messages if "outage spool refuses events" in m]
    room = [m for m in messages if "outage spool has room again" in m]
    assert len(full) == 1, messages  # one line per transition, not per refused POST
    assert "outage spool full" in full[0]
    assert "webhooks answer 503" in full[0]
    assert len(room) == 1, messages
    assert "0 events of push sources kept in the write-ahead" in room[0]  # the webhook's callers lost nothing
    assert not [m for m in messages if "events lost" in m or "events of wh lost" in m], messages
    assert not [r for r in caplog.records if r.name == "streamd.sources.o2g" and r.levelno >= logging.WARNING]


class FlakyKafka:
    """A producer that cannot reach Kafka while ``down`` (every send fails at once, as on a refused
    connection) and acknowledges everything otherwise."""

    def __init__(self) -> None:
        self.down = True

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        if self.down:
            raise PublishError("KafkaConnectionError: connection refused")

    async def send_many(self, records: Sequence[Record]) -> list[Delivery]:
        await self.ensure_topics([])
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return [(future, list(records))]


def _events(n: int) -> list[Event]:
    return [
        Event(topic="t", type="x.t.E", source="s", key=f"s:{i}", data={"pad": "x" * 1000}) for i in range(n)
    ]


def _errors(source: str, error_type: str) -> float:
    return ERRORS.labels(source, "publish", error_type)._value.get()


async def test_spool_refusals_say_what_was_lost_once(caplog: pytest.LogCaptureFixture) -> None:
    """Durable callers that got the error lost nothing; push events that could not be spooled did."""
    caplog.set_level(logging.INFO, logger="streamd.pipeline")
    kafka = FlakyKafka()
    pipeline = Pipeline(kafka, Spool(":memory:", max_bytes=20_000), "p.", spool_after=0.2)
    durable, push = pipeline.emitter("durable"), pipeline.emitter("pushed")
    refused_before, lost_before = _errors("durable", "spool_refused"), _errors("pushed", "spool_failed")
    async with anyio.create_task_group() as tg:
        tg.start_soon(pipeline.run)
        with anyio.fail_after(10):
            refusals = 0
            while refusals < 3:
                try:
                    await durable(_events(2))
                except PublishError:
                    refusals += 1
            for _ in range(3):
                await push.push(_events(2))
            while _errors("pushed", "spool_failed") - lost_before < 6:
                await anyio.sleep(0.01)
            kafka.down = False  # Kafka is back: the spool drains, then takes events again
            while pipeline.spool.count:
                await anyio.sleep(0.01)
            await durable(_events(2))
        await durable.aclose()
        await push.aclose()
    assert _errors("durable", "spool_refused") - refused_before == 6  # 3 refused calls of 2 events
    assert _errors("pushed", "spool_failed") - lost_before == 6  # 3 lost push batches of 2 events
    lines = [r.getMessage() for r in caplog.records]
    said = [m for m in lines if "refuses" in m or "lost" in m or "room" in m]
    assert len(said) == 3, lines  # one line per transition, not per refused call
    assert said[0].startswith("outage spool refuses events: outage spool full ("), said
    assert said[0].endswith(
        "; webhooks answer 503 and pollers retry (nothing lost), push sources' events that cannot be"
        " spooled are lost"
    )
    assert said[1] == "pushed: events lost: the outage spool refuses them"
    assert said[2] == (
        "outage spool has room again: 6 events were refused meanwhile (durable callers retry),"
        " 6 events of push sources lost"
    )

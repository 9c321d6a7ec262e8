"""Failure isolation (issue 14): a source that fails for good is ``failed`` with its reason, retried
on the slow schedule, and never stops the others; the daemon stays up and ready. Also: a stop
during start-up is not held up by a source that has not connected yet."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from streamd.app import Runtime, run_daemon
from streamd.config import Config
from streamd.embedded import EmbeddedBroker, free_port
from streamd.publish.encoding import header_dict
from streamd.sim import o2g, xima
from streamd.sim.alvaria import AlvariaSimulator
from streamd.sim.o2g import O2GSimulator
from streamd.telemetry import ComponentState
from tests.e2e.daemon import Daemon
from tests.kafka_helpers import read_back, read_topic
from tests.sources.o2g_helpers import call

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


async def test_bad_credentials_of_one_source_leave_the_others_publishing(tmp_path: Path) -> None:
    async with EmbeddedBroker() as bootstrap, o2g.demo_source(5, rate=50) as pbx, xima.demo_source(2) as cr:
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": bootstrap, "idempotence": False, "topic_prefix": "fatal."},
                "http": {"listen": "127.0.0.1:0"},
                "spool": {"path": str(tmp_path / "spool.db")},
                "shutdown_grace": "3s",
                "sources": [pbx, {**cr, "api_key": "wrong-key", "mode": "poll"}],  # the Xima key is wrong
            }
        )
        runtime = Runtime(config)
        thresholds = gc.get_threshold()
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: run_daemon(config, runtime=runtime, handle_signals=False))
            with anyio.fail_after(20):
                await runtime.ready.wait()
            assert gc.get_threshold() == thresholds  # run_daemon leaves the GC alone (`run` tunes it)
            components = runtime.health.components
            assert components[cr["name"]].state is ComponentState.FAILED
            assert "HTTP 401" in components[cr["name"]].detail
            assert "wrong-key" not in components[cr["name"]].detail
            assert components[pbx["name"]].state is ComponentState.RUNNING
            assert runtime.health.ready()  # readiness: any (one source runs)
            snapshot = await anyio.to_thread.run_sync(read_back, bootstrap, "fatal.agent-state", 5)
            assert len(snapshot) >= 5  # the O2G snapshot, published while the Xima source is failed
            runtime.stop.set()  # a clean stop: run_daemon returns, it raises nothing
    assert components[cr["name"]].state is ComponentState.FAILED
    assert components[pbx["name"]].state is ComponentState.DRAINING


async def test_stop_while_a_source_is_still_starting(tmp_path: Path) -> None:
    """SIGTERM during start-up is not held up by a source that has not connected yet."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")  # accepts, never answers
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    config = Config.model_validate(
        {
            "kafka": {"bootstrap_servers": "embedded"},
            "http": {"listen": "127.0.0.1:0"},
            "spool": {"path": str(tmp_path / "spool.db")},
            "shutdown_grace": "10s",
            "sources": [  # the second source is never reached: its emitter must be closed too
                {
                    "kind": "o2g",
                    "name": name,
                    "url": f"http://127.0.0.1:{port}",
                    "username": "u",
                    "password": "p",
                    "packages": ["agent"],
                    "request_timeout": "60s",
                }
                for name in ("blackhole", "never-started")
            ],
        }
    )
    runtime = Runtime(config)

    done = anyio.Event()

    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep_forever()

    async def daemon() -> None:
        await run_daemon(config, runtime=runtime, handle_signals=False)
        done.set()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        tg.start_soon(daemon)
        with anyio.fail_after(20):
            while "blackhole" not in runtime.health.components:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        assert not runtime.ready.is_set()
        runtime.stop.set()
        with anyio.fail_after(5):  # neither the 60 s request timeout nor the 10 s shutdown grace
            await done.wait()
        assert runtime.health.components["blackhole"].state is ComponentState.DRAINING
        tg.cancel_scope.cancel()


# -- the real process: O2G + Alvaria, Alvaria's token endpoint refuses the client for good --------


async def readyz(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status_code, response.json()


async def until_component(
    client: httpx.AsyncClient, daemon: Daemon, name: str, state: str, timeout: float = 20
) -> dict[str, Any]:
    """Poll ``/readyz`` until component ``name`` is in ``state``; the daemon must stay up meanwhile."""
    body: dict[str, Any] = {}
    with anyio.fail_after(timeout):
        while True:
            assert daemon.process is not None
            assert daemon.process.poll() is None, daemon.log()
            _, body = await readyz(client)
            component = body["components"].get(name, {})
            if component.get("state") == state:
                return body
            await anyio.sleep(0.1)


def config_yaml(workdir: Path, port: int, bootstrap: str, pbx: O2GSimulator, cloud: AlvariaSimulator) -> Path:
    alvaria = cloud.source_config("cloud1", queries=["userActivity", "presence"], interval="200ms")
    document = {
        "kafka": {"bootstrap_servers": bootstrap, "idempotence": False, "topic_prefix": "iso."},
        "http": {"listen": f"127.0.0.1:{port}"},
        "spool": {"path": str(workdir / "spool.db")},
        "shutdown_grace": "3s",
        "failed_retry": "1s",  # the slow schedule, short for the test (default 5 min)
        "sources": [
            {
                "kind": "o2g",
                "name": "pbx1",
                "url": pbx.url,
                "username": pbx.username,
                "password": pbx.password,
                "packages": ["pilot"],
            },
            alvaria,
        ],
    }
    path = workdir / "streamd.yaml"
    path.write_bytes(orjson.dumps(document))  # JSON is YAML
    return path


def call_refs(records: list[Any]) -> list[str]:
    return [
        orjson.loads(r.value)["callRef"]
        for r in records
        if header_dict(r.headers)["ce_type"] == "o2g.pilot.OnPilotCallCreated"
    ]


def row_changes(records: list[Any], state: str) -> list[Any]:
    return [
        r
        for r in records
        if header_dict(r.headers)["ce_type"] == "alvaria.userActivity.RowChanged"
        and orjson.loads(r.value)["row"]["stateId"] == state
    ]


async def test_a_vendor_refused_for_good_fails_alone_and_recovers_by_itself(tmp_path: Path) -> None:
    port = free_port()
    async with (
        EmbeddedBroker() as bootstrap,
        O2GSimulator(agents=2) as pbx,
        AlvariaSimulator(agents=4, auto_advance=False) as cloud,
    ):
        daemon = Daemon(config_yaml(tmp_path, port, bootstrap, pbx, cloud), port, tmp_path / "daemon.log")
        daemon.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
                await anyio.to_thread.run_sync(daemon.wait_ready)
                await until_component(client, daemon, "cloud1", "running")
                await until_component(client, daemon, "pbx1", "running")

                cloud.refuse_client()  # revoked client secret: every token request answers 401 from now on
                await until_component(client, daemon, "cloud1", "failed")
                status, body = await readyz(client)
                assert status == 200
                assert body["ready"]
                failed = body["components"]["cloud1"]
                assert "rejected client 'streamd'" in failed["detail"]
                assert {job["state"] for job in failed["jobs"].values()} == {"failed"}
                assert set(failed["jobs"]) == {"userActivity", "presence"}
                assert body["components"]["pbx1"]["state"] == "running"
                metrics = (await client.get("/metrics")).text
                assert 'streamd_component_state{component="cloud1",state="failed"} 1.0' in metrics

                refs = [f"iso{i}" for i in range(5)]
                pbx.publish(*(call(r) for r in refs))  # O2G events keep reaching Kafka meanwhile
                pilot = await read_topic(
                    bootstrap, "iso.o2g.pilot", lambda rs: set(refs) <= set(call_refs(rs))
                )
                assert call_refs(pilot)[-5:] == refs
                assert daemon.process is not None
                assert daemon.process.poll() is None

                refused = len(cloud.requests("token"))
                cloud.refuse_client(False)  # fixed: the slow retry (1 s here) finds out by itself
                await until_component(client, daemon, "cloud1", "running")
                assert len(cloud.requests("token")) > refused
                cloud.world.set_state("agent00003", "notready", now=cloud.clock(), reason_id="lunch")
                await read_topic(
                    bootstrap, "iso.alvaria.userActivity", lambda rs: bool(row_changes(rs, "notready"))
                )
                status, body = await readyz(client)
                assert status == 200
                assert body["components"]["cloud1"]["detail"] == ""
            # in a thread: the simulators in this process must answer the teardown's requests
            code = await anyio.to_thread.run_sync(daemon.terminate, 3 + 5)
        finally:
            daemon.kill()
    log = daemon.log_path.read_text()
    assert code == 0, log
    assert "Traceback" not in log
    transitions = [line for line in log.splitlines() if "source cloud1:" in line]
    assert any("-> failed (" in line and "rejected client 'streamd'" in line for line in transitions)
    assert any("failed -> running" in line or "retrying -> running" in line for line in transitions)

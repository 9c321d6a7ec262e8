"""A fatal error in one source stops the daemon through the ordered shutdown: what the other
sources had accepted is still published, and ``run_daemon`` then raises the fatal error."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from streamd.app import Runtime, run_daemon
from streamd.config import Config
from streamd.embedded import EmbeddedBroker
from streamd.errors import AuthError
from streamd.sim import o2g, xima
from streamd.telemetry import ComponentState
from tests.kafka_helpers import read_back

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]


async def test_bad_credentials_stop_the_daemon_after_publishing_the_others(tmp_path: Path) -> None:
    async with EmbeddedBroker() as bootstrap, o2g.demo_source(5, rate=50) as pbx, xima.demo_source(2) as cr:
        config = Config.model_validate(
            {
                "kafka": {"bootstrap_servers": bootstrap, "idempotence": False, "topic_prefix": "fatal."},
                "http": {"listen": "127.0.0.1:0"},
                "spool": {"path": str(tmp_path / "spool.db")},
                "shutdown_grace": "3s",
                # the O2G source starts first and streams; the Xima key is wrong
                "sources": [pbx, {**cr, "api_key": "wrong-key", "mode": "poll"}],
            }
        )
        runtime = Runtime(config)
        with anyio.fail_after(20), pytest.raises(AuthError, match="HTTP 401"):
            await run_daemon(config, runtime=runtime, handle_signals=False)
        components = runtime.health.components
        assert components[cr["name"]].state is ComponentState.FAILED
        assert components[pbx["name"]].state is ComponentState.DRAINING
        assert runtime.health.draining
        snapshot = await anyio.to_thread.run_sync(read_back, bootstrap, "fatal.agent-state", 5)
    assert len(snapshot) >= 5  # the O2G snapshot published before the daemon stopped
    assert "wrong-key" not in str(components[cr["name"]].detail)


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

"""The in-process daemon and broker-side publishers shared by the Kafka, e2e and browser tests.

Rules: every helper is an async context manager the test body enters (never a fixture holding a
task group across ``yield``); leaving the block stops what it started — the daemon is asked to stop
(``runtime.stop``) and its clean shutdown is awaited, publishers are drained and closed. Read back
what reached the broker with :mod:`tests.kafka_helpers`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from streamd.app import Runtime, run_daemon
from streamd.config import Config
from streamd.config_core import KafkaConfig
from streamd.publish.kafka import KafkaPublisher
from streamd.publish.pipeline import Pipeline, SourceEmit
from streamd.publish.spool import Spool

EMBEDDED: Mapping[str, Any] = {"bootstrap_servers": "embedded"}


@asynccontextmanager
async def running_daemon(
    workdir: Path,
    *sources: Mapping[str, Any],
    kafka: Mapping[str, Any] = EMBEDDED,
    listen: str = "127.0.0.1:0",
    http: Mapping[str, Any] | None = None,
    shutdown_grace: str = "3s",
    ready_timeout: float = 30,
) -> AsyncIterator[Runtime]:
    """``run_daemon`` in process (no signal handlers, default plugins incl. the wallboard) until ready.

    Args:
        workdir: where the spool database goes (a test's ``tmp_path``).
        sources: source config blocks, as in the YAML file.
        kafka: the ``kafka`` section; the embedded broker by default (``runtime.bootstrap`` names it).
        listen: the HTTP address (port 0: an ephemeral port, read it from ``runtime.http_port``).
        http: further ``http`` settings (e.g. ``auth_token``).
        shutdown_grace: the config's shutdown grace.
        ready_timeout: how long the daemon may take to become ready.

    Yields:
        The daemon's ``Runtime`` (``bootstrap``, ``http_port``, ``health``, ...).
    """
    config = Config.model_validate(
        {
            "kafka": dict(kafka),
            "http": {"listen": listen, **(http or {})},
            "spool": {"path": str(workdir / "spool.db")},
            "shutdown_grace": shutdown_grace,
            "sources": [dict(s) for s in sources],
        }
    )
    runtime = Runtime(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(run_daemon, config, runtime=runtime, handle_signals=False))
        try:
            with anyio.fail_after(ready_timeout):
                await runtime.ready.wait()
            yield runtime
        finally:
            runtime.stop.set()  # the task group then waits for the clean shutdown


@asynccontextmanager
async def kafka_publisher(bootstrap: str, **kafka: Any) -> AsyncIterator[KafkaPublisher]:
    """A started ``KafkaPublisher`` on the embedded broker at ``bootstrap`` (``kafka``: config fields)."""
    publisher = KafkaPublisher(KafkaConfig(bootstrap_servers=bootstrap, **kafka), bootstrap, embedded=True)
    await publisher.start()
    try:
        yield publisher
    finally:
        await publisher.stop()


@asynccontextmanager
async def publishing(
    bootstrap: str, *, prefix: str = "streamd.", source: str = "sim"
) -> AsyncIterator[SourceEmit]:
    """A pipeline into the broker, as the source ``source`` would publish; yields its durable ``emit``.

    On exit the emitter is closed (everything emitted is acknowledged) and the publisher stopped.
    """
    async with kafka_publisher(bootstrap, linger="1ms") as publisher:
        pipeline = Pipeline(publisher, Spool(":memory:"), prefix)
        emit = pipeline.emitter(source)
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipeline.run)
            try:
                yield emit
            finally:  # also when the block fails: an emitter left open warns when collected, in
                await emit.aclose()  # whichever later test the collector happens to run in

"""Composition root: one anyio task group, start order, ordered shutdown (DESIGN §2, STYLE 10).

Start: embedded broker (if configured) -> publisher (connected within ``startup_timeout``) ->
HTTP -> pipeline -> sources and sinks, each awaited until it signals readiness.

Stop (SIGTERM/SIGINT, or ``stop`` set): ``/readyz`` says draining; the sources' scope is
cancelled (each source's ``finally`` unsubscribes and closes its emitter); the pipeline drains
what is queued and in flight; the producer is flushed and stopped inside ``shutdown_grace``,
shielded; the HTTP server stops last. A second signal skips the grace period.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup, TaskStatus
from starlette.routing import BaseRoute

from streamd.config import Config
from streamd.embedded import EmbeddedBroker
from streamd.errors import FatalError
from streamd.http.app import Webhooks, build_app
from streamd.http.server import serve
from streamd.publish.kafka import KafkaPublisher
from streamd.publish.pipeline import Listener, Pipeline, SourceEmit
from streamd.publish.spool import Spool
from streamd.retry import leading_error
from streamd.sources.base import Source, SourceDeps
from streamd.telemetry import ComponentState, Health, published_total
from streamd.wallboard.plugin import wallboard_plugin

log = logging.getLogger("streamd")


class Sink(Protocol):
    """A runtime sink: runs until cancelled, signals readiness."""

    async def run(self, *, task_status: TaskStatus[None]) -> None: ...


@dataclass(slots=True)
class Runtime:
    """What a running daemon exposes (to tests, ``demo`` and the wallboard)."""

    config: Config
    bootstrap: str = ""
    http_port: int = 0
    health: Health = field(default_factory=Health)
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    listeners: list[Listener] = field(default_factory=list)
    extra_routes: list[BaseRoute] = field(default_factory=list)
    fatal: BaseException | None = None


def tune_gc() -> None:
    """Make the cyclic garbage collector fit a long-running event pipeline.

    Start-up objects (modules, config, models) are frozen out of collection, and generation 0 is
    collected every 50,000 net allocations instead of 700: with thousands of short-lived events in
    flight the default thresholds spent about 40 % of the hot path's CPU re-scanning live objects
    (measured by ``bench/o2g_chunk_throughput.py``). Events hold no reference cycles, so this only
    delays reclaiming rare cyclic garbage.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def run_daemon(
    config: Config,
    *,
    runtime: Runtime | None = None,
    handle_signals: bool = True,
    plugins: Sequence[Callable[[Runtime, TaskGroup], Any]] = (wallboard_plugin,),
) -> Runtime:
    """Run streamd until stopped; returns the runtime after a clean shutdown.

    Raises:
        FatalError: a component failed in a way retrying cannot fix (one clear line).
    """
    tune_gc()
    rt = runtime or Runtime(config)
    publisher_health = rt.health.add("kafka", "publisher")
    async with AsyncExitStack() as stack:
        rt.bootstrap = (
            await stack.enter_async_context(EmbeddedBroker())
            if config.kafka.embedded
            else config.kafka.bootstrap_servers
        )
        publisher = KafkaPublisher(config.kafka, rt.bootstrap, embedded=config.kafka.embedded)
        await publisher.start()
        stack.push_async_callback(_stop_publisher, publisher, config.shutdown_grace)
        await publisher.ensure_topics(publisher.default_topics())
        publisher_health.set(ComponentState.RUNNING)

        spool = Spool(config.spool.path, config.spool.max_bytes)
        stack.callback(spool.close)
        if spool.recovered:
            log.warning(
                "%d events read before the last stop were not acknowledged: spooled again", spool.recovered
            )
        pipeline = Pipeline(
            publisher,
            spool,
            config.kafka.topic_prefix,
            queue_size=config.queue_size,
            max_record_bytes=config.kafka.max_request_size - 1024,  # room for the batch overhead
            delivery_timeout=config.kafka.delivery_timeout,
            spool_after=config.kafka.spool_after,
            write_ahead=config.spool.commit_interval if config.spool.write_ahead else None,
            component=publisher_health,
        )
        webhooks = Webhooks()
        deps = [_deps(rt, spool, webhooks, s.name) for s in config.sources]
        sources: list[Source] = [s.build(d) for s, d in zip(config.sources, deps, strict=True)]
        emitters = [pipeline.emitter(s.name) for s in config.sources]

        async with anyio.create_task_group() as root:
            if handle_signals:
                root.start_soon(_watch_signals, rt, root)
            for plugin in plugins:
                await plugin(rt, root)
            pipeline.listeners.extend(rt.listeners)
            app = build_app(rt.health, webhooks, rt.extra_routes)
            try:
                rt.http_port = await root.start(serve, app, config.http.host, config.http.port)
            except OSError as exc:
                raise FatalError(
                    f"http.listen {config.http.listen}: cannot listen: {exc.strerror or exc}"
                ) from None
            pipeline_done, pipeline_scope = anyio.Event(), anyio.CancelScope()
            root.start_soon(_run_pipeline, pipeline, pipeline_done, pipeline_scope)

            async with anyio.create_task_group() as workers:
                workers.start_soon(_drain_on_stop, rt, workers.cancel_scope)
                for source, emit in zip(sources, emitters, strict=True):
                    await workers.start(_run_source, rt, source, emit)
                for sink_cfg in config.sinks:
                    sink: Sink = sink_cfg.build(_deps(rt, spool, webhooks, sink_cfg.name, kind="sink"))
                    await workers.start(_run_sink, rt, sink)
                rt.ready.set()
                log.info("streamd running: %d sources, http on port %d", len(sources), rt.http_port)

            for emit in emitters:  # also those of sources a stop during start-up never reached
                await emit.aclose()
            # Sources and sinks are stopped: the pipeline drains what they queued and the producer
            # flushes, both within one shutdown grace (the chart's termination period is above it).
            grace_ends = anyio.current_time() + config.shutdown_grace
            with anyio.move_on_at(grace_ends) as grace:
                await pipeline_done.wait()
            if grace.cancelled_caught:
                log.error(
                    "shutdown grace %.1fs elapsed with events in flight: spooling them", config.shutdown_grace
                )
                pipeline_scope.cancel()  # the pipeline spools what it holds (shielded) as it exits
                await pipeline_done.wait()
            publisher_health.set(ComponentState.DRAINING)
            await _stop_publisher(publisher, max(1.0, grace_ends - anyio.current_time()))
            root.cancel_scope.cancel()  # the HTTP server stops last
    log.info("streamd stopped: %d events acknowledged by Kafka", published_total())
    if rt.fatal is not None:
        raise rt.fatal
    return rt


def _deps(rt: Runtime, spool: Spool, webhooks: Webhooks, name: str, kind: str = "source") -> SourceDeps:
    cfg = rt.config.kafka
    return SourceDeps(
        rt.health.add(name, kind),
        spool,
        webhooks,
        cfg.model_copy(update={"bootstrap_servers": rt.bootstrap}),
        cfg.topic_prefix,
    )


class _Readiness:
    """A ``TaskStatus`` that remembers whether readiness was signalled."""

    def __init__(self, status: TaskStatus[None]) -> None:
        self._status, self.signalled = status, False

    def started(self, value: None = None) -> None:
        if not self.signalled:
            self.signalled = True
            self._status.started()


async def _run_source(
    rt: Runtime, source: Source, emit: SourceEmit, *, task_status: TaskStatus[None]
) -> None:
    readiness = _Readiness(task_status)
    try:
        async with _fatal_stops_daemon(rt, readiness):
            await source.run(emit, task_status=readiness)
    finally:
        with anyio.CancelScope(shield=True):
            await emit.aclose()


async def _run_sink(rt: Runtime, sink: Sink, *, task_status: TaskStatus[None]) -> None:
    readiness = _Readiness(task_status)
    async with _fatal_stops_daemon(rt, readiness):
        await sink.run(task_status=readiness)


@asynccontextmanager
async def _fatal_stops_daemon(rt: Runtime, readiness: _Readiness) -> AsyncIterator[None]:
    """A fatal error in one component stops the daemon through the ordered shutdown (so what the
    other sources queued is still published or spooled), then ``run_daemon`` raises it."""
    try:
        yield
    except FatalError as exc:
        fatal: BaseException = exc
    except BaseExceptionGroup as group:
        fatal = leading_error(group)  # re-raises groups holding anything unexpected
        if not isinstance(fatal, FatalError):
            raise
    else:
        return
    if rt.fatal is None:
        rt.fatal = fatal
    rt.stop.set()
    readiness.started()


async def _drain_on_stop(rt: Runtime, workers: anyio.CancelScope) -> None:
    """On stop (even while sources are still starting): report draining, stop sources and sinks."""
    await rt.stop.wait()
    log.info("shutting down: stopping sources")
    rt.health.draining = True
    for c in rt.health.components.values():
        if c.kind != "publisher" and c.state is not ComponentState.FAILED:
            c.set(ComponentState.DRAINING)
    workers.cancel()


async def _run_pipeline(pipeline: Pipeline, done: anyio.Event, scope: anyio.CancelScope) -> None:
    try:
        with scope:
            await pipeline.run()
    finally:
        done.set()


async def _stop_publisher(publisher: KafkaPublisher, grace: float) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(grace):
        await publisher.stop()


async def _watch_signals(rt: Runtime, root: TaskGroup) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if rt.stop.is_set():
                log.warning("second %s: stopping now", signal.Signals(signum).name)
                root.cancel_scope.cancel()
                return
            log.info("received %s", signal.Signals(signum).name)
            rt.stop.set()

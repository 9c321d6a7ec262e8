"""Composition root: one anyio task group, start order, ordered shutdown.

Start: embedded broker (if configured) -> publisher (connected within ``startup_timeout``) ->
HTTP -> pipeline -> sources and sinks, each awaited until it signals readiness. Every
long-running job is run by the one :class:`~streamd.runtime.Supervisor`: a component that fails
for good is ``failed`` and retried every ``failed_retry`` while the others go on, so only an
invalid config and Kafka unreachable at start-up (or a bug) stop the daemon.

Stop (SIGTERM, SIGINT or SIGHUP, or ``stop`` set): ``/readyz`` says draining; the sources' scope
is cancelled (each source's ``finally`` unsubscribes and closes its emitter; a webhook route whose
source has stopped answers 503); the pipeline drains what is queued and in flight; the producer is
flushed and stopped inside ``shutdown_grace``, shielded; the HTTP server stops last. A stop during
start-up cancels the start (Kafka not reached yet) or becomes this ordered stop (sources starting).
A second signal ends the grace at once (:meth:`~streamd.runtime.Supervisor.hurry`): the pipeline
spools what it holds, the producer is not waited for; shielded clean-ups keep their own short bounds
(an O2G unsubscribe: 2 s). Signals are watched from the start: see :mod:`streamd.runtime.lifecycle`.
"""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup, TaskStatus
from starlette.routing import BaseRoute

from streamd import tracing as otel
from streamd.cluster.assign import state_topic
from streamd.cluster.member import ClusterMember
from streamd.cluster.state import KafkaCursorStore
from streamd.cluster.webhooks import advertised_base
from streamd.config import Config
from streamd.config_core import KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.errors import FatalError
from streamd.http.app import Webhooks, build_app
from streamd.http.limits import Limits
from streamd.http.server import serve
from streamd.publish.kafka import KafkaPublisher
from streamd.publish.pipeline import Listener, Pipeline, SourceEmit
from streamd.publish.registry import value_encoder
from streamd.publish.spool import Spool
from streamd.runtime import Grace, Job, Jobs, Policy, Supervisor, task_group, watch_signals
from streamd.sinks.base import SinkContext
from streamd.sources.base import Emit, Source, SourceDeps
from streamd.telemetry import ComponentState, Health, published_total, watch_event_loop
from streamd.wallboard.plugin import wallboard_plugin

log = logging.getLogger("streamd")

T = TypeVar("T")


class Sink(Protocol):
    """A runtime sink: runs until cancelled, signals readiness, publishes its dead letters to ``emit``."""

    async def run(self, emit: Emit, *, task_status: TaskStatus[None]) -> None: ...


@dataclass(slots=True)
class Runtime:
    """What a running daemon exposes (to tests, ``demo`` and the wallboard)."""

    config: Config
    bootstrap: str = ""
    http_port: int = 0
    health: Health = field(default_factory=Health)
    supervisor: Supervisor = field(default_factory=Supervisor)
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    listeners: list[Listener] = field(default_factory=list)
    extra_routes: list[BaseRoute] = field(default_factory=list)


def tune_gc() -> None:
    """Make the cyclic garbage collector fit a long-running event pipeline (``run`` and ``demo``
    call it; ``run_daemon`` does not, so embedders and tests keep Python's own settings).

    Rules:

    1. Start-up objects (modules, config, models) are frozen out of collection (``gc.freeze``).
    2. Generation 0 is collected every 10,000 net allocations of tracked objects (Python: 700),
       generation 1 every 2 collections of generation 0 (Python: 10): a pause is bounded by what
       it scans, so both stay short; the event loop never waits long for the collector.
    3. The hot path keeps few tracked objects in flight: records are never tracked
       (:class:`~streamd.publish.encoding.Record`), events are let go once encoded
       (:mod:`streamd.publish.emit` rule 6). Events hold no reference cycles, so the thresholds
       only delay reclaiming rare cyclic garbage.

    Measured (``gc.callbacks`` timing each collection with ``time.thread_time``: CPU, not wall;
    2026-12-05, loaded 2-core machine) in ``bench.o2g_chunk_throughput 50000 200`` (95k records
    released at once: a backlog, 10,000-event units in flight), per streamd run:

    ==========================  =====================  ============  ============
    thresholds                  GC share of run's CPU  longest gen0  longest gen1
    ==========================  =====================  ============  ============
    50,000, 20 (old hot path)   1-15 %, 2-8 gen0       11-60 ms      130-150 ms
    50,000, 20                  1-10 %, 1-3 gen0       10-40 ms      75-80 ms
    25,000-40,000, 1-2          2-10 %                 10-28 ms      6-34 ms
    10,000, 2 (these)           7-12 %, ~30 gen0       3-9 ms        7-22 ms
    ==========================  =====================  ============  ============

    A pause scans the young objects alive (about the threshold); the share counts how many
    allocations live across a collection. Under a backlog the small threshold catches most events
    alive (about 1 µs per record more than 50,000); at the daemon's rates few are in flight:
    ``bench.loop_lag`` (500 events/s, 50,000 agents on the wallboard) spent 0.9-1.9 % of the
    daemon's CPU in the collector with either setting; its longest gen0/gen1 pause after start-up
    was 16-54 ms with 50,000 and 13-19 ms with 10,000 (loop lag p99 15 and 7.5 ms on an idle
    machine, one run each). A full collection (the
    heap not frozen: 35-95 ms with a large wallboard) comes at most every 200 gen0 collections and
    only once the long-lived objects grew by a quarter (CPython's rule).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 2, 100)


async def run_daemon(
    config: Config,
    *,
    runtime: Runtime | None = None,
    handle_signals: bool = True,
    plugins: Sequence[Callable[[Runtime, TaskGroup], Any]] = (wallboard_plugin,),
) -> Runtime:
    """Run streamd until stopped; returns the runtime after a clean shutdown.

    Stop signals are watched from the start (:mod:`streamd.runtime.lifecycle`): one during start-up
    stops it cleanly too, and a second one cuts the shutdown grace short.

    Raises:
        FatalError: Kafka stayed unreachable at start-up, or the HTTP port cannot be bound (one
            clear line). A component failing later never stops the daemon: it is ``failed``.
    """
    rt = runtime or Runtime(config)
    if config.kafka.acks_warning:
        log.warning("%s", config.kafka.acks_warning)
    rt.health.readiness = config.readiness
    rt.supervisor = Supervisor(rt.health, Policy(failed_retry=config.failed_retry))
    async with task_group() as lifecycle:
        if handle_signals:
            await lifecycle.start(watch_signals, partial(_on_signal, rt))
        await _run(rt, plugins)
        lifecycle.cancel_scope.cancel()
    log.info("streamd stopped: %d events acknowledged by Kafka", published_total())
    return rt


async def _run(rt: Runtime, plugins: Sequence[Callable[[Runtime, TaskGroup], Any]]) -> None:
    config, sup = rt.config, rt.supervisor
    publisher_health = rt.health.add("kafka", "publisher")
    async with AsyncExitStack() as stack:
        publisher = await _unless_stopped(rt, partial(_start_kafka, rt, stack))
        if publisher is None:
            log.info("stopped during start-up, before Kafka was reached")
            return
        publisher_health.set(ComponentState.RUNNING)
        encoder = await _unless_stopped(rt, partial(value_encoder, config))  # registers schemas, if any
        if encoder is None:
            log.info("stopped during start-up, before the schema registry answered")
            return
        tracer = otel.setup(config)  # None unless tracing is enabled
        if tracer is not None:
            stack.push_async_callback(tracer.aclose)

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
            max_buffered=config.max_buffered_events,
            max_record_bytes=config.kafka.max_request_size - 1024,  # room for the batch overhead
            delivery_timeout=config.kafka.delivery_timeout,
            spool_after=config.kafka.spool_after,
            write_ahead=config.spool.commit_interval if config.spool.write_ahead else None,
            component=publisher_health,
            encode=encoder,
            tracing=tracer,
        )
        webhooks = Webhooks()
        kafka = config.kafka.model_copy(update={"bootstrap_servers": rt.bootstrap})
        emitters = [pipeline.emitter(c.name) for c in [*config.sources, *config.sinks]]
        member: tuple[Jobs, ClusterMember] | None = None
        if config.cluster.enabled:  # units are built when this replica is given them
            member = _cluster_member(rt, kafka, spool, webhooks, emitters)
            sources: list[Source] = []
            sinks: list[Sink] = []
        else:
            sources = [s.build(SourceDeps(sup.jobs(s.name), spool, webhooks)) for s in config.sources]
            sinks = [s.build(SinkContext(sup.jobs(s.name, "sink"), kafka)) for s in config.sinks]

        async with task_group() as root:  # what fails at start-up surfaces as itself: one line
            for plugin in plugins:
                await plugin(rt, root)
            pipeline.listeners.extend(rt.listeners)
            app = build_app(rt.health, webhooks, rt.extra_routes)
            try:
                rt.http_port = await root.start(
                    partial(serve, limits=Limits.of(config.http)), app, config.http.host, config.http.port
                )
            except OSError as exc:
                raise FatalError(
                    f"http.listen {config.http.listen}: cannot listen: {exc.strerror or exc}"
                ) from None
            pipeline_done, pipeline_scope = anyio.Event(), anyio.CancelScope()
            root.start_soon(_run_pipeline, pipeline, pipeline_done, pipeline_scope)
            root.start_soon(watch_event_loop)  # streamd_event_loop_lag_seconds

            async with anyio.create_task_group() as workers:
                workers.start_soon(_stop_on_request, rt, workers.cancel_scope)
                if member is not None:
                    jobs, membership = member
                    await workers.start(partial(jobs.run, Job("member", membership.session)))
                else:
                    for component, emit in zip([*sources, *sinks], emitters, strict=True):
                        await workers.start(_run_component, component, emit)
                rt.ready.set()
                n = len(config.sources)
                log.info(
                    "streamd running: %d %s%s, http on port %d",
                    n,
                    "source" if n == 1 else "sources",
                    f" shared by the replicas of group {config.cluster.group_id}" if member else "",
                    rt.http_port,
                )

            for emit in emitters:  # also those of components a stop during start-up never reached
                await emit.aclose()
            # Sources and sinks are stopped: the pipeline drains what they queued and the producer
            # flushes, both within one shutdown grace (the chart's termination period is above it).
            grace = sup.grace(config.shutdown_grace)
            log.info(
                "sources stopped: publishing what is queued, then flushing the producer (within %.1fs)",
                grace.remaining(),
            )
            await grace.wait(pipeline_done, pipeline_scope, "events in flight: spooling them")
            publisher_health.set(ComponentState.DRAINING)
            await _stop_publisher(publisher, grace)
            root.cancel_scope.cancel()  # the HTTP server stops last


def _cluster_member(
    rt: Runtime, kafka: KafkaConfig, spool: Spool, webhooks: Webhooks, emitters: Sequence[SourceEmit]
) -> tuple[Jobs, ClusterMember]:
    """The cluster membership: it builds and runs a source or sink when this replica is given it
    (docs/architecture.md "Several replicas"); cursors are written through to the state topic."""
    config, sup = rt.config, rt.supervisor
    jobs = sup.jobs("cluster", "cluster")
    store = KafkaCursorStore(spool, kafka, state_topic(kafka.topic_prefix))
    sources = {s.name: s for s in config.sources}
    sinks = {s.name: s for s in config.sinks}
    emit_of = {e.source: e for e in emitters}

    async def run_unit(name: str) -> None:
        if name in sources:
            component: Source | Sink = sources[name].build(SourceDeps(sup.jobs(name), store, webhooks))
        else:
            component = sinks[name].build(SinkContext(sup.jobs(name, "sink"), kafka))
        try:
            await component.run(emit_of[name], task_status=anyio.TASK_STATUS_IGNORED)
        finally:
            rt.health.components.pop(name, None)  # /readyz lists what this replica runs

    return jobs, ClusterMember(
        config.cluster,
        kafka,
        [*sources, *sinks],
        run_unit,
        jobs.component,
        store=store,
        sources=list(sources),
        webhooks=webhooks,
        advertised_url=lambda: advertised_base(config.http.host, rt.http_port),
    )


async def _start_kafka(rt: Runtime, stack: AsyncExitStack) -> KafkaPublisher:
    """The embedded broker (if configured) and a connected publisher, both stopped by ``stack``."""
    config = rt.config
    rt.bootstrap = (
        await stack.enter_async_context(EmbeddedBroker())
        if config.kafka.embedded
        else config.kafka.bootstrap_servers
    )
    publisher = KafkaPublisher(config.kafka, rt.bootstrap, embedded=config.kafka.embedded)
    log.info("connecting to Kafka at %s (for up to %gs)", rt.bootstrap, config.kafka.startup_timeout)
    await publisher.start()  # retried until kafka.startup_timeout, then one clear line
    stack.push_async_callback(_stop_publisher_late, publisher, rt.supervisor, config.shutdown_grace)
    await publisher.ensure_topics(publisher.default_topics())
    return publisher


async def _unless_stopped(rt: Runtime, start: Callable[[], Awaitable[T]]) -> T | None:
    """``await start()``, cancelled when a stop is requested meanwhile: None then."""
    result: list[T] = []

    async def cancel_on_stop(scope: anyio.CancelScope) -> None:
        await rt.stop.wait()
        scope.cancel()

    async with task_group() as tg:
        tg.start_soon(cancel_on_stop, tg.cancel_scope)
        result.append(await start())
        tg.cancel_scope.cancel()
    return result[0] if result else None


async def _run_component(
    component: Source | Sink, emit: SourceEmit, *, task_status: TaskStatus[None]
) -> None:
    """Run one source or sink until cancelled; its emitter is closed whatever happens."""
    try:
        await component.run(emit, task_status=task_status)
    finally:
        with anyio.CancelScope(shield=True):
            await emit.aclose()


async def _stop_on_request(rt: Runtime, workers: anyio.CancelScope) -> None:
    """On stop (even while sources are still starting): report draining, stop sources and sinks."""
    await rt.stop.wait()
    log.info("shutting down: stopping sources")
    rt.supervisor.stop()
    workers.cancel()


async def _run_pipeline(pipeline: Pipeline, done: anyio.Event, scope: anyio.CancelScope) -> None:
    try:
        with scope:
            await pipeline.run()
    finally:
        done.set()


async def _stop_publisher(publisher: KafkaPublisher, grace: Grace) -> None:
    """Flush and stop the producer within the grace (at least 1 s of it, unless it was cut)."""
    with grace.bound(floor=1.0, shield=True):
        await publisher.stop()


async def _stop_publisher_late(publisher: KafkaPublisher, sup: Supervisor, seconds: float) -> None:
    """The exit stack's stop of a producer not stopped in order (a stop during start-up, an error)."""
    await _stop_publisher(publisher, sup.grace(seconds))


def _on_signal(rt: Runtime, signum: int) -> None:
    """The first stop signal stops cleanly, a second one at once (README "Operations")."""
    name = signal.Signals(signum).name
    if not rt.stop.is_set():
        log.info(
            "received %s: stopping cleanly (within shutdown_grace %gs; a second signal stops at once)%s",
            name,
            rt.config.shutdown_grace,
            " - SIGHUP stops streamd like SIGTERM, it does not reload the config"
            if signum == signal.SIGHUP
            else "",
        )
        rt.stop.set()
    elif not rt.supervisor.hurried:
        log.warning(
            "second signal (%s): stopping now, without waiting for the shutdown grace; what Kafka "
            "has not acknowledged stays in the spool",
            name,
        )
        rt.supervisor.hurry()

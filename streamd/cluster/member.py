"""A replica's membership in the cluster's consumer group (docs/architecture.md "Several replicas").

Rules:

1. :meth:`ClusterMember.session` is one supervised job (component ``cluster``): it creates the
   control topic (one partition per unit) and the state topic, joins the group ``group_id``
   subscribed to the control topic, and keeps calling ``getmany`` so heartbeats and rebalances
   flow. It never retries: the supervisor does.
2. ``on_partitions_revoked`` (awaited by aiokafka before it rejoins) stops every unit this member
   runs and flushes their cursors, bounded; ``on_partitions_assigned`` records the new units and
   starts them (a start restores the source's cursors from Kafka first, then runs it).
3. Fencing: every ``COMMIT_INTERVAL`` the member commits offset 0 on its partitions; a unit runs
   only while a commit succeeded within ``session_timeout / 2`` (:class:`~.assign.Fence`), or,
   with ``cluster.ride_through_outage``, while every broker was proven down within that time
   (a failed commit is followed by one probe, :func:`~.outage.kafka_refused`).
4. Starting and stopping go through one lock, so a rebalance and the fence never interleave.
5. When the session ends (a stop, a failure) every unit is stopped and the cursors flushed before
   the consumer leaves the group, so the others can take the units over at once.
6. The fencing commits, the cursor flush and the webhook directory are supervised jobs
   (``fencing``, ``cursors``, ``webhooks``: listed under the ``cluster`` component in ``/readyz``)
   retried by :func:`streamd.runtime.run_job` every ``COMMIT_INTERVAL`` / ``FLUSH_INTERVAL``;
   nothing here loops on a failure.
7. Webhooks on any replica (:mod:`.webhooks`): the credentials of the webhook sources this replica
   runs are advertised through the state topic whenever they change, on every new generation and
   every ``READVERTISE_INTERVAL`` (the newest owner's advertisement wins over one a replica cut
   off from Kafka sends late); the ``webhooks`` job follows everyone's advertisements, and the
   registry forwards a POST for a source that runs elsewhere. This replica's URL is worked out
   once per session, in a worker thread (it may ask DNS).
8. A unit given up (revocation, fence, stop) has its state-topic values flushed, bounded, and
   whatever is still queued then dropped (:meth:`~.state.KafkaCursorStore.drop`): sent once this
   replica reaches Kafka again, it would overwrite the next owner's.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from anyio.abc import TaskGroup

from streamd.cluster.assign import (
    Fence,
    control_topic,
    member_client_id,
    owned,
    plan,
    state_topic,
    units,
    wanted,
)
from streamd.cluster.outage import kafka_refused, parse_bootstrap
from streamd.cluster.state import FLUSH_INTERVAL, KafkaCursorStore, follow
from streamd.cluster.webhooks import ADVERT_NAME, Advert, WebhookForwarder
from streamd.config_core import ClusterConfig, KafkaConfig
from streamd.errors import TransientError
from streamd.http.app import Webhooks
from streamd.publish.consume import kafka_errors
from streamd.publish.kafka import client_kwargs
from streamd.runtime import Connected, Job, Policy, Switchboard, run_job, task_group
from streamd.telemetry import Component, ComponentState, JobHealth

log = logging.getLogger("streamd.cluster")

COMMIT_INTERVAL = 1.5
"""Seconds between two fencing commits (rule 3), and between a failed one and the next."""
COMMIT_TIMEOUT = 1.5
"""Longest wait for one fencing commit (aiokafka waits for a coordinator without end)."""
WATCH_INTERVAL = 0.25
"""Seconds between two looks at the fence."""
FLUSH_BOUND = 2.0
"""Longest wait for a unit's cursors to reach Kafka when it is given up."""
READVERTISE_INTERVAL = 60.0
"""Seconds after which an owner sends its unchanged webhook advertisement again (rule 7)."""

RunUnit = Callable[[str], Awaitable[None]]


class ClusterMember:
    """One replica's membership (module rules).

    Args:
        cfg: the ``cluster`` section.
        kafka: the Kafka section, with resolved bootstrap servers.
        names: every source and sink name (the units).
        run_unit: runs one unit until cancelled (the daemon builds the source or sink).
        component: the ``cluster`` component (its detail lists what this replica owns).
        store: the cursor store to restore from and flush (None: no cursors move, e.g. tests).
        sources: the units that are sources (their cursors are restored on a takeover).
        webhooks: the HTTP port's webhook registry: its handlers' credentials are advertised, and
            POSTs for sources that run elsewhere are forwarded (needs ``store``; rule 7).
        advertised_url: this replica's HTTP base URL as the others reach it.
    """

    def __init__(
        self,
        cfg: ClusterConfig,
        kafka: KafkaConfig,
        names: Sequence[str],
        run_unit: RunUnit,
        component: Component,
        *,
        store: KafkaCursorStore | None = None,
        sources: Sequence[str] = (),
        webhooks: Webhooks | None = None,
        advertised_url: Callable[[], str] | None = None,
    ) -> None:
        self.cfg, self.kafka = cfg, kafka
        self.units = units(names)
        self.topic = control_topic(kafka.topic_prefix)
        self.run_unit, self.component, self.store = run_unit, component, store
        self.sources = frozenset(sources)
        self.assigned: frozenset[str] = frozenset()
        self.member_id = ""
        self.generation = -1
        self.fence = Fence(cfg.session_timeout / 2, 0.0)
        self._switch: Switchboard | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = anyio.Lock()
        self._fenced_logged = False
        self._riding_logged = False
        self._rebalancing = False
        self._tg: TaskGroup | None = None
        self._commit_done: anyio.Event | None = None
        self._commit_failure: Exception | None = None
        self.probes = 0
        """How many times this member looked whether Kafka is down for everyone."""
        self.outage_proofs = 0
        """How many of them proved it while the member was not fenced (the fence took them)."""
        self.jobs = {"fencing": JobHealth("fencing"), "cursors": JobHealth("cursors")}
        self.webhooks, self.advertised_url = webhooks, advertised_url
        self.forwarder = WebhookForwarder(self.sources)
        self._advertised: dict[str, tuple[str, float]] = {}  # source -> (value, when queued)
        self._url: str | None = None  # advertised_url() of this session (rule 7)
        self._no_metadata_logged = False
        if webhooks is not None and store is not None:
            self.jobs["webhooks"] = JobHealth("webhooks")
            webhooks.forwarder = self.forwarder

    @property
    def running(self) -> frozenset[str]:
        """The units this replica runs now."""
        return self._switch.running if self._switch is not None else frozenset()

    async def session(self, connected: Connected) -> None:
        """Join the group and run the units assigned to this replica until cancelled (rule 1).

        Raises:
            TransientError: Kafka failed (the supervisor retries the session).
        """
        await self.ensure_topics()
        kwargs = client_kwargs(self.kafka, self.kafka.bootstrap_servers)
        url = await self.resolve_url()
        if url is not None:  # names this replica in the group's description
            kwargs["client_id"] = member_client_id(self.kafka.client_id, url)
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=self.cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.cfg.session_timeout * 1000),
            heartbeat_interval_ms=max(300, int(self.cfg.session_timeout * 1000 / 5)),
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
        )
        self._consumer = consumer
        if self.store is not None:
            await self.store.connect()
        try:
            async with task_group() as tg:
                self._switch, self._tg, self._commit_done = Switchboard(tg), tg, None
                try:
                    with kafka_errors():
                        await consumer.start()
                    consumer.subscribe([self.topic], listener=_Listener(self))
                    connected()
                    self.component.jobs = {
                        k: h for k, h in self.jobs.items() if k == "fencing" or self.store is not None
                    }
                    self._show()
                    tg.start_soon(self._supervised, "fencing", self._fencing, COMMIT_INTERVAL)
                    tg.start_soon(self._watch)
                    if self.store is not None:
                        tg.start_soon(self._supervised, "cursors", self.store.flush_session, FLUSH_INTERVAL)
                    if "webhooks" in self.jobs:
                        tg.start_soon(self._supervised, "webhooks", self._follow, FLUSH_INTERVAL)
                    while True:
                        with kafka_errors():
                            await consumer.getmany(timeout_ms=500)  # no records: heartbeats, rebalances
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._give_up("stopping")
                        await _stop_consumer(consumer)
                    tg.cancel_scope.cancel()
        finally:
            self._switch = self._tg = None
            self.assigned = frozenset()
            self._advertised.clear()
            self._url = None
            await self.forwarder.aclose()
            if self.store is not None:
                await self.store.close()

    # -- rebalance listener (rule 2) ------------------------------------------------------------

    async def revoked(self) -> None:
        """Stop everything before the rebalance completes (no fencing commit meanwhile: a commit of
        the old generation would make the member rejoin once more)."""
        self._rebalancing = True
        await self._give_up("rebalance")

    async def assigned_partitions(self, partitions: Sequence[int], generation: int, member_id: str) -> None:
        """Record the units of ``partitions`` and start them."""
        self.generation, self.member_id = generation, member_id
        self._rebalancing = False
        self.assigned = owned(self.units, partitions)
        self.fence.ok(anyio.current_time())
        self._advertised.clear()  # every generation hears every owner anew (rule 7)
        log.info(
            "cluster generation %d: this replica owns %s",
            generation,
            ", ".join(sorted(self.assigned)) or "nothing",
        )
        await self._reconcile()

    # -- internals -----------------------------------------------------------------------------

    async def _give_up(self, why: str) -> None:
        self.assigned = frozenset()
        await self._reconcile(why)

    async def _reconcile(self, why: str = "") -> None:
        """Stop what should not run, start what should (rules 3-4)."""
        switch = self._switch
        if switch is None:
            return
        async with self._lock:
            now = anyio.current_time()
            target = wanted(self.assigned, self.fence, now)
            fenced = self.fence.fenced(now) and bool(self.assigned)
            stop, start = plan(switch.running, target)
            if fenced and stop and not self._fenced_logged:
                log.warning(
                    "cluster: no commit reached Kafka for %.1fs: stopping %s before another replica "
                    "takes them over (fenced)",
                    now - self.fence.last_ok,
                    ", ".join(stop),
                )
            self._fenced_logged = fenced
            riding = self.fence.riding_through(now) and bool(self.assigned)
            if riding and not self._riding_logged:
                log.warning(
                    "cluster: every Kafka broker refuses connections (Kafka is down for every replica, no "
                    "other replica can take over): %s keep running and spool",
                    ", ".join(sorted(switch.running)) or "nothing",
                )
            elif self._riding_logged and not riding and not fenced:
                log.info("cluster: commits reach Kafka again")
            self._riding_logged = riding
            if stop:
                if why and not fenced:
                    log.info("cluster (%s): stopping %s", why, ", ".join(stop))
                if set(stop) == switch.running:
                    await switch.stop_all()  # concurrently: a rebalance waits for the slowest only
                else:
                    for name in stop:
                        await switch.stop(name)
                await self._flush(stop)
                for name in stop:  # advertised anew whenever it runs here again
                    self._advertised.pop(name, None)
                    if self.store is not None and self.store.drop(name):  # rule 8
                        log.warning(
                            "cluster: state of %s not written to Kafka before giving it up: dropped "
                            "(the next owner reads from what Kafka has)",
                            name,
                        )
            for name in start:
                switch.start(name, lambda name=name: self._run(name))  # type: ignore[misc]
            self._show()

    async def _run(self, name: str) -> None:
        """Restore ``name``'s cursors (a source), then run it until cancelled."""
        if self.store is not None and name in self.sources:
            try:
                restored = await self.store.restore(name)
                log.info("cluster: %s taken over with %d cursors from Kafka", name, restored)
            except TransientError as exc:
                log.warning(
                    "cluster: cursors of %s not read from Kafka (%s): using the local ones", name, exc
                )
        await self.run_unit(name)

    async def _flush(self, names: Sequence[str]) -> None:
        if self.store is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(FLUSH_BOUND):
            for name in names:
                if name in self.sources and not await self.store.flush(name):
                    log.warning("cluster: cursors of %s not written to Kafka before giving it up", name)

    def _show(self) -> None:
        running = sorted(self.running)
        detail = (
            f"member {self.member_id or '(joining)'}, generation {self.generation}: "
            f"owns {', '.join(running) or 'nothing'}"
        )
        now = anyio.current_time()
        if self.fence.fenced(now) and self.assigned:
            self.component.set(ComponentState.RETRYING, f"fenced (no commit to Kafka): {detail}")
        elif self.fence.riding_through(now) and self.assigned:
            self.component.set(
                ComponentState.RETRYING, f"Kafka down for every replica (brokers refuse): {detail}"
            )
        else:
            self.component.set(ComponentState.RUNNING, detail)

    async def _watch(self) -> None:
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            await self._reconcile()
            self._advertise(anyio.current_time())

    async def resolve_url(self) -> str | None:
        """Work out ``advertised_url()`` for this session, in a worker thread (it may ask DNS), and
        keep it (rule 7); None without one."""
        if self.advertised_url is None:
            return None
        if self._url is None:
            self._url = await anyio.to_thread.run_sync(self.advertised_url)
        return self._url

    def _advertise(self, now: float) -> None:
        """Queue for the state topic the advertisement of every webhook source that runs here and
        changed, or was last queued in an earlier generation or ``READVERTISE_INTERVAL`` before
        ``now`` (rule 7)."""
        url = self._url
        if self.webhooks is None or self.store is None or url is None:
            return
        for (_, source), (credentials, max_body) in self.webhooks.advertised().items():
            if source not in self.running:
                continue
            value = Advert.of(url, credentials, max_body).encode()
            previous = self._advertised.get(source)
            if previous is None or previous[0] != value or now - previous[1] >= READVERTISE_INTERVAL:
                self._advertised[source] = (value, now)
                self.store.queue(source, ADVERT_NAME, value)
                self.forwarder.learn(source, value)

    async def _follow(self, connected: Connected) -> None:
        """The ``webhooks`` job: follow the other replicas' advertisements (rule 7)."""
        assert self.store is not None

        def on_value(source: str, name: str, value: str | None) -> None:
            if name == ADVERT_NAME:
                self.forwarder.learn(source, value)

        await follow(self.kafka, self.store.topic, on_value, connected)

    async def _supervised(self, name: str, session: Any, every: float) -> None:
        """Run one of the member's jobs under the supervisor, retried every ``every`` s (rule 6)."""
        job = Job(name, session, stage=name, delays=lambda: itertools.repeat(every))
        await run_job(job, policy=Policy(), health=self.jobs[name], owner="cluster")

    async def _fencing(self, connected: Connected) -> None:
        """Commit on the owned partitions every ``COMMIT_INTERVAL`` (rule 3).

        Raises:
            TransientError: a commit failed (not ours any more, or Kafka unreachable): the fence
                decides what runs meanwhile; with ``ride_through_outage`` one probe first tells
                whether every broker is down.
            TimeoutError: a commit has not been answered within ``COMMIT_TIMEOUT``.
        """
        consumer, tg = self._consumer, self._tg
        assert consumer is not None
        assert tg is not None
        while True:
            partitions = consumer.assignment()
            if partitions and self.assigned and not self._rebalancing:
                done = self._commit_done
                if done is None:  # no commit in flight: send one
                    done = self._commit_done = anyio.Event()
                    tg.start_soon(self._commit, consumer, frozenset(partitions), done)
                with anyio.move_on_after(COMMIT_TIMEOUT):
                    await done.wait()
                failure: Exception | None = TimeoutError(
                    f"fencing commit not answered within {COMMIT_TIMEOUT:g}s"
                )
                if done.is_set():
                    self._commit_done, failure = None, self._commit_failure
                if failure is not None:
                    await self._probe_outage(consumer)
                    raise failure
            connected()
            await anyio.sleep(COMMIT_INTERVAL)

    async def _commit(
        self, consumer: AIOKafkaConsumer, partitions: frozenset[TopicPartition], done: anyio.Event
    ) -> None:
        """One fencing commit, a task of the session: aiokafka waits for a coordinator without end
        and must not be cancelled mid-way (its shielded request would fail unobserved), so the
        fencing job waits for it ``COMMIT_TIMEOUT`` at most and leaves it running."""
        self._commit_failure = None
        sent = anyio.current_time()  # the coordinator heard from the member no earlier than this
        try:
            with kafka_errors():
                await consumer.commit(dict.fromkeys(partitions, 0))
            self.fence.ok(sent)
        except TransientError as exc:  # the fencing job raises it (its supervisor retries)
            self._commit_failure = exc
        finally:
            done.set()

    async def _probe_outage(self, consumer: AIOKafkaConsumer) -> None:
        """Record a proof that Kafka is down for everyone, when it is one (rule 3)."""
        if not self.cfg.ride_through_outage or not self.assigned:
            return
        at = anyio.current_time()  # the brokers were seen down no earlier than this
        brokers = _metadata_brokers(consumer)
        if not brokers:  # the bootstrap servers alone may be a part of the cluster: no proof
            if not self._no_metadata_logged:
                self._no_metadata_logged = True
                log.warning(
                    "cluster: the brokers of the consumer's metadata cannot be read: no proof that "
                    "Kafka is down for every replica is taken (a failed commit fences as without "
                    "ride_through_outage)"
                )
            return
        self.probes += 1
        if not await kafka_refused(parse_bootstrap(self.kafka.bootstrap_servers), brokers):
            log.debug("cluster: a fencing commit failed and Kafka is not down for everyone")
        elif self.fence.kafka_down(at):
            self.outage_proofs += 1

    async def ensure_topics(self) -> None:
        """The control topic with one partition per unit (grown if it has fewer) and the state topic.

        Raises:
            TransientError: Kafka could not be asked.
        """
        admin = AIOKafkaAdminClient(**client_kwargs(self.kafka, self.kafka.bootstrap_servers))
        try:
            with kafka_errors():
                await admin.start()
                replication = self.kafka.topics.replication_factor or min(
                    3, max(1, len(admin._client.cluster.brokers()))
                )
                wanted_partitions = max(1, len(self.units))
                await _create(admin, NewTopic(self.topic, wanted_partitions, replication))
                await _create(
                    admin,
                    NewTopic(
                        state_topic(self.kafka.topic_prefix),
                        1,
                        replication,
                        topic_configs={"cleanup.policy": "compact"},
                    ),
                )
                described: list[dict[str, Any]] = await admin.describe_topics([self.topic])
                have = len(described[0].get("partitions", [])) if described else 0
                if 0 < have < wanted_partitions:
                    log.info(
                        "cluster: growing %s from %d to %d partitions", self.topic, have, wanted_partitions
                    )
                    await admin.create_partitions({self.topic: NewPartitions(wanted_partitions)})
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await admin.close()


def _metadata_brokers(consumer: Any) -> list[tuple[str, int]]:
    """``(host, port)`` of every broker of the consumer's last metadata (aiokafka keeps it on a
    private attribute); empty when it cannot be read."""
    cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
    try:
        brokers = list(cluster.brokers()) if cluster is not None else []
        return [(str(b.host), int(b.port)) for b in brokers]
    except (AttributeError, TypeError, ValueError):
        return []


async def _create(admin: AIOKafkaAdminClient, topic: NewTopic) -> None:
    with contextlib.suppress(TopicAlreadyExistsError):
        await admin.create_topics([topic])


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, member: ClusterMember) -> None:
        self.member = member

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.member.revoked()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        coordinator = getattr(self.member._consumer, "_coordinator", None)
        generation = getattr(coordinator, "generation", -1)
        member_id = getattr(coordinator, "member_id", "")
        partitions = [tp.partition for tp in assigned if isinstance(tp, TopicPartition)]
        await self.member.assigned_partitions(partitions, generation, str(member_id))


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    with anyio.move_on_after(5):
        try:
            await consumer.stop()  # leaves the group: the others rebalance at once
        except (KafkaError, OSError) as exc:
            log.debug("cluster consumer stop failed: %s", exc)

"""A replica's membership in the cluster's consumer group (docs/architecture.md "Several replicas").

Rules:

1. :meth:`ClusterMember.session` is one supervised job (component ``cluster``): it creates the
   control topic (one partition per unit) and the state topic, joins the group ``group_id``
   subscribed to the control topic, and keeps calling ``getmany`` so heartbeats and rebalances
   flow. It never retries: the supervisor does.
2. ``on_partitions_revoked`` (awaited by aiokafka before it rejoins) stops every unit this member
   runs and flushes their cursors, bounded; ``on_partitions_assigned`` records the new units and
   starts them (a start restores the source's cursors from Kafka first, then runs it).
3. Fencing (:mod:`.fencing`): every ``COMMIT_INTERVAL`` the member commits offset 0 on its
   partitions; a unit runs only while a commit succeeded within ``session_timeout / 2``
   (:class:`~.assign.Fence`), or, with ``cluster.ride_through_outage``, while every broker was
   proven down within that time.
4. Starting and stopping go through one lock, so a rebalance and the fence never interleave.
5. When the session ends (a stop, a failure) every unit is stopped and the cursors flushed before
   the consumer leaves the group, so the others can take the units over at once.
6. The fencing commits, the cursor flush and the webhook directory are supervised jobs
   (``fencing``, ``cursors``, ``webhooks``: listed under the ``cluster`` component in ``/readyz``)
   retried by :func:`streamd.runtime.run_job` every ``COMMIT_INTERVAL`` / ``FLUSH_INTERVAL``;
   nothing here loops on a failure.
7. Webhooks on any replica (:mod:`.webhooks`, :mod:`.advertise`): the credentials of the webhook
   sources this replica runs are advertised through the state topic; the ``webhooks`` job follows
   everyone's advertisements, and the registry forwards a POST for a source that runs elsewhere.
8. A unit given up (revocation, fence, stop) has its state-topic values flushed, bounded, and
   whatever is still queued then dropped (:meth:`~.state.KafkaCursorStore.drop`): sent once this
   replica reaches Kafka again, it would overwrite the next owner's.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError

from streamd.cluster.advertise import READVERTISE_INTERVAL, Advertiser
from streamd.cluster.assign import Fence, control_topic, member_client_id, owned, plan, units, wanted
from streamd.cluster.fencing import COMMIT_INTERVAL, Fencing
from streamd.cluster.state import FLUSH_INTERVAL, KafkaCursorStore
from streamd.cluster.topics import ensure_topics
from streamd.config_core import ClusterConfig, KafkaConfig
from streamd.errors import TransientError
from streamd.http.app import Webhooks
from streamd.publish.consume import kafka_errors
from streamd.publish.kafka import client_kwargs
from streamd.runtime import Connected, Job, Policy, Switchboard, run_job, task_group
from streamd.telemetry import Component, ComponentState, JobHealth

log = logging.getLogger("streamd.cluster")

__all__ = ["READVERTISE_INTERVAL", "ClusterMember", "RunUnit"]  # READVERTISE_INTERVAL: .advertise's

WATCH_INTERVAL = 0.25
"""Seconds between two looks at the fence."""
FLUSH_BOUND = 2.0
"""Longest wait for a unit's cursors to reach Kafka when it is given up."""

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
        self.fencing = Fencing(cfg, kafka, self.fence, lambda: bool(self.assigned))
        self.adverts = Advertiser(kafka, self.sources, webhooks, store, advertised_url)
        self.jobs = {"fencing": JobHealth("fencing"), "cursors": JobHealth("cursors")}
        if self.adverts.enabled:
            self.jobs["webhooks"] = JobHealth("webhooks")

    @property
    def running(self) -> frozenset[str]:
        """The units this replica runs now."""
        return self._switch.running if self._switch is not None else frozenset()

    async def session(self, connected: Connected) -> None:
        """Join the group and run the units assigned to this replica until cancelled (rule 1).

        Raises:
            TransientError: Kafka failed (the supervisor retries the session).
        """
        await ensure_topics(self.kafka, self.topic, len(self.units))
        kwargs = client_kwargs(self.kafka, self.kafka.bootstrap_servers)
        url = await self.adverts.resolve_url()
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
                self._switch = Switchboard(tg)
                self.fencing.new_session()
                try:
                    with kafka_errors():
                        await consumer.start()
                    consumer.subscribe([self.topic], listener=_Listener(self))
                    connected()
                    self.component.jobs = {
                        k: h for k, h in self.jobs.items() if k == "fencing" or self.store is not None
                    }
                    self._show()
                    fencing = partial(self.fencing.session, consumer, tg)
                    tg.start_soon(self._supervised, "fencing", fencing, COMMIT_INTERVAL)
                    tg.start_soon(self._watch)
                    if self.store is not None:
                        tg.start_soon(self._supervised, "cursors", self.store.flush_session, FLUSH_INTERVAL)
                    if "webhooks" in self.jobs:
                        tg.start_soon(self._supervised, "webhooks", self.adverts.follow, FLUSH_INTERVAL)
                    while True:
                        with kafka_errors():
                            await consumer.getmany(timeout_ms=500)  # no records: heartbeats, rebalances
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._give_up("stopping")
                        await _stop_consumer(consumer)
                    tg.cancel_scope.cancel()
        finally:
            self._switch = None
            self.assigned = frozenset()
            await self.adverts.end_session()
            if self.store is not None:
                await self.store.close()

    # -- rebalance listener (rule 2) ------------------------------------------------------------

    async def revoked(self) -> None:
        """Stop everything before the rebalance completes (no fencing commit meanwhile: a commit of
        the old generation would make the member rejoin once more)."""
        self.fencing.rebalancing = True
        await self._give_up("rebalance")

    async def assigned_partitions(self, partitions: Sequence[int], generation: int, member_id: str) -> None:
        """Record the units of ``partitions`` and start them."""
        self.generation, self.member_id = generation, member_id
        self.fencing.rebalancing = False
        self.assigned = owned(self.units, partitions)
        self.fence.ok(anyio.current_time())
        self.adverts.new_generation()
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
            stop, start = plan(switch.running, target)
            fenced = self.fencing.note(now, stop, switch.running)
            if stop:
                if why and not fenced:
                    log.info("cluster (%s): stopping %s", why, ", ".join(stop))
                if set(stop) == switch.running:
                    await switch.stop_all()  # concurrently: a rebalance waits for the slowest only
                else:
                    for name in stop:
                        await switch.stop(name)
                await self._flush(stop)
                for name in stop:
                    self.adverts.forget(name)
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
        held = self.fencing.holding(anyio.current_time())
        if held:
            self.component.set(ComponentState.RETRYING, f"{held}: {detail}")
        else:
            self.component.set(ComponentState.RUNNING, detail)

    async def _watch(self) -> None:
        while True:
            await anyio.sleep(WATCH_INTERVAL)
            await self._reconcile()
            self.adverts.advertise(anyio.current_time(), self.running)

    async def _supervised(self, name: str, session: Any, every: float) -> None:
        """Run one of the member's jobs under the supervisor, retried every ``every`` s (rule 6)."""
        job = Job(name, session, stage=name, delays=lambda: itertools.repeat(every))
        await run_job(job, policy=Policy(), health=self.jobs[name], owner="cluster")


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

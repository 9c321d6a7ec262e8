"""The fencing job of a cluster member (docs/architecture.md "Several replicas").

Rules:

1. Every ``COMMIT_INTERVAL`` the member commits offset 0 on its partitions; a unit runs only while
   a commit succeeded within ``session_timeout / 2`` (:class:`~.assign.Fence`), or, with
   ``cluster.ride_through_outage``, while every broker was proven down within that time (a failed
   commit is followed by one probe, :func:`~.outage.kafka_refused`).
2. No commit is sent while the member owns nothing or rebalances (a commit of the old generation
   would make the member rejoin once more).
3. One commit at a time, a task of the member's session: aiokafka waits for a coordinator without
   end and must not be cancelled mid-way (its shielded request would fail unobserved), so the job
   waits for it ``COMMIT_TIMEOUT`` at most, fails, and waits for the same commit on its next
   attempt. A commit counts from when it was sent.
4. The job never loops on a failure: it raises, and its supervisor retries it every
   ``COMMIT_INTERVAL``.
5. What the fence does to the member's units is said once (:meth:`Fencing.note`): fenced (its
   units stopped), riding through an outage (they keep running and spool), commits reaching
   Kafka again; and shown in the ``cluster`` component's reason (:meth:`Fencing.holding`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, TopicPartition
from anyio.abc import TaskGroup

from streamd.cluster.assign import Fence
from streamd.cluster.outage import kafka_refused, parse_bootstrap
from streamd.config_core import ClusterConfig, KafkaConfig
from streamd.errors import TransientError
from streamd.publish.consume import kafka_errors
from streamd.runtime import Connected

log = logging.getLogger("streamd.cluster")

COMMIT_INTERVAL = 1.5
"""Seconds between two fencing commits (rule 1), and between a failed one and the next."""
COMMIT_TIMEOUT = 1.5
"""Longest wait for one fencing commit (aiokafka waits for a coordinator without end)."""


class Fencing:
    """A member's fencing commits and outage proofs (module rules).

    Args:
        cfg: the ``cluster`` section.
        kafka: the Kafka section, with resolved bootstrap servers.
        fence: the member's fence, told of every commit and every outage proof.
        owns: whether the member owns any unit now.

    Attributes:
        rebalancing: True while a rebalance is under way (no commit is sent, rule 2).
        commit_failure: what the last commit failed with (None: it succeeded).
        probes: how many times this member looked whether Kafka is down for everyone.
        outage_proofs: how many of them proved it while the member was not fenced (the fence
            took them).
    """

    def __init__(
        self, cfg: ClusterConfig, kafka: KafkaConfig, fence: Fence, owns: Callable[[], bool]
    ) -> None:
        self.cfg, self.kafka, self.fence, self.owns = cfg, kafka, fence, owns
        self.rebalancing = False
        self.commit_failure: Exception | None = None
        self.probes = 0
        self.outage_proofs = 0
        self._commit_done: anyio.Event | None = None
        self._no_metadata_logged = False
        self._fenced_logged = False
        self._riding_logged = False

    def new_session(self) -> None:
        """Forget the commit of an earlier session (its task group is gone)."""
        self._commit_done = None

    async def session(self, consumer: AIOKafkaConsumer, tg: TaskGroup, connected: Connected) -> None:
        """Commit on the owned partitions every ``COMMIT_INTERVAL`` (the ``fencing`` job; commits
        run as tasks of ``tg``, the member's session).

        Raises:
            TransientError: a commit failed (not ours any more, or Kafka unreachable): the fence
                decides what runs meanwhile; with ``ride_through_outage`` one probe first tells
                whether every broker is down.
            TimeoutError: a commit has not been answered within ``COMMIT_TIMEOUT``.
        """
        while True:
            partitions = consumer.assignment()
            if partitions and self.owns() and not self.rebalancing:
                done = self._commit_done
                if done is None:  # no commit in flight: send one
                    done = self._commit_done = anyio.Event()
                    tg.start_soon(self.commit, consumer, frozenset(partitions), done)
                with anyio.move_on_after(COMMIT_TIMEOUT):
                    await done.wait()
                failure: Exception | None = TimeoutError(
                    f"fencing commit not answered within {COMMIT_TIMEOUT:g}s"
                )
                if done.is_set():
                    self._commit_done, failure = None, self.commit_failure
                if failure is not None:
                    await self.probe_outage(consumer)
                    raise failure
            connected()
            await anyio.sleep(COMMIT_INTERVAL)

    async def commit(
        self, consumer: AIOKafkaConsumer, partitions: frozenset[TopicPartition], done: anyio.Event
    ) -> None:
        """One fencing commit (rule 3); ``done`` is set once it is answered."""
        self.commit_failure = None
        sent = anyio.current_time()  # the coordinator heard from the member no earlier than this
        try:
            with kafka_errors():
                await consumer.commit(dict.fromkeys(partitions, 0))
            self.fence.ok(sent)
        except TransientError as exc:  # the fencing job raises it (its supervisor retries)
            self.commit_failure = exc
        finally:
            done.set()

    def note(self, now: float, stop: Sequence[str], running: Collection[str]) -> bool:
        """Log what the fence does now (rule 5): ``stop`` are the units about to be stopped,
        ``running`` those running. Returns whether the member is fenced."""
        fenced = self.fence.fenced(now) and self.owns()
        if fenced and stop and not self._fenced_logged:
            log.warning(
                "cluster: no commit reached Kafka for %.1fs: stopping %s before another replica "
                "takes them over (fenced)",
                now - self.fence.last_ok,
                ", ".join(stop),
            )
        self._fenced_logged = fenced
        riding = self.fence.riding_through(now) and self.owns()
        if riding and not self._riding_logged:
            log.warning(
                "cluster: every Kafka broker refuses connections (Kafka is down for every replica, no "
                "other replica can take over): %s keep running and spool",
                ", ".join(sorted(running)) or "nothing",
            )
        elif self._riding_logged and not riding and not fenced:
            log.info("cluster: commits reach Kafka again")
        self._riding_logged = riding
        return fenced

    def holding(self, now: float) -> str:
        """Why the fence holds the member's units now (rule 5; empty: it does not)."""
        if self.owns() and self.fence.fenced(now):
            return "fenced (no commit to Kafka)"
        if self.owns() and self.fence.riding_through(now):
            return "Kafka down for every replica (brokers refuse)"
        return ""

    async def probe_outage(self, consumer: AIOKafkaConsumer) -> None:
        """Record a proof that Kafka is down for everyone, when it is one (rule 1)."""
        if not self.cfg.ride_through_outage or not self.owns():
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


def _metadata_brokers(consumer: Any) -> list[tuple[str, int]]:
    """``(host, port)`` of every broker of the consumer's last metadata (aiokafka keeps it on a
    private attribute); empty when it cannot be read."""
    cluster = getattr(getattr(consumer, "_client", None), "cluster", None)
    try:
        brokers = list(cluster.brokers()) if cluster is not None else []
        return [(str(b.host), int(b.port)) for b in brokers]
    except (AttributeError, TypeError, ValueError):
        return []

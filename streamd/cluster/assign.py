"""The assignment logic of a cluster member, without I/O (docs/architecture.md "Several replicas").

Rules:

1. Units are every source and sink name, sorted; unit ``i`` is partition ``i`` of the control topic.
   Every replica runs the same config, so they all agree on the mapping.
2. A member runs the units of the partitions it is assigned, unless it is fenced: for
   ``session_timeout / 2`` neither a commit on its partitions succeeded nor (with
   ``cluster.ride_through_outage``) was Kafka proven down for everyone (:class:`Fence`).
3. :func:`plan` says what to stop and what to start to get from what runs to what should run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CONTROL_SUFFIX = "_streamd.cluster"
STATE_SUFFIX = "_streamd.state"


def control_topic(prefix: str) -> str:
    """The topic whose partitions stand for the units (no records are written to it)."""
    return prefix + CONTROL_SUFFIX


def state_topic(prefix: str) -> str:
    """The compacted topic holding the state that moves with a source (poll cursors)."""
    return prefix + STATE_SUFFIX


def member_client_id(client_id: str, advertised_url: str) -> str:
    """The Kafka client id of a replica's cluster consumer: ``{client_id}@{host}:{port}``, its HTTP
    address, so the group's description (and the wallboard) names the replica that owns a unit."""
    return f"{client_id}@{advertised_url.partition('://')[2] or advertised_url}"


def units(names: Iterable[str]) -> list[str]:
    """The assignable units in partition order (rule 1).

    Raises:
        ValueError: a name appears twice (a source and a sink must not share a name).
    """
    ordered = sorted(names)
    dupes = sorted({n for n in ordered if ordered.count(n) > 1})
    if dupes:
        raise ValueError(f"cluster: sources and sinks need distinct names: {', '.join(dupes)}")
    return ordered


def owned(unit_names: Sequence[str], partitions: Iterable[int]) -> frozenset[str]:
    """The units of the assigned ``partitions``; partitions beyond the units are ignored (a topic
    grown by a newer config that this replica does not run yet)."""
    return frozenset(unit_names[p] for p in partitions if 0 <= p < len(unit_names))


def plan(running: frozenset[str], wanted: frozenset[str]) -> tuple[list[str], list[str]]:
    """``(stop, start)``, each sorted: stop first, then start (rule 3)."""
    return sorted(running - wanted), sorted(wanted - running)


@dataclass(slots=True)
class Fence:
    """When a member must stop what it runs because it cannot prove to Kafka that it still owns it.

    The coordinator can give this member's units away only ``session_timeout`` after it last heard
    from the member while it was up. Two observations each restart that clock: a successful commit
    (the coordinator heard from the member) and a proof that every broker was down (no
    coordinator was counting: a broker that comes back loads the group and starts every member's
    session timer anew; docs/architecture.md "Several replicas", failure cases).

    Attributes:
        after: seconds without either observation before the member is fenced
            (``session_timeout / 2``: strictly before the coordinator gives the units away).
        last_ok: clock time of the last successful commit (or of the assignment).
        last_down: clock time of the last proof that every broker was down (-inf: none).
    """

    after: float
    last_ok: float
    last_down: float = float("-inf")

    def ok(self, now: float) -> None:
        """A commit succeeded (or partitions were just assigned) at ``now``."""
        self.last_ok = max(self.last_ok, now)

    def kafka_down(self, now: float) -> bool:
        """Every broker refused a connection at ``now`` (a whole-Kafka outage, not a partition).

        Only a member not fenced at ``now`` takes the proof: once fenced, the coordinator may have
        given the units away before Kafka went down, and only a commit proves they are still its.

        Returns:
            True when the proof was taken.
        """
        if self.fenced(now):
            return False
        self.last_down = max(self.last_down, now)
        return True

    def riding_through(self, now: float) -> bool:
        """True while only an outage proof (no commit) keeps the member from being fenced."""
        return self.fenced_by_commits(now) and not self.fenced(now)

    def fenced_by_commits(self, now: float) -> bool:
        """True once no commit succeeded for ``after`` seconds."""
        return now - self.last_ok >= self.after

    def fenced(self, now: float) -> bool:
        """True once neither a commit nor an outage proof happened for ``after`` seconds."""
        return now - max(self.last_ok, self.last_down) >= self.after


def wanted(assigned: frozenset[str], fence: Fence, now: float) -> frozenset[str]:
    """What should run now (rule 2)."""
    return frozenset() if fence.fenced(now) else assigned

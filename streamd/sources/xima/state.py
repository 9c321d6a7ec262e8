"""Pure Xima change detection: the last published value per key, and what a new batch publishes.

Rules:

1. Everything here is sync and does no I/O; time is passed in (``now_ms``), never read.
2. A key listed in ``initializing`` never gets a value published, even if the same body also
   carries a result for it; its last value is forgotten, so it is re-published once ready.
3. Change detection compares the typed value (type, value fields, ``lastUpdateTime`` text), never
   ``extra``, ``last_update_ms`` or the computed live duration (which changes on every
   evaluation). A full refresh re-publishes every current value with ``snapshot=True``, with the
   deviations it was read with.
4. Newest wins (``monotonic``, the websocket mode, where socket messages and REST re-polls race):
   a value older by its own ``lastUpdateTime`` than the one held is not taken, and a snapshot
   re-publishes the held (newer) value in its place. A value whose ``lastUpdateTime`` (or the
   held one's) was unusable has no version to compare: it is taken.
5. A values answer lists every category value of the metrics it was asked for, under ``results``
   or ``initializing``: :meth:`RealtimeState.prune` drops the held values of those metrics that
   it no longer lists (a category value removed from the metric), so they are not re-published
   by every refresh for ever.
6. Agents' queues (:mod:`.canonical`, ``agent_group_metrics``): an agent belongs to the queue of
   each agent-group metric that lists it, in the metric list's ``categorySelection``
   (:meth:`RealtimeState.set_descriptors`) or as the category value of a value held. Agents are
   matched by their folded display string (``"Nate Thatcher (123)"`` = ``"Nate Thatcher(123)"``).
   Every AgentState carries its agent's sorted ``queue_ids``; when an agent's queues change
   (joining or leaving: a new metric list, a value read, pruned or forgotten), its held state is
   published again (the canonical AgentState only) with the new ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from streamd.events import AGENT_STATE_TOPIC, Event
from streamd.sources.xima.canonical import CanonicalRules
from streamd.sources.xima.metric_events import fold_display, metric_events
from streamd.sources.xima.models import MetricDescriptor, MetricEntry, MetricKey
from streamd.sources.xima.normalize import LAST_UPDATE_PATH, VALUE_PATH


def _versioned(entry: MetricEntry) -> bool:
    """True when the entry's ``last_update_ms`` is the vendor's ``lastUpdateTime``, not a read time."""
    return not entry.deviations or (
        LAST_UPDATE_PATH not in entry.deviations and VALUE_PATH not in entry.deviations
    )


def _older(entry: MetricEntry, held: MetricEntry) -> bool:
    """True when both entries carry a vendor time and ``entry``'s is earlier than ``held``'s."""
    return entry.value.last_update_ms < held.value.last_update_ms and _versioned(entry) and _versioned(held)


@dataclass(slots=True)
class RealtimeState:
    """Last published entry per key, metric descriptors and agent index: the pure diffing core.

    ``apply`` takes a batch of read entries and initializing keys and returns the events to publish;
    ``refresh`` returns every current value as a snapshot. Time is passed in, never read.
    """

    source: str
    rules: CanonicalRules = field(default_factory=CanonicalRules)
    descriptors: dict[str, MetricDescriptor] = field(default_factory=dict)
    agents: dict[str, str] = field(default_factory=dict)
    entries: dict[MetricKey, MetricEntry] = field(default_factory=dict)
    initializing: set[MetricKey] = field(default_factory=set)
    _members: set[MetricKey] = field(default_factory=set)
    """Keys of agent-group metrics read in values (rule 6)."""
    _queues: dict[str, tuple[str, ...]] | None = None
    """Folded agent display -> its queue ids (rule 6), rebuilt when membership may have changed."""

    def set_descriptors(self, descriptors: Iterable[MetricDescriptor], *, now_ms: int) -> list[Event]:
        """Take a new metric list; the AgentStates of agents whose queues it changed (rule 6)."""
        before = self.queues()
        self.descriptors = {d.metric_id: d for d in descriptors}
        self._queues = None
        return self._moved(before, now_ms, set())

    def queues(self) -> dict[str, tuple[str, ...]]:
        """Folded agent display -> its sorted queue ids (rule 6)."""
        if self._queues is None:
            groups = self.rules.agent_group_metrics
            found: dict[str, set[str]] = {}
            for metric_id, queue in groups.items():
                descriptor = self.descriptors.get(metric_id)
                for agent in descriptor.category_selection if descriptor else ():
                    found.setdefault(fold_display(agent), set()).add(queue)
            for key in self._members:
                if key.category_value is not None:
                    found.setdefault(fold_display(key.category_value), set()).add(groups[key.metric_id])
            self._queues = {agent: tuple(sorted(q)) for agent, q in found.items()}
        return self._queues

    def _moved(self, before: dict[str, tuple[str, ...]], now_ms: int, done: set[MetricKey]) -> list[Event]:
        """AgentStates of held agent states whose agent's queues differ from ``before``."""
        after = self.queues()
        if after == before:
            return []
        out: list[Event] = []
        for key, entry in self.entries.items():
            if (
                key in done
                or key.metric_id not in self.rules.agent_state_metrics
                or key.category_value is None
            ):
                continue
            agent = fold_display(key.category_value)
            if before.get(agent, ()) != after.get(agent, ()):
                out += [e for e in self._events(entry, now_ms, False) if e.topic == AGENT_STATE_TOPIC]
        return out

    def _member(self, key: MetricKey, listed: bool) -> None:
        """Record whether an agent-group metric's key is listed by the values read (rule 6)."""
        if key.metric_id not in self.rules.agent_group_metrics or (key in self._members) == listed:
            return
        if listed:
            self._members.add(key)
        else:
            self._members.discard(key)
        self._queues = None

    def apply(
        self,
        results: Iterable[MetricEntry],
        initializing: Iterable[MetricKey] = (),
        *,
        now_ms: int,
        snapshot: bool = False,
        monotonic: bool = False,
    ) -> list[Event]:
        """Record a batch; return events for changed values (all of them when ``snapshot``).

        Args:
            results: ready entries (:func:`~.normalize.parse_entry`).
            initializing: keys the server is still initializing (rule 2: never published).
            now_ms: the evaluation instant for live durations (epoch ms).
            snapshot: publish every value of the batch, marked ``snapshot=True``.
            monotonic: newest wins (rule 4): a value older (``lastUpdateTime``) than the one held
                is not taken; a snapshot publishes the held one instead.
        """
        results = list(results)
        before = self.queues()
        pending = set(initializing)
        for key in pending:
            self.entries.pop(key, None)
            self._member(key, True)  # still listed: the agent is in the group
        self.initializing |= pending
        for entry in results:  # membership first: this batch's states carry their queues
            self._member(entry.key, True)
        out: list[Event] = []
        done: set[MetricKey] = set()
        for entry in results:
            key, value = entry.key, entry.value
            if key in pending:
                continue
            self.initializing.discard(key)
            held = self.entries.get(key)
            if monotonic and held is not None and _older(entry, held):
                if snapshot:
                    done.add(key)
                    out.extend(self._events(held, now_ms, True))
                continue
            if not snapshot and held is not None and held.value == value:
                continue
            self.entries[key] = entry
            done.add(key)
            out.extend(self._events(entry, now_ms, snapshot))
        return out + self._moved(before, now_ms, done)

    def prune(
        self, metric_ids: Iterable[str], listed: Iterable[MetricKey], *, now_ms: int
    ) -> tuple[list[MetricKey], list[Event]]:
        """Drop the held values of ``metric_ids`` whose keys an answer no longer ``listed`` (rule 5).

        Args:
            metric_ids: the metrics one values answer was asked for (and answered).
            listed: every key that answer listed, under ``results`` or ``initializing``.
            now_ms: the evaluation instant of the AgentStates published again.

        Returns:
            The keys dropped, in the order they were held, and the AgentStates of the agents that
            left a queue by it (rule 6).
        """
        ids, seen = set(metric_ids), set(listed)
        before = self.queues()
        gone = [k for k in self.entries if k.metric_id in ids and k not in seen]
        for key in gone:
            del self.entries[key]
        for key in [k for k in self._members if k.metric_id in ids and k not in seen]:
            self._member(key, False)
        return gone, self._moved(before, now_ms, set())

    def forget(self, metric_ids: set[str], *, now_ms: int) -> list[Event]:
        """Drop the values of metrics no longer in ``metric_ids`` (removed from the metric list);
        the AgentStates of the agents that left a queue by it (rule 6)."""
        before = self.queues()
        for key in [k for k in self.entries if k.metric_id not in metric_ids]:
            del self.entries[key]
        for key in [k for k in self._members if k.metric_id not in metric_ids]:
            self._member(key, False)
        self.initializing = {k for k in self.initializing if k.metric_id in metric_ids}
        return self._moved(before, now_ms, set())

    def refresh(self, *, now_ms: int) -> list[Event]:
        """Every current value as a snapshot (the periodic full refresh)."""
        out: list[Event] = []
        for entry in self.entries.values():
            out.extend(self._events(entry, now_ms, True))
        return out

    def _events(self, entry: MetricEntry, now_ms: int, snapshot: bool) -> list[Event]:
        agent = entry.key.category_value
        queue_ids: tuple[str, ...] = ()
        if agent is not None and entry.key.metric_id in self.rules.agent_state_metrics:  # only they need it
            queue_ids = self.queues().get(fold_display(agent), ())
        return metric_events(
            self.source,
            entry,
            now_ms=now_ms,
            descriptor=self.descriptors.get(entry.key.metric_id),
            agents=self.agents,
            rules=self.rules,
            snapshot=snapshot,
            queue_ids=queue_ids,
        )

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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from streamd.events import Event
from streamd.sources.xima.canonical import CanonicalRules
from streamd.sources.xima.metric_events import metric_events
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
        pending = set(initializing)
        for key in pending:
            self.entries.pop(key, None)
        self.initializing |= pending
        out: list[Event] = []
        for entry in results:
            key, value = entry.key, entry.value
            if key in pending:
                continue
            self.initializing.discard(key)
            held = self.entries.get(key)
            if monotonic and held is not None and _older(entry, held):
                if snapshot:
                    out.extend(self._events(held, now_ms, True))
                continue
            if not snapshot and held is not None and held.value == value:
                continue
            self.entries[key] = entry
            out.extend(self._events(entry, now_ms, snapshot))
        return out

    def prune(self, metric_ids: Iterable[str], listed: Iterable[MetricKey]) -> list[MetricKey]:
        """Drop the held values of ``metric_ids`` whose keys an answer no longer ``listed`` (rule 5).

        Args:
            metric_ids: the metrics one values answer was asked for (and answered).
            listed: every key that answer listed, under ``results`` or ``initializing``.

        Returns:
            The keys dropped, in the order they were held.
        """
        ids, seen = set(metric_ids), set(listed)
        gone = [k for k in self.entries if k.metric_id in ids and k not in seen]
        for key in gone:
            del self.entries[key]
        return gone

    def forget(self, metric_ids: set[str]) -> None:
        """Drop the values of metrics no longer in ``metric_ids`` (removed from the metric list)."""
        for key in [k for k in self.entries if k.metric_id not in metric_ids]:
            del self.entries[key]
        self.initializing = {k for k in self.initializing if k.metric_id in metric_ids}

    def refresh(self, *, now_ms: int) -> list[Event]:
        """Every current value as a snapshot (the periodic full refresh)."""
        out: list[Event] = []
        for entry in self.entries.values():
            out.extend(self._events(entry, now_ms, True))
        return out

    def _events(self, entry: MetricEntry, now_ms: int, snapshot: bool) -> list[Event]:
        return metric_events(
            self.source,
            entry,
            now_ms=now_ms,
            descriptor=self.descriptors.get(entry.key.metric_id),
            agents=self.agents,
            rules=self.rules,
            snapshot=snapshot,
        )

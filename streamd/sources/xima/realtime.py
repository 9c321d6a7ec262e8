"""Realtime metric values by polling (seed 000 §4.1-4.2), shared with the websocket mode.

Rules:

1. :class:`RealtimeCore` owns the per-source state that outlives sessions (last values, metric
   descriptors, agent mapping, rejected ids); :class:`RealtimePollSpec` is the generic
   :class:`~streamd.sources.poller.Poller`'s vendor part. Neither contains a retry loop.
2. 200, 206 and 400-with-body are the same answer: ``results`` are published, ``initializing``
   keys are never published and are re-polled after ``initializing_retry`` (``PollResult.next_in``).
3. 403/404 on a list of ids bisects the list until the bad ids are found; each bad id is logged
   once, counted (``errors_total{stage="request", error_type="metric_rejected"}``) and skipped
   until the next metric-list refresh. Only when *every* id is rejected does the source stop
   (``AuthError`` for 403, ``FatalError`` for 404) with one line naming the ids.
4. The first cycle of every session and every ``refresh_every`` publish all values with
   ``snapshot=True``; other cycles publish changes only.
5. Tolerant reading (:mod:`.normalize` rule 3): a deviating entry is published with its
   deviations and counted once (``streamd_deviations_total``) when its event is published from a
   vendor answer (a refresh from held values is not counted again); only unroutable entries are
   dead letters (``errors_total{stage="processing"}``).
6. The metric list and the agent mapping are best-effort enrichment: they are re-read every
   ``metrics_refresh`` / ``mapping_refresh``; a failing mapping only logs and is retried later.
   With ``metrics: all`` the list is required (it *is* the set of ids).
7. An answer lists every category value of the metrics it was asked for; values it no longer
   lists are dropped from the state (:mod:`.state` rule 5), logged and counted
   (``errors_total{stage="processing", error_type="category_removed"}``), and never re-published.
   Nothing is published for them (no tombstone): the topic is not compacted per category.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from streamd.errors import AuthError, FatalError, NormalizationError, SourceError, VendorProtocolError
from streamd.events import Event
from streamd.sources.poller import PollResult
from streamd.sources.xima.bodies import parse_metric_list, parse_values_body
from streamd.sources.xima.canonical import AGENT_STATES, CanonicalRules, fold_state
from streamd.sources.xima.client import MetricsRejected, XimaClient
from streamd.sources.xima.config import XimaSourceConfig
from streamd.sources.xima.metric_events import agent_index, dead_letters
from streamd.sources.xima.models import MetricKey
from streamd.sources.xima.state import RealtimeState
from streamd.telemetry import count_deviation, count_error

log = logging.getLogger("streamd.sources.xima")


def wall_ms() -> int:
    """Wall-clock epoch milliseconds (the ``atTime`` of the live-duration formulas)."""
    return int(time.time() * 1000)


def rules_of(cfg: XimaSourceConfig) -> CanonicalRules:
    """The canonical-mapping rules a config asks for."""
    states = dict(AGENT_STATES)
    states.update({fold_state(k): v for k, v in cfg.agent_state_map.items()})
    return CanonicalRules(
        agent_state_metrics=frozenset(cfg.agent_state_metrics),
        agent_states=states,
        canonical=cfg.canonical,
        system_queue=cfg.system_queue,
        queue_metric_map=dict(cfg.queue_metric_map),
        agent_group_metrics=dict(cfg.agent_group_metrics),
    )


def count_dead(source: str, events: Sequence[Event]) -> None:
    """Count dead-letter events (every drop is a metric)."""
    for e in events:
        if e.topic == "deadletter":
            error_type = getattr(e.data, "error_type", "invalid_payload")
            count_error(source, "processing", error_type)


def count_deviations(source: str, events: Sequence[Event]) -> None:
    """Count each published vendor event whose input deviated from the document (once per input)."""
    for e in events:
        if e.deviations:
            count_deviation(source, e.type)


@dataclass(slots=True)
class RealtimeCore:
    """Realtime state and requests shared by the poll and websocket modes."""

    cfg: XimaSourceConfig
    client: XimaClient
    now_ms: Callable[[], int] = wall_ms
    clock: Callable[[], float] = anyio.current_time
    state: RealtimeState = field(init=False)
    rejected: dict[str, int] = field(default_factory=dict)
    _ids: list[str] = field(default_factory=list)
    _reported: set[str] = field(default_factory=set)
    _metrics_due: float = float("-inf")
    _mapping_due: float = float("-inf")
    _refresh_due: float = float("-inf")

    def __post_init__(self) -> None:
        self.state = RealtimeState(self.cfg.name, rules=rules_of(self.cfg))
        if isinstance(self.cfg.metrics, list):
            self._ids = list(dict.fromkeys(self.cfg.metrics))

    @property
    def source(self) -> str:
        """The source name."""
        return self.cfg.name

    def active_ids(self) -> list[str]:
        """The metric ids to request: configured or discovered, minus the rejected ones."""
        return [i for i in self._ids if i not in self.rejected]

    async def prepare(self) -> list[Event]:
        """Re-read the metric list and the agent mapping when due; returns dead letters, if any,
        and the AgentStates of agents the new list moved to other queues (:mod:`.state` rule 6)."""
        now = self.clock()
        out: list[Event] = []
        if now >= self._metrics_due:
            out += await self._load_metrics()
            self._metrics_due = now + self.cfg.metrics_refresh
        if self.cfg.agent_mapping and now >= self._mapping_due:
            await self._load_mapping()
            self._mapping_due = now + self.cfg.mapping_refresh
        return out

    def restart(self) -> None:
        """A new session begins: its first cycle publishes a full snapshot."""
        self._refresh_due = float("-inf")

    def take_refresh(self) -> bool:
        """True (once per ``refresh_every``) when this cycle must publish a full snapshot."""
        now = self.clock()
        if now < self._refresh_due:
            return False
        self._refresh_due = now + self.cfg.refresh_every
        return True

    async def poll(self, *, snapshot: bool, monotonic: bool = False) -> list[Event]:
        """One values round over every active id (chunked, bisecting rejected lists).

        Args:
            snapshot: publish every value as a snapshot.
            monotonic: newest wins (:mod:`.state` rule 4): the websocket mode's REST polls.

        Raises:
            AuthError: every id was rejected with 403 (or the key was rejected: 401).
            FatalError: every id was rejected, some with 404.
        """
        ids = self.active_ids()
        answers: list[tuple[list[str], dict[str, Any]]] = []
        size = self.cfg.max_ids_per_request
        for start in range(0, len(ids), size):
            answers += await self._values(ids[start : start + size])
        if ids and not self.active_ids():
            self._all_rejected(self._ids)
        out: list[Event] = []
        now_ms = self.now_ms()
        self.state.initializing.clear()  # this round says afresh what is still initializing
        for asked, body in answers:
            parsed = parse_values_body(body, now_ms=now_ms)
            out += dead_letters(self.source, parsed.problems)
            out += self.state.apply(
                parsed.results, parsed.initializing, now_ms=now_ms, snapshot=snapshot, monotonic=monotonic
            )
            if not parsed.problems:  # an unroutable entry may be a listed key: prune nothing then
                listed = [e.key for e in parsed.results] + list(parsed.initializing)
                gone, moved = self.state.prune(asked, listed, now_ms=now_ms)
                self._pruned(gone)
                out += moved  # agents that left a queue with the dropped values (state.py rule 6)
        count_dead(self.source, out)
        count_deviations(self.source, out)
        return out

    def _pruned(self, gone: list[MetricKey]) -> None:
        if gone:
            count_error(self.source, "processing", "category_removed", len(gone))
            shown = ", ".join(f"{k.metric_id}:{k.category_value or ''}" for k in gone[:10])
            log.info(
                "xima %s: %d value(s) no longer listed by their metric, dropped: %s",
                self.source,
                len(gone),
                shown,
            )

    async def _values(self, ids: list[str]) -> list[tuple[list[str], dict[str, Any]]]:
        """``(ids asked, answer)`` per values request; a rejected list is split (rule 3)."""
        try:
            return [(ids, await self.client.metric_values(ids))]
        except MetricsRejected as exc:
            if len(ids) == 1:
                self._reject(ids[0], exc)
                return []
            mid = len(ids) // 2
            return await self._values(ids[:mid]) + await self._values(ids[mid:])

    def _reject(self, metric_id: str, exc: MetricsRejected) -> None:
        self.rejected[metric_id] = exc.status
        count_error(self.source, "request", "metric_rejected")
        if metric_id not in self._reported:
            self._reported.add(metric_id)
            log.warning("xima %s: metric %s skipped: %s", self.source, metric_id, exc)

    def _all_rejected(self, ids: list[str]) -> None:
        statuses = {self.rejected[i] for i in ids}
        codes = ", ".join(str(s) for s in sorted(statuses))
        line = f"xima {self.source}: every requested metric was rejected (HTTP {codes}): {', '.join(ids)}"
        if statuses == {403}:
            raise AuthError(line + " (not assigned to the service user)")
        raise FatalError(line)

    async def _load_metrics(self) -> list[Event]:
        try:
            body = await self.client.list_metrics()
        except AuthError:
            raise
        except SourceError as exc:
            if self.cfg.metrics == "all" and not self._ids:
                raise  # nothing to poll without it
            count_error(self.source, "request", "metric_list")
            log.info("xima %s: metric list unavailable (%s); keeping the previous one", self.source, exc)
            return []
        try:
            descriptors = parse_metric_list(body)
        except NormalizationError as exc:
            if self.cfg.metrics == "all" and not self._ids:  # nothing to poll yet: retry with backoff
                raise VendorProtocolError(f"xima {self.source}: cannot read the metric list: {exc}") from exc
            events = dead_letters(self.source, [(exc, body)])
            count_dead(self.source, events)
            return events
        moved = self.state.set_descriptors(descriptors, now_ms=self.now_ms())
        if self.cfg.metrics == "all":
            self._ids = list(self.state.descriptors)
            moved += self.state.forget(set(self._ids), now_ms=self.now_ms())
        self.rejected.clear()  # rejected ids get another chance after each list refresh
        return moved

    async def _load_mapping(self) -> None:
        try:
            body = await self.client.agent_mapping()
        except SourceError as exc:
            count_error(self.source, "request", "agent_mapping")
            log.info("xima %s: agent mapping unavailable (%s); agent keys stay unenriched", self.source, exc)
            return
        self.state.agents = agent_index(body)


@dataclass(slots=True)
class RealtimePollSpec:
    """The :class:`~streamd.sources.poller.PollSpec` of realtime polling (in-memory cursor)."""

    core: RealtimeCore
    name: str = "realtime"

    def load_cursor(self, saved: str | None) -> None:
        """A new poll session starts: its first cycle is a snapshot."""
        self.core.restart()

    def dump_cursor(self, cursor: None) -> str | None:
        """Realtime polling keeps no durable cursor."""
        return None

    async def fetch(self, cursor: None) -> PollResult[None]:
        """Refresh the metric list/mapping when due, poll all values, publish what changed."""
        events = await self.core.prepare()
        events += await self.core.poll(snapshot=self.core.take_refresh())
        retry = self.core.cfg.initializing_retry if self.core.state.initializing else None
        return PollResult(events, None, next_in=retry)

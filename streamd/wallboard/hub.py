"""The live state hub: the current canonical agent and queue state, and its change feed.

Rules:

1. The hub holds the latest :class:`~streamd.events.AgentState` per agent key
   (``{source}:{agent_id}``) and :class:`~streamd.events.QueueMetric` per metric key
   (``{source}:{queue_id}:{metric}``) — the same keys as on the compacted Kafka topics, every
   value vendor-tagged. It is plain synchronous code: no I/O, no awaiting, so a snapshot plus a
   subscription taken together are atomic on the event loop.
2. Bounded: beyond ``max_agents`` / ``max_metrics`` the least recently updated entry is evicted;
   an eviction is a change (clients drop the entry) and is counted
   (``streamd_wallboard_evicted_total{kind}``).
3. Every real change (a new value, a removal, an eviction) gets the next sequence number; an
   identical value is a no-op. Event ids are ``{epoch}.{seq}``: the epoch is random per hub, so
   an id from a previous process never resumes into this one's sequence.
4. The last ``replay`` changes are kept, so a client resuming with ``Last-Event-ID`` gets exactly
   the changes it missed, or ``None`` (= send a fresh snapshot) when they are gone.
5. Subscribers get changes through a small bounded buffer filled without waiting: a subscriber
   whose buffer is full is dropped (its stream ends, ``streamd_wallboard_clients_dropped_total``
   counts it); a slow client never slows the hub or the Kafka feed.
6. An agent state without ``since`` gets one: the previous ``since`` when the state did not
   change, else the time the change was observed (the Kafka record time), so time-in-state ticks.
7. The event loop never waits on a big board: :meth:`StateHub.freeze` takes the state at once
   (a copy of the value lists, ~1 ms for 50,000 agents; the values are immutable), and
   :func:`encode_snapshot` filters and encodes it in slices, yielding to the loop between them.
   The encoded lists are cached per filter until the next change, so clients reconnecting
   together cost one encoding.
8. Sources: every record read counts as news from its source (:meth:`StateHub.touch`, the Kafka
   record time: when it was published, not the vendor's event time), even when it changed
   nothing. :meth:`StateHub.sync` (once a second, from the plugin) turns that and the daemon's
   component states into :class:`SourceStatus` changes (kind ``source``, key the source name):
   the state when this daemon runs the source, ``None`` when another producer does, and
   ``last_update`` moved on at most every ``min(5 s, stale_after / 10)``, so a busy source costs
   one change per few seconds, never one per record. The wallboard feed's own state is one
   :class:`FeedStatus` (kind ``feed``). At most :data:`MAX_SOURCES` sources are tracked.

Memory: about 600 bytes per agent with typical ids and names (``bench/wallboard_memory.py``
measured 580: 50,000 agents add ~28 MB RSS over an empty hub, 70 MB in all).
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from prometheus_client import Counter, Gauge
from pydantic import Field

from streamd.events import AgentState, QueueMetric, utcnow
from streamd.publish.encoding import dumps
from streamd.telemetry import REGISTRY, Component, ComponentState, count_error

Kind = Literal["agent", "metric", "source", "feed"]
MAX_SOURCES = 1024
"""Sources tracked at most (rule 8); the records of further ones still update the board."""

EVICTED = Counter(
    "streamd_wallboard_evicted",
    "Wallboard entries evicted because the hub reached its bound.",
    ["kind"],
    registry=REGISTRY,
)
CLIENTS_DROPPED = Counter(
    "streamd_wallboard_clients_dropped",
    "Live-feed clients dropped because they did not keep up.",
    registry=REGISTRY,
)
CLIENTS = Gauge("streamd_wallboard_clients", "Live-feed clients connected.", registry=REGISTRY)
ENTRIES = Gauge(
    "streamd_wallboard_entries", "Entries held by the wallboard hub.", ["kind"], registry=REGISTRY
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceStatus:
    """One source as the board sees it (rule 8)."""

    source: Annotated[str, Field(description="The source name.")]
    state: Annotated[
        ComponentState | None,
        Field(description="Its state when this daemon runs it (as in /readyz); null when another does."),
    ] = None
    detail: Annotated[
        str, Field(description="Why it is in that state (e.g. the error of a failed source).")
    ] = ""
    last_update: Annotated[
        datetime | None,
        Field(description="When the last record of this source was published (null: none seen)."),
    ] = None
    stale_after: Annotated[
        float, Field(description="Seconds without a record after which its data is shown as stale.")
    ] = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedStatus:
    """The wallboard's own Kafka feed: while it is not running, nothing on the board moves."""

    state: Annotated[ComponentState, Field(description="The feed's state (as in /readyz).")]
    detail: Annotated[str, Field(description="Why it is in that state.")] = ""


Value = AgentState | QueueMetric | SourceStatus | FeedStatus


def agent_key(agent: AgentState) -> str:
    """The key of an agent (as on the ``agent-state`` topic)."""
    return f"{agent.source}:{agent.agent_id}"


def metric_key(metric: QueueMetric) -> str:
    """The key of a queue metric (as on the ``queue-metrics`` topic)."""
    return f"{metric.source}:{metric.queue_id}:{metric.metric}"


@dataclass(frozen=True, slots=True)
class Filter:
    """Which entries a client wants; an empty set means "all"."""

    sources: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, params: Iterable[tuple[str, str]]) -> Filter:
        """From query parameters: ``source``, ``queue``, ``state``, repeated or comma-separated."""
        found: dict[str, set[str]] = {"source": set(), "queue": set(), "state": set()}
        for name, value in params:
            if name in found:
                found[name].update(v.strip() for v in value.split(",") if v.strip())
        return cls(frozenset(found["source"]), frozenset(found["queue"]), frozenset(found["state"]))

    def matches(self, value: Value | None) -> bool:
        """Whether ``value`` is wanted (``None`` never is; the feed's status always is)."""
        if value is None:
            return False
        if isinstance(value, FeedStatus):
            return True
        if self.sources and value.source not in self.sources:
            return False
        if isinstance(value, AgentState):
            if self.states and value.state.value not in self.states:
                return False
            return not self.queues or not self.queues.isdisjoint(value.queue_ids)
        if isinstance(value, SourceStatus):
            return True
        return not self.queues or value.queue_id in self.queues


ALL = Filter()


class Change:
    """One numbered change: ``value`` is the new value, ``None`` when the entry is gone."""

    __slots__ = ("_payload", "key", "kind", "prev", "seq", "value")

    def __init__(
        self,
        seq: int,
        kind: Kind,
        key: str,
        value: Value | None,
        prev: Value | None,
    ) -> None:
        self.seq, self.kind, self.key, self.value, self.prev = seq, kind, key, value, prev
        self._payload: bytes | None = None

    def payload(self) -> bytes:
        """The JSON delta (encoded once, shared by every client)."""
        if self._payload is None:
            self._payload = delta_json(self.seq, self.kind, self.key, self.value)
        return self._payload

    def for_filter(self, flt: Filter) -> bytes | None:
        """The delta a client with ``flt`` should see: the change, a removal, or nothing."""
        if flt is ALL or flt.matches(self.value):
            return self.payload()
        if flt.matches(self.prev):  # it was on the client's board and no longer belongs there
            return delta_json(self.seq, self.kind, self.key, None)
        return None


def delta_json(seq: int, kind: Kind, key: str, value: Value | None) -> bytes:
    """``{"seq", "kind", "key", "value"}`` as JSON."""
    return dumps({"seq": seq, "kind": kind, "key": key, "value": value})


class Subscription:
    """One client's bounded buffer of deltas: read ``receive``; ``with`` it (or ``release()``)."""

    def __init__(self, hub: StateHub, flt: Filter, size: int) -> None:
        self.hub = hub
        self.filter = flt
        self.dropped = False
        self._send: MemoryObjectSendStream[tuple[int, bytes]]
        self.receive: MemoryObjectReceiveStream[tuple[int, bytes]]
        self._send, self.receive = anyio.create_memory_object_stream[tuple[int, bytes]](size)

    def offer(self, change: Change) -> None:
        """Queue ``change`` if this client wants it; drop the client when its buffer is full."""
        payload = change.for_filter(self.filter)
        if payload is None:
            return
        try:
            self._send.send_nowait((change.seq, payload))
        except anyio.WouldBlock:
            self.dropped = True
            CLIENTS_DROPPED.inc()
            self.close()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.close()

    def close(self) -> None:
        """End the stream (the client sees the end after what is already buffered)."""
        if self.hub._subscribers.pop(id(self), None) is not None:
            CLIENTS.dec()
        self._send.close()

    def release(self) -> None:
        """Detach and discard whatever is buffered (the reader is done)."""
        self.close()
        self.receive.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StateHub:
    """Latest canonical state, bounded, with numbered changes, a replay buffer and subscribers."""

    def __init__(
        self,
        *,
        max_agents: int = 100_000,
        max_metrics: int = 100_000,
        replay: int = 4096,
        client_buffer: int = 256,
        stale_after: float = 120.0,
        stale_after_per_source: Mapping[str, float] | None = None,
    ) -> None:
        self.max_agents = max_agents
        self.max_metrics = max_metrics
        self.client_buffer = client_buffer
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.agents: OrderedDict[str, AgentState] = OrderedDict()
        self.metrics: OrderedDict[str, QueueMetric] = OrderedDict()
        self._replay: deque[Change] = deque(maxlen=replay)
        self._subscribers: dict[int, Subscription] = {}
        self._encoded: dict[Filter, tuple[int, bytes]] = {}  # filter -> (seq, encoded lists)
        self.closed = False
        self.stale_after = stale_after
        self.stale_after_per_source = dict(stale_after_per_source or {})
        self.sources: dict[str, SourceStatus] = {}  # as last published (rule 8)
        self.feed: FeedStatus | None = None
        self._seen: dict[str, datetime] = {}  # source -> newest record time

    # --- updates -----------------------------------------------------------------------------

    def update_agent(
        self, agent: AgentState, *, observed: datetime | None = None, key: str | None = None
    ) -> bool:
        """Store an agent's state; returns True when it changed something."""
        key = key or agent_key(agent)
        prev = self.agents.get(key)
        if agent.since is None:
            since = prev.since if prev is not None and prev.state is agent.state else None
            agent = dataclasses.replace(agent, since=since or observed or utcnow())
        agent = _interned(agent)
        if prev == agent:
            return False
        self.agents[key] = agent
        self.agents.move_to_end(key)
        self._publish("agent", key, agent, prev)
        while len(self.agents) > self.max_agents:
            old_key, old = self.agents.popitem(last=False)
            EVICTED.labels("agent").inc()
            self._publish("agent", old_key, None, old)
        ENTRIES.labels("agent").set(len(self.agents))
        return True

    def update_metric(self, metric: QueueMetric, *, key: str | None = None) -> bool:
        """Store a queue metric; returns True when it changed something."""
        key = key or metric_key(metric)
        prev = self.metrics.get(key)
        if prev == metric:
            return False
        self.metrics[key] = metric
        self.metrics.move_to_end(key)
        self._publish("metric", key, metric, prev)
        while len(self.metrics) > self.max_metrics:
            old_key, old = self.metrics.popitem(last=False)
            EVICTED.labels("metric").inc()
            self._publish("metric", old_key, None, old)
        ENTRIES.labels("metric").set(len(self.metrics))
        return True

    def remove(self, kind: Kind, key: str) -> bool:
        """Forget an entry (a tombstone on the compacted topic); True when it existed."""
        table: OrderedDict[str, Any] = self.agents if kind == "agent" else self.metrics
        prev = table.pop(key, None)
        if prev is None:
            return False
        self._publish(kind, key, None, prev)
        ENTRIES.labels(kind).set(len(table))
        return True

    def touch(self, source: str, when: datetime) -> None:
        """Note a record of ``source`` published at ``when`` (rule 8; cheap: every record calls it)."""
        seen = self._seen.get(source)
        if seen is None:
            if len(self._seen) >= MAX_SOURCES:
                count_error("wallboard", "sources", "too_many_sources")
                return
            self._seen[source] = when
        elif when > seen:
            self._seen[source] = when

    def sync(self, components: Mapping[str, Component] | None = None) -> int:
        """Publish what changed about the sources and the feed (rule 8); returns how many changes.

        Args:
            components: the daemon's components (``Health.components``); those of kind ``source``
                give their state, the one of kind ``feed`` the feed's. ``None`` keeps the states.
        """
        now = utcnow()
        local: dict[str, Component] = {}
        changes = 0
        for name, component in (components or {}).items():
            if component.kind == "source":
                local[name] = component
            elif component.kind == "feed":
                feed = FeedStatus(state=component.state, detail=component.detail)
                if feed != self.feed:
                    prev, self.feed = self.feed, feed
                    self._publish("feed", "feed", feed, prev)
                    changes += 1
        for name in [*local, *(n for n in self._seen if n not in local)]:
            prev_status = self.sources.get(name)
            stale_after = self.stale_after_per_source.get(name, self.stale_after)
            last = prev_status.last_update if prev_status else None
            seen = self._seen.get(name)
            if seen is not None:
                seen = min(seen, now)
                if last is None or (seen - last).total_seconds() >= min(5.0, stale_after / 10):
                    last = seen
            if components is None:
                state, detail = (prev_status.state, prev_status.detail) if prev_status else (None, "")
            elif name in local:
                state, detail = local[name].state, local[name].detail
            else:
                state, detail = None, ""
            status = SourceStatus(
                source=name, state=state, detail=detail, last_update=last, stale_after=stale_after
            )
            if status != prev_status:
                self.sources[name] = status
                self._publish("source", name, status, prev_status)
                changes += 1
        return changes

    def _publish(
        self,
        kind: Kind,
        key: str,
        value: Value | None,
        prev: Value | None,
    ) -> None:
        self.seq += 1
        change = Change(self.seq, kind, key, value, prev)
        self._replay.append(change)
        for sub in list(self._subscribers.values()):
            sub.offer(change)

    # --- reading -----------------------------------------------------------------------------

    @property
    def event_id(self) -> str:
        """The SSE id of the current state (``{epoch}.{seq}``)."""
        return f"{self.epoch}.{self.seq}"

    def snapshot(self, flt: Filter = ALL) -> dict[str, Any]:
        """Everything ``flt`` selects, with the id it is current as of (small boards and tests;
        the HTTP API uses :meth:`freeze` and :func:`encode_snapshot`)."""
        agents = [a for a in self.agents.values() if flt.matches(a)]
        metrics = [m for m in self.metrics.values() if flt.matches(m)]
        sources = [s for s in self.sources.values() if flt.matches(s)]
        return {
            "id": self.event_id,
            "seq": self.seq,
            "now": utcnow(),
            "sources": sources,
            "feed": self.feed,
            "agents": agents,
            "metrics": metrics,
        }

    def freeze(self, flt: Filter = ALL) -> Frozen:
        """The state as of now, to encode later without blocking the loop (rule 7)."""
        cached = self._encoded.get(flt)
        sources = [s for s in self.sources.values() if flt.matches(s)]
        if cached is not None and cached[0] == self.seq:
            return Frozen(self.event_id, self.seq, flt, sources, self.feed, [], [], cached[1])
        agents, metrics = list(self.agents.values()), list(self.metrics.values())
        return Frozen(self.event_id, self.seq, flt, sources, self.feed, agents, metrics)

    def remember(self, frozen: Frozen, lists: bytes) -> None:
        """Keep ``frozen``'s encoded lists while nothing changes (a few filters at most)."""
        if len(self._encoded) >= 16:
            self._encoded.clear()
        self._encoded[frozen.flt] = (frozen.seq, lists)

    def since(self, event_id: str | None) -> list[Change] | None:
        """The changes after ``event_id``, or None when they cannot be replayed (send a snapshot)."""
        if not event_id:
            return None
        epoch, _, seq_text = event_id.strip().partition(".")
        if epoch != self.epoch or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > self.seq:
            return None
        if seq == self.seq:
            return []
        if not self._replay or self._replay[0].seq > seq + 1:
            return None
        return [c for c in self._replay if c.seq > seq]

    def subscribe(self, flt: Filter = ALL, size: int | None = None) -> Subscription:
        """A new subscriber receiving every change from now on (``release()`` it when done)."""
        sub = Subscription(self, flt, size or self.client_buffer)
        if self.closed:  # stopping: the stream ends right after what the caller sends first
            sub.close()
            return sub
        self._subscribers[id(sub)] = sub
        CLIENTS.inc()
        return sub

    @property
    def subscribers(self) -> int:
        """How many subscribers are attached."""
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscriber's stream, now and for later subscribers (the daemon is stopping)."""
        self.closed = True
        for sub in list(self._subscribers.values()):
            sub.close()

    def __iter__(self) -> Iterator[AgentState | QueueMetric]:
        yield from self.agents.values()
        yield from self.metrics.values()


@dataclass(frozen=True, slots=True)
class Frozen:
    """The hub's state at one moment (:meth:`StateHub.freeze`)."""

    id: str
    seq: int
    flt: Filter
    sources: list[SourceStatus]
    feed: FeedStatus | None
    agents: list[AgentState]
    metrics: list[QueueMetric]
    encoded: bytes | None = None
    """The encoded ``"agents":[...],"metrics":[...]`` part, when the hub had it cached."""


SLICE = 2000
"""Entries filtered and encoded between two yields to the event loop (~2-4 ms)."""


async def encode_snapshot(hub: StateHub, frozen: Frozen) -> bytes:
    """The JSON snapshot of ``frozen`` (``id``, ``seq``, ``now``, ``sources``, ``feed``, ``agents``,
    ``metrics``), built in slices so the event loop keeps running (rule 7)."""
    lists = frozen.encoded
    if lists is None:
        agents = await _encode_list(frozen.agents, frozen.flt)
        metrics = await _encode_list(frozen.metrics, frozen.flt)
        lists = b'"agents":' + agents + b',"metrics":' + metrics
        hub.remember(frozen, lists)
    head = dumps(
        {"id": frozen.id, "seq": frozen.seq, "now": utcnow(), "sources": frozen.sources, "feed": frozen.feed}
    )
    return head[:-1] + b"," + lists + b"}"


async def _encode_list(values: list[Any], flt: Filter) -> bytes:
    parts: list[bytes] = []
    for start in range(0, len(values), SLICE):
        chunk = values[start : start + SLICE]
        if flt is not ALL:
            chunk = [v for v in chunk if flt.matches(v)]
        if chunk:
            parts.append(dumps(chunk)[1:-1])
        if len(values) > SLICE:
            await anyio.lowlevel.checkpoint()
    return b"[" + b",".join(parts) + b"]"


def _interned(agent: AgentState) -> AgentState:
    """Share the low-cardinality strings between agents (saves ~150 bytes per agent)."""
    return dataclasses.replace(
        agent,
        vendor=sys.intern(agent.vendor),
        source=sys.intern(agent.source),
        vendor_state=sys.intern(agent.vendor_state) if agent.vendor_state else agent.vendor_state,
        reason_code=sys.intern(agent.reason_code) if agent.reason_code else agent.reason_code,
        queue_ids=tuple(sys.intern(q) for q in agent.queue_ids),
    )

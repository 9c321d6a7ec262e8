"""What the wallboard hub holds: its value types, their keys, and the clients' filters.

Rules:

1. Keys are those of the compacted Kafka topics: ``{source}:{agent_id}`` for an agent,
   ``{source}:{queue_id}:{metric}`` for a queue metric; a source's key is its name, the feed's
   ``feed`` (see :mod:`streamd.wallboard.hub`).
2. A :class:`Filter` with an empty set selects everything on that axis; the feed's status always
   matches, a source's status matches by source only.
3. Pure code: no I/O, no state.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from streamd.events import AgentState, QueueMetric
from streamd.telemetry import ComponentState

Kind = Literal["agent", "metric", "source", "feed"]
Where = Literal["here", "replica", "unassigned", "elsewhere"]


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
    placement: Annotated[
        Where,
        Field(
            description="Where it runs: `here` (this daemon), `replica` (another replica of this "
            "cluster, named in `replica`), `unassigned` (a source of this cluster no replica is "
            "assigned now, e.g. during a rebalance), `elsewhere` (another producer, or the "
            "cluster's assignment is not known yet)."
        ),
    ] = "elsewhere"
    replica: Annotated[
        str,
        Field(
            description="The replica that runs it when `placement` is `replica`: its HTTP address (host:port)."
        ),
    ] = ""


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


def interned(agent: AgentState) -> AgentState:
    """Share the low-cardinality strings between agents (saves ~150 bytes per agent)."""
    return dataclasses.replace(
        agent,
        vendor=sys.intern(agent.vendor),
        source=sys.intern(agent.source),
        vendor_state=sys.intern(agent.vendor_state) if agent.vendor_state else agent.vendor_state,
        reason_code=sys.intern(agent.reason_code) if agent.reason_code else agent.reason_code,
        queue_ids=tuple(sys.intern(q) for q in agent.queue_ids),
    )

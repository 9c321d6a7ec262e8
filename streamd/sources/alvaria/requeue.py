"""Agent states published again when only their queues changed (:mod:`.scope_events` rule 3).

Rules:

1. An agent's ``queue_ids`` depend on what other queries learnt (:class:`~.scope_events.
   AgentWorkTypes`: presence per worktype, channelActivity's tiles), not on its own row. When they
   change while the row does not, the query that publishes the agent's canonical state
   (userActivity; presence when it reports logons) publishes the state again, built from the
   acknowledged row, with the new ``queue_ids``. Nothing is published when they did not change.
2. What was published is remembered per agent (``agent_id`` -> ``queue_ids`` of its last state
   from this query) and advances like the cursor: only once the cycle's events were emitted (the
   poller hands that cycle's cursor to the next ``fetch``); a cycle whose publish failed leaves it
   as it was, so the next session publishes the change again.
3. Work is done only when the shared ``AgentWorkTypes`` changed since the last acknowledged check
   (its ``version``), besides noting the states the cycle published anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from streamd.errors import NormalizationError
from streamd.events import AgentState, Event
from streamd.sources.alvaria.diff import ScopeState
from streamd.sources.alvaria.scope_events import AgentWorkTypes
from streamd.sources.alvaria.shapes import Key, Row

Current = Callable[[Key, Row, str | None, datetime], AgentState | None]
"""The agent state a present row stands for now (key, row as received, scope, when observed)."""


@dataclass(slots=True)
class _Held:
    """What a cycle published, waiting for its events to be emitted (rule 2)."""

    cursor: object
    announced: dict[str, tuple[str, ...]]
    version: int


@dataclass(slots=True)
class Requeue:
    """Re-publishes agent states whose ``queue_ids`` changed (module rules)."""

    source: str
    work_types: AgentWorkTypes
    current: Current
    announced: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """agent_id -> queue_ids of its last emitted state from this query."""
    checked: int = -1
    """The ``AgentWorkTypes.version`` of the last acknowledged check."""
    _held: _Held | None = None

    def ack(self, cursor: object) -> None:
        """``cursor`` was handed back by the poller: the cycle that returned it was emitted."""
        held, self._held = self._held, None
        if held is not None and held.cursor is cursor:
            self.announced, self.checked = held.announced, held.version

    def events(
        self, state: Mapping[str | None, ScopeState], made: list[Event], observed: datetime
    ) -> list[Event]:
        """The states to publish again after this cycle's ``made`` events, for the rows in
        ``state``: the cursor this cycle returns (it counts once the poller hands it back)."""
        announced = self.announced
        published = {
            e.data.agent_id: e.data.queue_ids
            for e in made
            if isinstance(e.data, AgentState) and e.data.source == self.source
        }
        if published:
            announced = announced | published
        version = self.work_types.version
        again: list[Event] = []
        if version != self.checked:
            announced, again = self._check(state, announced, published, observed)
        self._held = _Held(state, announced, version)
        return again

    def _check(
        self,
        state: Mapping[str | None, ScopeState],
        announced: dict[str, tuple[str, ...]],
        published: Mapping[str, tuple[str, ...]],
        observed: datetime,
    ) -> tuple[dict[str, tuple[str, ...]], list[Event]]:
        """Every present agent's state as it would be now, against what was announced (rule 1);
        agents no longer present are forgotten."""
        kept: dict[str, tuple[str, ...]] = {}
        again: list[Event] = []
        for scope, scope_state in state.items():
            for key, row in scope_state.rows.items():
                agent_id = key[-1]
                before = announced.get(agent_id)
                if before is None or agent_id in kept:
                    continue  # never published (its row was refused), or seen in another scope
                kept[agent_id] = before
                if agent_id in published:
                    continue
                try:
                    now = self.current(key, row, scope, observed)
                except NormalizationError:
                    continue  # dead-lettered when the row was published
                if now is not None and now.queue_ids != before:
                    again.append(now.to_event(time=now.since or observed))
                    kept[agent_id] = now.queue_ids
        return kept, again

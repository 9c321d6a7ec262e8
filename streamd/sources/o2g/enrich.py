"""What O2G's events do not say about an agent, added from its slower reads and from its other events.

:class:`Directory` is built in layers: :mod:`.directory` (what is known, the reads that find it
out, completing a canonical state, republishing), :mod:`.learning` (what the events teach: user
changes, pilot -> group links) and this module (every published event enriched, the RTI agent
deltas, the enriching emitter). The names other modules import from here are re-exported.

Rules:

1. Every event the source publishes passes :meth:`Directory.enrich` (through :class:`Enriching`,
   the source's emitter), in order, with no I/O. A canonical ``AgentState`` is completed
   (:meth:`~.directory.DirectoryReads.complete`); an event so completed is built again
   (:meth:`AgentState.to_event`, same time): its id covers what was added.
   An ``OnAgentRtiChanged`` (a delta keyed by the agent's number) is merged into what RTI said of
   that number before; once the number's login is known and RTI told its ``serviceState``, a
   delta carrying ``serviceState``, ``phoneState``, ``withdrawReason`` or ``currentPG`` is
   followed by the canonical state (:func:`.mapping.rti_agent_state`), unless the agent's
   canonical state, reason and group are already that (an RTI snapshot, or the agent package
   said it first): no second event, no new ``since``.
2. An ``OnAgentRtiChanged`` with ``pilotName`` and a ``currentPG`` links that pilot to that
   group (:mod:`.learning` rule 1); user and pilot events go to :mod:`.learning`.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any, Final

import msgspec

from streamd.events import AgentState, Event, new_agent_state
from streamd.sources.base import Emit
from streamd.sources.o2g import mapping
from streamd.sources.o2g.directory import (
    FRESH_FOR,
    REFRESH_INTERVAL,
    DirectoryReads,
    as_text,
    config_groups,
    display_name,
    reason_labels,
)
from streamd.sources.o2g.learning import Learning

__all__ = [
    "FRESH_FOR",
    "REFRESH_INTERVAL",
    "RTI_STATE_FIELDS",
    "Directory",
    "DirectoryReads",
    "Enriching",
    "config_groups",
    "display_name",
    "reason_labels",
]

_USER_CHANGED: Final = frozenset({"o2g.user.OnUserInfoChanged", "o2g.userManagement.OnUserCreated"})
_PILOT_NAMED: Final = frozenset({"o2g.pilot.PilotSnapshot", "o2g.rti.OnPilotRtiChanged"})
RTI_STATE_FIELDS: Final = frozenset({"serviceState", "phoneState", "withdrawReason", "currentPG"})
"""An RTI agent delta with one of these says something about the agent's canonical state."""
_ENRICHED: Final = frozenset(
    {
        "streamd.agent.State",
        "o2g.rti.OnAgentRtiChanged",
        "o2g.pilot.OnPilotCallQueued",
        "o2g.pilot.OnPilotCallRemoved",
        *_USER_CHANGED,
        *_PILOT_NAMED,
    }
)
"""The event types :meth:`Directory.enrich` looks into; every other one is passed on as it is."""


class Directory(Learning):
    """What one O2G source knows about its agents beyond their events, applied to every event.

    Its attributes are :class:`~.directory.DirectoryReads`'s.
    """

    def enrich(self, events: Sequence[Event]) -> list[Event]:
        """The events to publish instead of ``events`` (rules 1, 2), in order."""
        out: list[Event] = []
        append = out.append
        for event in events:
            kind = event.type
            if kind not in _ENRICHED:  # most events: passed on as they are
                append(event)
                continue
            if kind == "streamd.agent.State" and isinstance(event.data, AgentState):
                append(self._publish(event.data, event))
                continue
            append(event)
            data = event.data if isinstance(event.data, dict) else {}
            if kind == "o2g.rti.OnAgentRtiChanged":
                out += self._rti_agent(data, event)
            elif kind == "o2g.pilot.OnPilotCallQueued":
                out += self._queued(data)
            elif kind == "o2g.pilot.OnPilotCallRemoved":
                out += self._removed(data)
            elif kind in _USER_CHANGED and isinstance(user := data.get("user"), dict):
                out += self._user(user)
            elif (
                kind in _PILOT_NAMED
                and (name := as_text(data.get("name")))
                and (number := as_text(data.get("number")))
            ):
                self.pilot_numbers[name] = number
        return out

    def _publish(self, state: AgentState, event: Event) -> Event:
        if self._published.get(state.agent_id) is state:
            return event  # one the directory completed itself (:mod:`.directory` rule 4): passed on as it is
        self._set_base(state.agent_id, state)
        done = self._published[state.agent_id] = self.complete(state)
        if done is state:
            return event
        fresh = done.to_event(time=event.time, snapshot=event.snapshot)  # its id covers what was added
        return msgspec.structs.replace(fresh, deviations=event.deviations) if event.deviations else fresh

    def _rti_agent(self, delta: dict[str, Any], event: Event) -> list[Event]:
        number = as_text(delta.get("number"))
        if number is None:
            return []
        merged = self._rti.get(number)
        if merged is None:
            merged = self._rti[number] = {}
        if None in delta.values():
            merged.update((k, v) for k, v in delta.items() if v is not None)
        else:
            merged.update(delta)
        out = []
        if "pilotName" in delta:
            pilot = self.pilot_numbers.get(as_text(delta["pilotName"]) or "")
            if pilot is not None and (group := as_text(merged.get("currentPG"))):
                out += self._link(pilot, group)
        login = self.logins.get(number)
        if login is None or "serviceState" not in merged or RTI_STATE_FIELDS.isdisjoint(delta):
            return out
        if login not in self.names:
            rti_name = display_name({"firstName": merged.get("firstName"), "lastName": merged.get("name")})
            if rti_name:
                self.names[login] = rti_name
        state, vendor_state, reason_code, queue_ids = mapping.rti_fields(merged)
        last = self._base.get(login)
        if last is not None:
            if not queue_ids:
                queue_ids = last.queue_ids[:1]
            if (last.state, last.reason_code, last.queue_ids[:1]) == (state, reason_code, queue_ids):
                return out  # nothing new: no second event, no new ``since``
        mapped = new_agent_state(
            vendor=mapping.VENDOR,
            source=self.source,
            agent_id=login,
            state=state,
            vendor_state=vendor_state,
            reason_code=reason_code,
            since=event.time,
            queue_ids=queue_ids,
        )
        self._set_base(login, mapped)
        done = self._published[login] = self.complete(mapped)
        return [*out, done.to_event(snapshot=event.snapshot)]


class Enriching:
    """The source's emitter with :meth:`Directory.enrich` applied to every batch (rule 1)."""

    def __init__(self, emit: Emit, directory: Directory) -> None:
        self.emit = emit
        self.directory = directory

    async def __call__(self, events: Sequence[Event]) -> None:
        """Publish and wait until durable (as the wrapped emitter)."""
        await self.emit(self.directory.enrich(events))

    def push(self, events: Sequence[Event]) -> Coroutine[Any, Any, None]:
        """Queue for publishing (as the wrapped emitter): the wrapped emitter's push itself, so
        no frame of this one keeps ``events`` while it runs (:class:`~streamd.sources.base.Emit`)."""
        return self.emit.push(self.directory.enrich(events))

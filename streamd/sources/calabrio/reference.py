"""Calabrio reference data: agents (full detail), teams and service queues, read every
``reference_refresh``, published on ``{prefix}calabrio.reference`` and used to enrich activities.

Rules:

1. One :class:`ReferenceData` per source holds the last good copy of each kind. It is read when
   stale by whichever job needs it first (the activity job before a window, for enrichment; the
   reference job to publish), under a lock, so each kind is read once per ``reference_refresh``.
   A read counts once it answered or failed (counted); one cancelled by the cycle's timeout does
   not, so the next cycle reads again.
2. Each kind is read on its own: a kind that cannot be read (a 403 for a user without ViewOrg or
   Plan Schedules, a garbled answer) is counted and logged once and keeps its last good copy; the
   others go on. An answer with rows none of which can be used does not replace a good copy.
3. The reference job (``reference_publish``) publishes every entity on the compacted topic
   ``{prefix}calabrio.reference`` with key ``{source}:{kind}:{id}`` (``kind`` is ``agent``,
   ``team`` or ``service_queue``): all of them after a (re)start as a snapshot, then only those
   whose value changed. Its memory of what was published moves only after ``emit`` returned.
   Ids are ``stable_id(source, kind, id, value)``: a re-published unchanged entity is recognisable.
4. Parsing is pure (:func:`parse_rows`); rows without a usable id are dead letters (stage
   ``processing``), as for every Calabrio answer (:func:`~.wire.routed_rows`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import anyio
import httpx
import orjson

from streamd.errors import StreamdError
from streamd.events import Event, stable_id
from streamd.sources.calabrio.models import REFERENCE_TOPIC, AgentRef, ServiceQueueRef, TeamRef
from streamd.sources.calabrio.wire import count_dead_letters, json_array, routed_rows
from streamd.sources.http import check_status, httpx_errors
from streamd.sources.poller import PollResult
from streamd.telemetry import count_error
from streamd.tolerant import Reader

log = logging.getLogger("streamd.sources.calabrio")

KINDS: Final = ("agent", "team", "service_queue")
EVENT_TYPES: Final[Mapping[str, str]] = {
    "agent": "calabrio.reference.Agent",
    "team": "calabrio.reference.Team",
    "service_queue": "calabrio.reference.ServiceQueue",
}
_READERS: Final[Mapping[str, Reader[Any]]] = {
    "agent": Reader(AgentRef),
    "team": Reader(TeamRef),
    "service_queue": Reader(ServiceQueueRef),
}
_ID_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "agent": ("agentId", "id", "AgentID"),
    "team": ("id", "teamId", "ID"),
    "service_queue": ("id", "ID", "serviceQueueId"),
}
_ID_FIELD: Final[Mapping[str, str]] = {"agent": "agentId", "team": "id", "service_queue": "id"}


@dataclass(frozen=True, slots=True)
class Entity:
    """One reference row: its typed model (for enrichment) and the value to publish."""

    kind: str
    id: str
    model: Any
    value: Mapping[str, Any]

    @property
    def key(self) -> str:
        """``{kind}:{id}`` (the source prefixes it on the topic)."""
        return f"{self.kind}:{self.id}"


def parse_rows(source: str, kind: str, body: bytes) -> tuple[dict[str, Entity], list[Event]]:
    """Decode one reference answer (``kind`` in :data:`KINDS`) into ``id -> Entity`` and dead letters.

    A deviating field is left out of the typed model (it only enriches) but kept in the value.

    Raises:
        UnreadableAnswer: the answer cannot be read as a whole.
    """
    dead: list[Event] = []
    out: dict[str, Entity] = {}
    rows = json_array(body, f"calabrio {kind.replace('_', ' ')}s")
    for ident, row in routed_rows(source, rows, kind.replace("_", " "), dead, _ID_NAMES[kind]):
        reading = _READERS[kind].read(row)
        value, _ = _READERS[kind].check(row)
        model = reading.model
        if model is not None:
            model = model.model_copy(update={_model_id(kind): ident})
        out[ident] = Entity(kind, ident, model, {**value, _ID_FIELD[kind]: ident})
    return out, dead


def _model_id(kind: str) -> str:
    return {"agent": "agent_id", "team": "team_id", "service_queue": "queue_id"}[kind]


def reference_event(source: str, entity: Entity, *, time: datetime, snapshot: bool) -> Event:
    """The ``calabrio.reference.*`` event of one entity (rule 3)."""
    value = dict(entity.value)
    return Event(
        topic=REFERENCE_TOPIC,
        type=EVENT_TYPES[entity.kind],
        source=source,
        key=f"{source}:{entity.key}",
        data=value,
        time=time,
        id=stable_id(source, entity.kind, entity.id, fingerprint(entity)),
        snapshot=snapshot,
    )


def fingerprint(entity: Entity) -> str:
    """The entity's value as canonical JSON text (what makes it worth publishing again)."""
    return orjson.dumps(entity.value, option=orjson.OPT_SORT_KEYS, default=str).decode()


@dataclass(slots=True)
class ReferenceData:
    """The last good copy of each kind (rules 1, 2).

    Args:
        source: the source name.
        paths: the path of each kind (``agent`` is read with ``fullDetail=true``).
        refresh: seconds between reads of a kind.
        clock: monotonic seconds.
    """

    source: str
    paths: Mapping[str, str]
    refresh: float
    clock: Callable[[], float]
    entities: dict[str, dict[str, Entity]] = field(default_factory=dict)
    _loaded_at: dict[str, float] = field(default_factory=dict)
    _failing: set[str] = field(default_factory=set)
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def agents(self) -> dict[str, AgentRef]:
        """``agentId -> AgentRef`` of the agents whose row could be typed."""
        return {i: e.model for i, e in self.entities.get("agent", {}).items() if e.model is not None}

    def get(self, agent_id: str) -> AgentRef | None:
        """The agent's reference row, if known."""
        entity = self.entities.get("agent", {}).get(agent_id)
        return entity.model if entity is not None else None

    def team_name(self, team_id: str | None) -> str | None:
        """A team's name, if known."""
        entity = self.entities.get("team", {}).get(team_id or "")
        return entity.model.name if entity is not None and entity.model is not None else None

    def queue_name(self, queue_id: str) -> str | None:
        """A service queue's name, if known."""
        entity = self.entities.get("service_queue", {}).get(queue_id)
        return entity.model.name if entity is not None and entity.model is not None else None

    async def refresh_if_stale(
        self, client: httpx.AsyncClient, kinds: tuple[str, ...] = KINDS
    ) -> list[Event]:
        """Re-read each of ``kinds`` that is due (and configured); the dead letters of unusable rows."""
        dead: list[Event] = []
        async with self._lock:
            for kind in kinds:
                loaded = self._loaded_at.get(kind)
                if kind not in self.paths or (loaded is not None and self.clock() - loaded < self.refresh):
                    continue
                started = self.clock()
                dead += await self._read(client, kind)
                self._loaded_at[kind] = started  # a read or a counted failure; not a cancelled read
        return dead

    async def _read(self, client: httpx.AsyncClient, kind: str) -> list[Event]:
        path = self.paths[kind]
        params = {"fullDetail": "true"} if kind == "agent" else None
        try:
            with httpx_errors():
                response = await client.get(path, params=params)
            check_status(response, f"calabrio GET {path}")
            rows, dead = parse_rows(self.source, kind, response.content)
        except StreamdError as exc:  # enrichment only: keep the last good copy (rule 2)
            count_error(self.source, "reference", type(exc).__name__)
            if kind not in self._failing:
                log.warning("%s: cannot read the %s reference data: %s", self.source, kind, exc)
            self._failing.add(kind)
            return []
        if kind in self._failing:
            log.info("%s: %s reference data readable again", self.source, kind)
        self._failing.discard(kind)
        if rows or not dead:
            self.entities[kind] = rows
        return dead


@dataclass(frozen=True, slots=True)
class ReferenceState:
    """What the reference job published last (``{kind}:{id}`` -> fingerprint)."""

    published: dict[str, str]


class ReferenceSpec:
    """:class:`PollSpec` of the reference job (rule 3)."""

    name = "reference"

    def __init__(
        self, source: str, client: httpx.AsyncClient, data: ReferenceData, now_ms: Callable[[], int]
    ) -> None:
        self.source, self.client, self.data, self.now_ms = source, client, data, now_ms

    def load_cursor(self, saved: str | None) -> ReferenceState | None:
        """In memory: None = nothing published since the start (the first cycle is a snapshot)."""
        return None

    def dump_cursor(self, cursor: ReferenceState | None) -> str | None:
        """Never persisted."""
        return None

    async def fetch(self, cursor: ReferenceState | None) -> PollResult[ReferenceState | None]:
        """Refresh what is due; publish every entity whose value changed (all, after a start)."""
        events = await self.data.refresh_if_stale(self.client)
        count_dead_letters(self.source, events)
        when = datetime.fromtimestamp(self.now_ms() / 1000, UTC)
        previous = {} if cursor is None else cursor.published
        published: dict[str, str] = {}
        for kind in KINDS:
            for entity in self.data.entities.get(kind, {}).values():
                published[entity.key] = fingerprint(entity)
                if previous.get(entity.key) != published[entity.key]:
                    events.append(reference_event(self.source, entity, time=when, snapshot=cursor is None))
        return PollResult(events, ReferenceState(published))

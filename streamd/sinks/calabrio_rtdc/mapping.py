"""The pure part of the ``calabrio-rtdc`` sink: canonical state -> capture record, selection, batching.

Rules: see :mod:`streamd.sinks.calabrio_rtdc` (the state table, rules 2 and 5).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from streamd.errors import NormalizationError
from streamd.events import AgentState, DeadLetter, Event, State

if TYPE_CHECKING:
    from streamd.publish.consume import ConsumedRecord
    from streamd.sinks.calabrio_rtdc.config import CalabrioRtdcSinkConfig

T = TypeVar("T")

GIS_CODES: Mapping[State, int] = {
    State.LOGGED_OUT: 1,
    State.NOT_READY: 2,
    State.AVAILABLE: 3,
    State.BUSY: 4,
    State.AFTER_CALL_WORK: 6,
}


@dataclass(frozen=True, slots=True)
class RtdcMapping:
    """How canonical states become records (built from the config)."""

    agent_map: Mapping[str, str] = field(default_factory=dict)
    after_call_work_code: int = 6
    vendor_state_codes: Mapping[str, int] = field(default_factory=lambda: {"HOLD": 10})
    acd_ids: frozenset[str] | None = None
    """The ``acdId`` of every Calabrio agent (the Agent API, full detail), when agents are mapped
    automatically (``map_by_acd_id``); None: every agent is sent with its own id (rule 9)."""

    def with_acd_ids(self, acd_ids: frozenset[str] | None) -> RtdcMapping:
        """This mapping with the Calabrio agents' ``acdId`` set (None: no automatic mapping)."""
        return replace(self, acd_ids=acd_ids)

    def unmapped(self, agent_id: str) -> str | None:
        """Why an agent cannot be sent (rule 9), or None when it can: ``agent_map`` names it, no
        automatic mapping is on, or a Calabrio agent's ``acdId`` is its id."""
        if agent_id in self.agent_map or self.acd_ids is None or agent_id in self.acd_ids:
            return None
        return (
            f"no Calabrio agent has acdId {agent_id!r} (Application Management > Users > Agents) "
            "and agent_map does not name it"
        )

    @classmethod
    def of(cls, cfg: CalabrioRtdcSinkConfig) -> RtdcMapping:
        """The mapping a config describes."""
        codes = {k.upper(): v for k, v in cfg.vendor_state_codes.items()}
        return cls(cfg.agent_map, cfg.after_call_work_code, codes)


@dataclass(frozen=True, slots=True)
class RtdcRecord:
    """One real-time data capture record (002 L4668-4684)."""

    acd_agent_id: str
    gis_state: int
    timestamp: int
    reason_code: str | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON object Calabrio receives."""
        return {
            "acdAgentId": self.acd_agent_id,
            "gisStateIdentifier": self.gis_state,
            "timestamp": self.timestamp,
            "reasonCode": self.reason_code,
        }


def gis_code(state: AgentState, mapping: RtdcMapping) -> int | None:
    """The ``gisStateIdentifier`` of a canonical state, or None when it has none (the state table)."""
    if state.vendor_state and state.state is not State.LOGGED_OUT:
        code = mapping.vendor_state_codes.get(state.vendor_state.upper())
        if code is not None:
            return code
    if state.state is State.AFTER_CALL_WORK:
        return mapping.after_call_work_code
    return GIS_CODES.get(state.state)


def to_record(state: AgentState, mapping: RtdcMapping, *, fallback_ms: int) -> RtdcRecord | None:
    """Map one canonical state; None when its state cannot be expressed (``unknown``).

    Args:
        state: the canonical agent state.
        mapping: agent ids and state codes.
        fallback_ms: the timestamp to use when the state has no ``since`` (the event time).
    """
    code = gis_code(state, mapping)
    if code is None:
        return None
    when = int(state.since.timestamp() * 1000) if state.since else fallback_ms
    reason = state.reason_code if code in (1, 2) and state.reason_code not in (None, "") else None
    return RtdcRecord(mapping.agent_map.get(state.agent_id, state.agent_id), code, when, reason)


def select_states(
    records: Iterable[ConsumedRecord], source: str, sink: str
) -> tuple[list[tuple[AgentState, int]], list[Event]]:
    """Keep the agent states of ``source`` (with their fallback time) and dead-letter bad values.

    The ``ce_source`` header filters before decoding; records without it are decoded and
    filtered on their ``source`` field. Tombstones (no value) are skipped.
    """
    wanted = f"streamd/{source}".encode()
    states: list[tuple[AgentState, int]] = []
    dead: list[Event] = []
    for rec in records:
        ce_source = rec.headers.get("ce_source")
        if (ce_source is not None and ce_source != wanted) or rec.value is None:
            continue
        try:
            state = AgentState.from_json(rec.value)
        except NormalizationError as exc:
            dl = DeadLetter.of(
                source=sink, stage="sink", error_type=exc.error_type, error=str(exc), raw=rec.value
            )
            dead.append(dl.to_event())
            continue
        if state.source == source:
            states.append((state, _header_ms(rec.headers.get("ce_time")) or rec.timestamp_ms))
    return states, dead


def batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items, in order."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _header_ms(value: bytes | None) -> int | None:
    if not value:
        return None
    try:
        return int(datetime.fromisoformat(value.decode()).timestamp() * 1000)
    except ValueError:
        return None

"""O2G payloads -> streamd events. Pure functions: no I/O, no logging, no clock but ``utcnow``.

Rules:

1. Every catalogued event yields one *vendor* event: topic ``o2g.{package}``, type
   ``o2g.{package}.{eventName}``, key ``{source}:{entity}`` (see :mod:`.models`), ``data`` = the
   raw dict (every vendor field kept, serialised by orjson as received). O2G events carry no
   emission timestamp (004 L2126, every event table), so ``time`` is when streamd read them
   (``now``: the chunk source passes one time per chunk, shared by its events).
2. Where it fits, canonical events follow the vendor event (:mod:`.mapping`):
   ``OnAgentStateChanged`` -> ``AgentState``; ``OnPilotRtiChanged``/``OnQueueRtiChanged``/
   ``OnPilotCallQueued`` -> ``QueueMetric`` per figure present. What only O2G's other reads know
   (names, reason labels, an agent's other groups and pilots, RTI agents' logins) is added to
   what this returns by :mod:`.enrich`, on the source's way to the pipeline.
3. Tolerant reading (:mod:`streamd.tolerant`): a catalogued event is published whenever its key
   field is usable, however else it deviates from its model; the deviating paths ride on the
   event (``streamd_deviations``) and unambiguous coercions are applied to ``data``. A canonical
   event follows whenever its own fields are usable. Only an event without a usable key field
   raises ``NormalizationError(error_type="missing_key")``, and a payload without ``eventName``
   ``NormalizationError(error_type="missing_event_name")``: the caller dead-letters the raw bytes.
4. An unknown ``eventName`` never raises: it becomes an ``o2g.{package}.UnknownO2GEvent`` (package
   guessed from the name, else ``unknown``) carrying the raw payload, counted as
   ``errors_total{stage="processing", error_type="unknown_event"}``.
5. ``OnChannelInformation`` (keepalive / channel established) is liveness, not an event: ``[]``.
6. Snapshots: :func:`agent_state_snapshot` and :func:`pilots_snapshot` turn the REST
   current-state bodies into the same events with ``snapshot=True``; :func:`snapshot_events`
   dispatches on a kind name. ``OnTelephonyState`` is only ever the answer to a telephony
   snapshot (004 L4555-4558): it is published with ``snapshot=True`` however it arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from streamd.errors import NormalizationError
from streamd.events import Event, new_event, utcnow
from streamd.telemetry import count_deviation, count_error
from streamd.tolerant import Reader

from . import mapping
from .models import EVENTS, KeyFunction, guess_package
from .models_callcenter import Pilot
from .protocol import KEEPALIVE_EVENT

__all__ = [
    "SNAPSHOT_AGENT_STATE",
    "SNAPSHOT_PILOTS",
    "agent_state_snapshot",
    "normalize",
    "pilots_snapshot",
    "snapshot_events",
]

SNAPSHOT_AGENT_STATE: Final = "agent_state"
SNAPSHOT_PILOTS: Final = "pilots"
SNAPSHOT_ANSWERS: Final = frozenset({"OnTelephonyState"})
"""Events that only ever answer a snapshot request (rule 6)."""

Canonical = Callable[[str, dict[str, Any], datetime, bool], list[Event]]


def normalize(
    source: str, obj: dict[str, Any], *, snapshot: bool = False, now: datetime | None = None
) -> list[Event]:
    """Turn one decoded O2G event into streamd events (vendor event first, then canonical ones).

    Args:
        source: the configured source name (key prefix, ``ce_source``).
        obj: one decoded JSON object from the chunk channel or a webhook body.
        snapshot: mark every event as part of a snapshot (``streamd_snapshot`` header).
        now: when the event was read (default: now); the events of one chunk share it.

    Returns:
        The events to publish; ``[]`` for ``OnChannelInformation``.

    Raises:
        NormalizationError: ``missing_event_name`` or ``missing_key`` (dead-letter it).
    """
    name = obj.get("eventName")
    route = _ROUTES.get(name) if isinstance(name, str) else None
    if route is None:
        if not isinstance(name, str) or not name:
            raise NormalizationError("O2G payload has no eventName", error_type="missing_event_name")
        if name == KEEPALIVE_EVENT:
            return []
        return [_unknown(source, name, obj, snapshot)]
    try:
        key = route.key(obj)
    except KeyError as exc:
        raise NormalizationError(
            f"{name}: key field {exc.args[0]} is missing or not a string or number", error_type="missing_key"
        ) from None
    data, deviations = route.check(obj)
    if name in SNAPSHOT_ANSWERS:
        snapshot = True
    when = now or utcnow()
    vendor = new_event(
        topic=route.topic,
        type=route.type,
        source=source,
        key=f"{source}:{key}",
        data=data,
        time=when,
        snapshot=snapshot,
        deviations=deviations,
    )
    if deviations:
        count_deviation(source, route.type)
    if route.canonical is None:
        return [vendor]
    if not deviations:
        return [vendor, *route.canonical(source, data, when, snapshot)]
    try:
        return [vendor, *route.canonical(source, data, when, snapshot)]
    except (KeyError, TypeError, AttributeError, ValueError):
        return [vendor]  # the canonical fields deviated too: the vendor event says where


def _unknown(source: str, name: str, obj: dict[str, Any], snapshot: bool) -> Event:
    count_error(source, "processing", "unknown_event")
    package = guess_package(name)
    entity = next((obj[k] for k in _UNKNOWN_KEYS if isinstance(obj.get(k), str | int)), None)
    return Event(
        topic=f"o2g.{package}",
        type=f"o2g.{package}.UnknownO2GEvent",
        source=source,
        key=f"{source}:{entity}" if entity is not None else f"{source}:{package}",
        data=obj,
        snapshot=snapshot,
    )


_UNKNOWN_KEYS: Final = ("loginName", "pilot", "number", "nodeId", "rsiPoint", "supervisor", "callRef")


# -- canonical mappings --------------------------------------------------------------------------


def _agent_state(source: str, obj: dict[str, Any], now: datetime, snapshot: bool) -> list[Event]:
    state = mapping.agent_state(source, obj["loginName"], obj["state"], since=now)
    return [state.to_event(snapshot=snapshot)]


def _rti_metrics(table: dict[str, tuple[str, str | None]]) -> Canonical:
    def convert(source: str, obj: dict[str, Any], now: datetime, snapshot: bool) -> list[Event]:
        metrics = mapping.queue_metrics(source, obj["number"], obj, table, queue_name=obj["name"], as_of=now)
        return [m.to_event(snapshot=snapshot) for m in metrics]

    return convert


def _pilot_queued(source: str, obj: dict[str, Any], now: datetime, snapshot: bool) -> list[Event]:
    table = {"numberOfQueued": mapping.PILOT_METRICS["nbOfWaitingCalls"]}
    metrics = mapping.queue_metrics(source, obj["pilot"], obj, table, as_of=now)
    return [m.to_event(snapshot=snapshot) for m in metrics]


_CANONICAL: Final[dict[str, Canonical]] = {
    "OnAgentStateChanged": _agent_state,
    "OnPilotRtiChanged": _rti_metrics(mapping.PILOT_METRICS),
    "OnQueueRtiChanged": _rti_metrics(mapping.QUEUE_METRICS),
    "OnPGAgentRtiChanged": _rti_metrics(mapping.PG_AGENT_METRICS),
    "OnPilotCallQueued": _pilot_queued,
}


@dataclass(frozen=True, slots=True)
class _Route:
    """Everything :func:`normalize` needs for one catalogued ``eventName``, computed once."""

    check: Callable[[dict[str, Any]], tuple[dict[str, Any], tuple[str, ...]]]
    """The tolerant reader's check: the value to publish and its deviations."""
    topic: str
    type: str
    key: KeyFunction
    canonical: Canonical | None


_ROUTES: Final[dict[str, _Route]] = {
    name: _Route(
        check=Reader(spec.model).check,
        topic=f"o2g.{spec.package}",
        type=f"o2g.{spec.package}.{name}",
        key=spec.key,
        canonical=_CANONICAL.get(name),
    )
    for name, spec in EVENTS.items()
}


# -- snapshots ------------------------------------------------------------------------------------

_PILOT: Final = Reader(Pilot)


def agent_state_snapshot(source: str, login_name: str, body: dict[str, Any]) -> list[Event]:
    """Events for one agent's ``GET /acd/agent/state?loginName=...`` answer (an ``AgentState``).

    Published exactly like a live ``OnAgentStateChanged`` (same type, topic and key) plus the
    canonical ``AgentState``, all with ``snapshot=True``.

    A body that deviates from ``AgentState`` is published all the same, its paths listed under
    ``$.state``.
    """
    event = {"eventName": "OnAgentStateChanged", "loginName": login_name, "state": body}
    return normalize(source, event, snapshot=True)


def pilots_snapshot(source: str, node_id: str, body: dict[str, Any]) -> list[Event]:
    """Events for ``GET /acd/{nodeId}/pilots`` (``Pilots``) or ``GET /acd/{nodeId}/pilots/{n}`` (``Pilot``).

    Each pilot becomes an ``o2g.pilot.PilotSnapshot`` (data = the pilot plus ``nodeId``, key
    ``{source}:{pilot number}``, the key of the live pilot events) and its canonical
    ``QueueMetric`` figures, all with ``snapshot=True``. Pilots without a usable number are
    skipped; a pilot that deviates from ``Pilot`` is published with its deviations.
    """
    pilots = body.get("pilotList") if "pilotList" in body or "number" not in body else [body]
    now = utcnow()
    out: list[Event] = []
    for raw in pilots if isinstance(pilots, list) else []:
        if not isinstance(raw, dict):
            continue
        pilot, deviations = _PILOT.check(raw)
        number = pilot.get("number")
        if not isinstance(number, str | int) or isinstance(number, bool) or number == "":
            continue
        if deviations:
            count_deviation(source, "o2g.pilot.PilotSnapshot")
        out.append(
            Event(
                topic="o2g.pilot",
                type="o2g.pilot.PilotSnapshot",
                source=source,
                key=f"{source}:{number}",
                data={**pilot, "nodeId": str(node_id)},
                time=now,
                snapshot=True,
                deviations=deviations,
            )
        )
        metrics = mapping.queue_metrics(
            source,
            str(number),
            pilot,
            mapping.PILOT_SNAPSHOT_METRICS,
            queue_name=pilot.get("name"),
            as_of=now,
        )
        out.extend(m.to_event(snapshot=True) for m in metrics)
    return out


def snapshot_events(source: str, kind: str, payload: dict[str, Any]) -> list[Event]:
    """Dispatch a REST current-state answer to its snapshot helper.

    Args:
        source: the source name.
        kind: ``"agent_state"`` with payload ``{"loginName": ..., "state": <AgentState body>}``,
            or ``"pilots"`` with payload ``{"nodeId": ..., "pilots": <Pilots or Pilot body>}``.
        payload: see ``kind``.

    Raises:
        ValueError: unknown ``kind`` (a programming error).
        NormalizationError: an agent state without a usable ``loginName`` (``missing_key``).
    """
    if kind == SNAPSHOT_AGENT_STATE:
        return agent_state_snapshot(source, str(payload["loginName"]), payload["state"])
    if kind == SNAPSHOT_PILOTS:
        return pilots_snapshot(source, str(payload["nodeId"]), payload["pilots"])
    raise ValueError(f"unknown O2G snapshot kind {kind!r}")

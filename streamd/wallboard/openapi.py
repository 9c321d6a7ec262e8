"""The OpenAPI 3.1 document of the feed API (``/api/v1/openapi.json``), generated from models.

Rules:

1. The bodies are described by pydantic models: :class:`Snapshot`, :class:`Delta` and
   :class:`Problem` here, the canonical :class:`~streamd.events.AgentState` and
   :class:`~streamd.events.QueueMetric` themselves (the dataclasses the hub holds and serves),
   the hub's :class:`~streamd.wallboard.hub.SourceStatus` and
   :class:`~streamd.wallboard.hub.FeedStatus`, and the config's
   :class:`~streamd.wallboard.config.DisplaySettings` (what ``/api/v1/wallboard`` serves).
   Their JSON Schemas (serialization mode) become ``components.schemas``; nothing is hand-kept.
2. The generated document is committed as ``streamd/wallboard/openapi.json`` (API review, client
   generation); ``python -m streamd.schemas --write`` rewrites it and a test fails while it differs.
3. With ``http.auth_token`` set, the served document also declares the bearer and query schemes.
"""

from __future__ import annotations

import copy
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter

from streamd.events import AgentState, QueueMetric
from streamd.wallboard.config import DisplaySettings
from streamd.wallboard.hub import FeedStatus, SourceStatus

COMMITTED = Path(__file__).parent / "openapi.json"
"""Where the generated document is committed (rule 2)."""

_REF = "#/components/schemas/{model}"


class Snapshot(BaseModel):
    """Every agent and queue metric a filter selects, as of one event id."""

    id: str = Field(description="Event id (`{epoch}.{seq}`) this snapshot is current as of.")
    seq: int = Field(description="Sequence number of the last change included.")
    now: datetime = Field(description="Server time.")
    sources: list[SourceStatus] = Field(
        description="Every source the board has heard of (or this daemon runs): state and freshness."
    )
    feed: FeedStatus | None = Field(
        description="The wallboard's Kafka feed (null before its first report): not running = nothing moves."
    )
    agents: list[AgentState]
    metrics: list[QueueMetric]


class Delta(BaseModel):
    """One change of the live state (clients ignore kinds they do not know)."""

    seq: int = Field(description="Sequence number of this change (the event id is `{epoch}.{seq}`).")
    kind: Literal["agent", "metric", "source", "feed"]
    key: str = Field(
        description="`{source}:{agent_id}` (agent), `{source}:{queue_id}:{metric}` (metric), "
        "the source name (source) or `feed`."
    )
    value: AgentState | QueueMetric | SourceStatus | FeedStatus | None = Field(
        description="The new value; null when the entry is gone (or left the client's filter)."
    )


class Problem(BaseModel):
    """Why a request was refused."""

    error: str


FILTERS = (
    ("source", "Only these source names"),
    ("queue", "Only agents in / metrics of these queue ids"),
    ("state", "Only agents in these canonical states (metrics are not filtered by state)"),
)


def component_schemas() -> dict[str, Any]:
    """``components.schemas``: the models' JSON Schemas, referring to each other (rule 1)."""
    models: list[type[Any]] = [Snapshot, Delta, Problem, DisplaySettings]
    adapters = [(m.__name__, "serialization", TypeAdapter(m)) for m in models]
    _, top = TypeAdapter.json_schemas(adapters, ref_template=_REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = _without_examples(dict(sorted(top.get("$defs", {}).items())))
    return schemas


def _without_examples(node: Any) -> Any:
    """Drop ``examples``: the config's are of its input (``"5s"``); the API serves seconds."""
    if isinstance(node, list):
        return [_without_examples(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _without_examples(v) for k, v in node.items() if k != "examples"}
    if "properties" in node:  # property names are data: keep a field named "examples"
        out["properties"] = {k: _without_examples(v) for k, v in node["properties"].items()}
    return out


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    ref = {"$ref": _REF.format(model=model.__name__)}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"{what} (repeat the parameter or separate values by commas).",
            "schema": {"type": "array", "items": {"type": "string"}},
            "style": "form",
            "explode": True,
        }
        for name, what in FILTERS
    ]


def generate() -> dict[str, Any]:
    """The document, without security (what is committed, rule 2)."""
    unauthorized = _json(Problem, "Missing or wrong bearer token.")
    resume = [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "Resume after this event id.",
            "schema": {"type": "string"},
        },
        {
            "name": "last_event_id",
            "in": "query",
            "required": False,
            "description": "Same as the Last-Event-ID header (for clients that reconnect by themselves).",
            "schema": {"type": "string"},
        },
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "streamd live state",
            "version": "1",
            "description": "Current canonical agent and queue state from every source, and its live feed.",
        },
        "paths": {
            "/api/v1/state": {
                "get": {
                    "operationId": "getState",
                    "summary": "Snapshot of the current agent and queue state",
                    "parameters": _parameters(),
                    "responses": {"200": _json(Snapshot, "The snapshot."), "401": unauthorized},
                }
            },
            "/api/v1/wallboard": {
                "get": {
                    "operationId": "getWallboardSettings",
                    "summary": "The wallboard page's display settings",
                    "description": (
                        "From the config's `wallboard` section: thresholds (per metric, per queue, "
                        "service-level target, time in state), stale markers, paging and saved views."
                    ),
                    "responses": {
                        "200": _json(DisplaySettings, "The settings, durations in seconds."),
                        "401": unauthorized,
                    },
                }
            },
            "/api/v1/stream": {
                "get": {
                    "operationId": "streamState",
                    "summary": "Server-Sent Events: a snapshot, then deltas",
                    "description": (
                        "Events: `snapshot` (data: Snapshot) first, or `resumed` after replayed deltas when "
                        "`Last-Event-ID` is still in the replay buffer; then `delta` (data: Delta) per change "
                        "(of an agent, a queue metric, a source's state or freshness, or the feed), "
                        "and `ping` every heartbeat. Every event id is `{epoch}.{seq}`. A client that falls "
                        "behind is disconnected and should reconnect with its last id."
                    ),
                    "parameters": [*_parameters(), *resume],
                    "responses": {
                        "200": {
                            "description": "An endless event stream.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "401": unauthorized,
                    },
                }
            },
        },
        "components": {"schemas": component_schemas()},
    }


@cache
def _generated() -> dict[str, Any]:
    return generate()


def openapi_document(*, auth: bool = False) -> dict[str, Any]:
    """The document the API serves (rule 3 adds the security schemes when a token is required)."""
    doc = copy.deepcopy(_generated())
    if auth:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "query": {"type": "apiKey", "in": "query", "name": "access_token"},
        }
        doc["security"] = [{"bearer": []}, {"query": []}]
    return doc

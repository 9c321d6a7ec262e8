"""JSON Schemas: of the configuration (``streamd schema``) and of every event type
(``streamd schema --events``), generated from the same models the code uses.

A vendor event's schema is ``anyOf`` its documented shape (the vendor's document, as the models
type it) and :data:`DEVIATING`: tolerant reading (:mod:`streamd.tolerant`) publishes a vendor
record that deviates from its document as received, and says where in its ``streamd_deviations``
header. Canonical events and dead letters are streamd's own and always match their schema."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import TypeAdapter

from streamd.events import AgentState, DeadLetter, QueueMetric

# Each vendor's models module exposes EVENT_MODELS: ce_type -> model (pydantic or dataclass).
VENDOR_MODEL_MODULES = (
    "streamd.sources.o2g.models",
    "streamd.sources.xima.models",
    "streamd.sources.alvaria.models",
    "streamd.sources.calabrio.models",
)

CANONICAL: dict[str, type[Any]] = {
    "streamd.agent.State": AgentState,
    "streamd.queue.Metric": QueueMetric,
    "streamd.deadletter": DeadLetter,
}


DEVIATING: dict[str, Any] = {
    "title": "DeviatingRecord",
    "type": "object",
    "description": (
        "A vendor record whose `streamd_deviations` header (a JSON array of JSON paths) is present: "
        "it matches the documented schema of its ce_type except at the listed paths, where the "
        "value is kept exactly as the vendor sent it (a missing required field, a different type, "
        "null, an unknown field or a value outside a documented enumeration). Its routing fields "
        "(the ones its Kafka key and ce_type are made of) are always usable."
    ),
}


def event_models() -> dict[str, type[Any]]:
    """Every event type streamd publishes, ``ce_type -> model``."""
    models = dict(CANONICAL)
    for name in VENDOR_MODEL_MODULES:
        models.update(importlib.import_module(name).EVENT_MODELS)
    return dict(sorted(models.items()))


def events_schema() -> dict[str, Any]:
    """One JSON Schema document: ``events`` maps each ``ce_type`` to the schema of its Kafka
    value; all share one ``$defs`` so every ``$ref`` resolves from the document root."""
    models = event_models()
    adapters = [(ce_type, "serialization", TypeAdapter(model)) for ce_type, model in models.items()]
    keyed, top = TypeAdapter.json_schemas(adapters, ref_template="#/$defs/{model}")  # type: ignore[arg-type]
    events = {
        ce_type: (
            keyed[(ce_type, "serialization")]
            if ce_type in CANONICAL
            else {"anyOf": [keyed[(ce_type, "serialization")], {"$ref": "#/$defs/DeviatingRecord"}]}
        )
        for ce_type in models
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "streamd events: the Kafka value of each ce_type",
        "events": events,
        "$defs": {**top.get("$defs", {}), "DeviatingRecord": DEVIATING},
    }


def event_schema(document: dict[str, Any], ce_type: str) -> dict[str, Any]:
    """A standalone schema for one ``ce_type`` (its schema plus the shared ``$defs``)."""
    return {**document["events"][ce_type], "$defs": document["$defs"]}


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration file."""
    from streamd.config import Config

    return Config.model_json_schema()

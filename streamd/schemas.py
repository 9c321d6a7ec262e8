"""JSON Schemas: of the configuration (``streamd schema``) and of every event type
(``streamd schema --events``), generated from the same models the code uses."""

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


def event_models() -> dict[str, type[Any]]:
    """Every event type streamd publishes, ``ce_type -> model``."""
    models = dict(CANONICAL)
    for name in VENDOR_MODEL_MODULES:
        models.update(importlib.import_module(name).EVENT_MODELS)
    return dict(sorted(models.items()))


def events_schema() -> dict[str, Any]:
    """One JSON Schema document with a definition per event type."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "streamd events (Kafka values, by ce_type header)",
        "oneOf": [{"$ref": f"#/$defs/{ce_type}"} for ce_type in event_models()],
        "$defs": {
            ce_type: TypeAdapter(model).json_schema(mode="serialization")
            for ce_type, model in event_models().items()
        },
    }


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the configuration file."""
    from streamd.config import Config

    return Config.model_json_schema()

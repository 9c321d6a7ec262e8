"""Every Xima event's Kafka value validates against the schema ``streamd schema --events`` prints."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import pytest

from streamd.publish.encoding import encode
from streamd.schemas import event_schema, events_schema
from streamd.sources.xima.models import EVENT_MODELS, MetricDescriptor
from streamd.sources.xima.normalize import RealtimeState, parse_entry

from .test_xima_historic import END, SEED_REPORT, START
from .test_xima_normalize import (
    SEED_AVERAGE,
    SEED_BOOLEAN,
    SEED_COUNT,
    SEED_DURATION,
    SEED_EMPTY,
    SEED_STRING,
)


@functools.cache
def schema_document() -> dict[str, Any]:
    return events_schema()


def xima_events() -> list[object]:
    from streamd.sources.xima.historic import report_events

    state = RealtimeState("cr1")
    state.descriptors = {"K08ZIKVN": MetricDescriptor(metric_id="K08ZIKVN", category_type="AGENT")}
    seeds = [SEED_COUNT, SEED_BOOLEAN, SEED_STRING, SEED_DURATION, SEED_EMPTY, SEED_AVERAGE]
    events: list[object] = []
    for raw in seeds:
        events += state.apply([parse_entry(raw)], now_ms=1_569_946_676_496)
    return events + report_events("cr1", "LT39K5C5", START, END, SEED_REPORT)


@pytest.mark.parametrize("event", xima_events(), ids=lambda e: f"{e.type}:{e.key}")  # type: ignore[attr-defined]
def test_value_matches_the_published_schema(event) -> None:  # type: ignore[no-untyped-def]
    assert event.type in EVENT_MODELS
    record = encode(event, "streamd.")
    jsonschema.Draft202012Validator(event_schema(schema_document(), event.type)).validate(
        json.loads(record.value)
    )

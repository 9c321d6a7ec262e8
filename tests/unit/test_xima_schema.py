"""Every Xima event's Kafka value validates against the schema ``streamd schema --events`` prints."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import pytest

from streamd.publish.encoding import encode
from streamd.schemas import event_models, event_schema, events_schema
from streamd.sources.xima.models import EVENT_MODELS, MetricDescriptor
from streamd.sources.xima.normalize import parse_entry
from streamd.sources.xima.state import RealtimeState

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
    from streamd.sources.xima.report import report_events

    state = RealtimeState("cr1")
    state.descriptors = {"K08ZIKVN": MetricDescriptor(metric_id="K08ZIKVN", category_type="AGENT")}
    seeds = [SEED_COUNT, SEED_BOOLEAN, SEED_STRING, SEED_DURATION, SEED_EMPTY, SEED_AVERAGE]
    events: list[object] = []
    for raw in seeds:
        events += state.apply([parse_entry(raw, now_ms=1_569_946_676_496)], now_ms=1_569_946_676_496)
    events += report_events("cr1", "LT39K5C5", START, END, SEED_REPORT)
    return events + deviating_events()


def deviating_events() -> list[object]:
    """Deviating inputs are published too: their values must match the schema just the same."""
    from streamd.sources.xima.report import report_events

    state = RealtimeState("cr1")
    state.descriptors = {"KQUEUE": MetricDescriptor(metric_id="KQUEUE", category_type="GROUP")}
    key = {"metricId": "KQUEUE", "categoryValue": 12, "site": "x"}
    entries = [
        {"key": key, "value": {"type": "PERCENT", "lastUpdateTime": "now", "value": 3}, "seq": 1},
        {"key": key, "value": {"type": "COUNT", "lastUpdateTime": 17, "count": "4", "unit": "calls"}},
        {"key": key, "value": "not an object"},
        {"key": key, "value": {"type": "AVERAGE_DURATION", "count": 0}},
    ]
    events: list[object] = []
    for raw in entries:
        events += state.apply([parse_entry(raw, now_ms=1_569_946_676_496)], now_ms=1_569_946_676_496)
    rows = [{"values": 3, "n": 1}, {"values": {"1": "4", "9": {"value": {"x": 1}}}}, {"x": None, "y": 0}]
    report = {**SEED_REPORT, "reportId": {"id": 48}, "title": 7, "columns": [3], "rows": rows, "more": []}
    return events + [e for e in report_events("cr1", "K", START, END, report) if e.topic != "deadletter"]


@pytest.mark.parametrize("event", xima_events(), ids=lambda e: f"{e.type}:{e.key}:{len(e.deviations)}")
def test_value_matches_the_published_schema(event) -> None:  # type: ignore[no-untyped-def]
    assert event.type in (EVENT_MODELS if event.topic.startswith("xima.") else event_models())
    record = encode(event, "streamd.")
    jsonschema.Draft202012Validator(event_schema(schema_document(), event.type)).validate(
        json.loads(record.value)
    )

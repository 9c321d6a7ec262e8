"""The Xima canonical queue-metric table (streamd.sources.xima.canonical), values from seed 000."""

from __future__ import annotations

from datetime import UTC, datetime

from streamd.events import CANONICAL_QUEUE_METRICS, QueueMetric
from streamd.sources.xima.canonical import CanonicalRules, canonical_event
from streamd.sources.xima.models import MetricKey, MetricValue, RealtimeMetricValue
from streamd.sources.xima.normalize import read_value

WHEN = datetime(2019, 10, 1, 16, 17, 56, tzinfo=UTC)
COUNT = {"type": "COUNT", "lastUpdateTime": "2019-10-01T10:17:56.496-06:00", "count": 3}
DURATION = {
    "type": "DURATION",
    "lastUpdateTime": "2019-10-01T10:17:56.496-06:00",
    "finishedDuration": 0,
    "numCountingUp": 0,
    "numCountingDown": 0,
}


def metric(
    metric_id: str,
    name: str | None,
    category: str,
    category_value: str | None,
    raw: dict[str, object],
    *,
    computed_ms: float | None = None,
    rules: CanonicalRules | None = None,
) -> QueueMetric | None:
    key = MetricKey(metric_id=metric_id, category_value=category_value)
    value: MetricValue = read_value(raw, now_ms=0)[0]
    data = RealtimeMetricValue(
        source="cr1",
        metric_id=metric_id,
        category_value=category_value,
        value=value,
        metric_name=name,
        category_type=category,
        computed_ms=computed_ms,
    )
    out = canonical_event("cr1", key, value, data, WHEN, rules or CanonicalRules())
    assert out is None or isinstance(out, QueueMetric)
    return out


def test_a_group_count_named_calls_in_queue_is_waiting_in_contacts() -> None:
    m = metric("K0QUEUED", "Calls in Queue", "GROUP", "Sales", COUNT)
    assert m is not None
    assert (m.queue_id, m.metric, m.value, m.unit) == ("Sales", "waiting", 3, "contacts")
    assert m.to_event().key == "cr1:Sales:waiting"


def test_a_wait_duration_is_converted_to_seconds() -> None:
    m = metric("K0AVGWT1", "Average Wait", "GROUP", "Sales", DURATION, computed_ms=12_500)
    assert m is not None
    assert (m.metric, m.value, m.unit) == ("average_wait_seconds", 12.5, "seconds")


def test_a_metric_without_canonical_name_keeps_its_id_not_its_display_name() -> None:
    m = metric("K0TRANSF", "Transfers Today", "GROUP", "Sales", COUNT)
    assert m is not None
    assert (m.queue_id, m.metric, m.value, m.unit) == ("Sales", "K0TRANSF", 3, "count")
    assert m.to_event().key == "cr1:Sales:K0TRANSF"


def test_a_canonical_name_with_an_unfitting_type_keeps_the_id() -> None:
    # "Calls in Queue" as a duration is no count of contacts: not published as ``waiting``
    m = metric("K0ODD", "Calls in Queue", "GROUP", "Sales", DURATION, computed_ms=1000)
    assert m is not None
    assert (m.metric, m.unit) == ("K0ODD", "ms")


def test_the_config_map_wins_over_the_display_name() -> None:
    rules = CanonicalRules(queue_metric_map={"K0ABND": "abandoned"})
    m = metric("K0ABND", "Lost", "GROUP", "Sales", COUNT, rules=rules)
    assert m is not None
    assert (m.metric, m.unit) == ("abandoned", CANONICAL_QUEUE_METRICS["abandoned"])


def test_a_system_wide_metric_goes_to_the_system_queue() -> None:
    m = metric("K0LONGWT", "Longest Wait", "NONE", None, DURATION, computed_ms=61_000)
    assert m is not None
    assert (m.queue_id, m.metric, m.value, m.unit) == ("all", "longest_wait_seconds", 61.0, "seconds")
    other = metric(
        "K0LONGWT", "Longest Wait", "NONE", None, DURATION, rules=CanonicalRules(system_queue="floor")
    )
    assert other is not None
    assert other.queue_id == "floor"


def test_an_empty_longest_wait_is_published_as_none() -> None:
    empty = {"lastUpdateTime": "2019-10-01T10:17:56.496-06:00"}
    m = metric("K0LONGWT", "Longest Wait", "NONE", None, empty)
    assert m is not None
    assert (m.metric, m.value) == ("longest_wait_seconds", None)


def test_call_direction_metrics_go_to_the_system_queue_per_category_value() -> None:
    m = metric("K0DIRCNT", "Calls by Direction", "CALL_DIRECTION", "Inbound", COUNT)
    assert m is not None
    assert (m.queue_id, m.metric, m.value) == ("all", "K0DIRCNT:Inbound", 3)


def test_without_a_system_queue_system_metrics_have_no_canonical_event() -> None:
    rules = CanonicalRules(system_queue=None)
    assert metric("K0LONGWT", "Longest Wait", "NONE", None, DURATION, rules=rules) is None
    assert metric("K0DIRCNT", "Calls by Direction", "CALL_DIRECTION", "Inbound", COUNT, rules=rules) is None

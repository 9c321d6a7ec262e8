"""Pure change detection (streamd.sources.xima.state): newest wins, pruning of values no longer listed."""

from __future__ import annotations

from typing import Any

from streamd.sources.xima.models import MetricKey
from streamd.sources.xima.normalize import parse_entry
from streamd.sources.xima.state import RealtimeState

NOW = 1_700_000_000_000


def entry(metric: str, category: str | None, count: int, at: str) -> Any:
    key: dict[str, Any] = {"metricId": metric} | ({"categoryValue": category} if category else {})
    value = {"type": "COUNT", "count": count, "lastUpdateTime": at}
    return parse_entry({"key": key, "value": value}, now_ms=NOW)


def counts(events: list[Any]) -> list[tuple[int, bool]]:
    return [(e.data.value.count, e.snapshot) for e in events if e.topic == "xima.realtime"]


NEW = "2026-01-01T10:00:05.000-06:00"
OLD = "2026-01-01T10:00:01.000-06:00"


def test_newest_wins_an_older_value_is_not_taken_when_monotonic() -> None:
    state = RealtimeState("cr1")
    state.apply([entry("Q", "Sales", 9, NEW)], now_ms=NOW, monotonic=True)
    assert state.apply([entry("Q", "Sales", 0, OLD)], now_ms=NOW, monotonic=True) == []
    assert state.entries[MetricKey(metric_id="Q", category_value="Sales")].value.count == 9  # type: ignore[union-attr]


def test_a_monotonic_snapshot_republishes_the_newer_value_held() -> None:
    state = RealtimeState("cr1")
    state.apply([entry("Q", "Sales", 9, NEW)], now_ms=NOW, monotonic=True)
    events = state.apply([entry("Q", "Sales", 0, OLD)], now_ms=NOW, snapshot=True, monotonic=True)
    assert counts(events) == [(9, True)]


def test_without_monotonic_the_answer_is_taken_as_it_is() -> None:
    state = RealtimeState("cr1")
    state.apply([entry("Q", "Sales", 9, NEW)], now_ms=NOW)
    assert counts(state.apply([entry("Q", "Sales", 0, OLD)], now_ms=NOW)) == [(0, False)]


def test_prune_drops_the_values_an_answer_no_longer_lists_for_the_metrics_it_was_asked_for() -> None:
    state = RealtimeState("cr1")
    batch = [entry("D", d, 1, NEW) for d in ("Inbound", "Outbound", "Internal")] + [
        entry("Q", "Sales", 1, NEW)
    ]
    state.apply(batch, now_ms=NOW)
    listed = [MetricKey(metric_id="D", category_value=d) for d in ("Inbound", "Outbound")]
    gone = state.prune(["D"], listed)
    assert gone == [MetricKey(metric_id="D", category_value="Internal")]
    assert {(k.metric_id, k.category_value) for k in state.entries} == {
        ("D", "Inbound"),
        ("D", "Outbound"),
        ("Q", "Sales"),  # not asked for in that answer: kept
    }
    assert [e.data.category_value for e in state.refresh(now_ms=NOW)] == ["Inbound", "Outbound", "Sales"]


def test_a_value_still_initializing_is_listed_and_not_pruned() -> None:
    state = RealtimeState("cr1")
    state.apply([entry("D", "Inbound", 1, NEW)], now_ms=NOW)
    assert state.prune(["D"], [MetricKey(metric_id="D", category_value="Inbound")]) == []

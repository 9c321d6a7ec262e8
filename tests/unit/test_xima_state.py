"""Pure change detection (streamd.sources.xima.state): newest wins, pruning of values no longer listed,
agents' queues from agent-group metrics."""

from __future__ import annotations

from typing import Any

from streamd.events import AgentState
from streamd.sources.xima.bodies import parse_metric_list
from streamd.sources.xima.canonical import CanonicalRules
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
    gone, moved = state.prune(["D"], listed, now_ms=NOW)
    assert moved == []
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
    assert state.prune(["D"], [MetricKey(metric_id="D", category_value="Inbound")], now_ms=NOW) == ([], [])


# -- agents' queues from agent-group metrics (issue 20 item 2), with the seed's example shapes ---


SEED_METRIC_LIST = [  # 000 L706-727: two AGENT metrics, each with its Category Selection
    {
        "metricId": "101",
        "metricName": "metricA",
        "categoryType": "AGENT",
        "categorySelection": ["Alice", "Bob", "Carol"],
    },
    {
        "metricId": "102",
        "metricName": "metricB",
        "categoryType": "AGENT",
        "categorySelection": ["Dave", "Eve", "Frank"],
    },
    {"metricId": "K13CJXHV", "metricName": "Agent State", "categoryType": "AGENT", "categorySelection": []},
]
GROUPS = CanonicalRules(
    agent_state_metrics=frozenset({"K13CJXHV"}), agent_group_metrics={"101": "Sales", "102": "Support"}
)


def state_entry(agent: str, state: str, at: str = NEW) -> Any:
    raw = {
        "key": {"metricId": "K13CJXHV", "categoryValue": agent},
        "value": {"lastUpdateTime": at, "value": state, "type": "STRING"},
    }
    return parse_entry(raw, now_ms=NOW)


def agent_states(events: list[Any]) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.data.agent_id, e.data.queue_ids) for e in events if isinstance(e.data, AgentState)]


def test_agents_get_the_queues_of_the_agent_group_metrics_listing_them() -> None:
    state = RealtimeState("cr1", rules=GROUPS)
    assert state.set_descriptors(parse_metric_list(SEED_METRIC_LIST), now_ms=NOW) == []
    events = state.apply(
        [state_entry("Alice", "Talking"), state_entry("Eve", "Available"), state_entry("Zed", "Available")],
        now_ms=NOW,
    )
    assert agent_states(events) == [("Alice", ("Sales",)), ("Eve", ("Support",)), ("Zed", ())]


def test_a_value_of_an_agent_group_metric_counts_as_membership_in_the_same_batch() -> None:
    state = RealtimeState("cr1", rules=GROUPS)
    state.set_descriptors(parse_metric_list(SEED_METRIC_LIST), now_ms=NOW)
    group_value = {
        "key": {"metricId": "102", "categoryValue": "John Doe(481)"},
        "value": {"lastUpdateTime": NEW, "value": False, "type": "BOOLEAN"},
    }
    sales_value = {
        "key": {"metricId": "101", "categoryValue": "John Doe (481)"},
        "value": {"lastUpdateTime": NEW, "count": 2, "type": "COUNT"},
    }
    batch = [
        state_entry("John Doe (481)", "Talking"),
        parse_entry(group_value, now_ms=NOW),
        parse_entry(sales_value, now_ms=NOW),
    ]
    assert agent_states(state.apply(batch, now_ms=NOW)) == [
        ("481", ("Sales", "Support"))
    ]  # sorted, display folded


def test_an_agent_moved_to_another_queue_is_published_again_with_it() -> None:
    state = RealtimeState("cr1", rules=GROUPS)
    state.set_descriptors(parse_metric_list(SEED_METRIC_LIST), now_ms=NOW)
    state.apply([state_entry("Alice", "Talking"), state_entry("Dave", "Available")], now_ms=NOW)
    moved = [
        dict(SEED_METRIC_LIST[0], categorySelection=["Bob"]),
        dict(SEED_METRIC_LIST[1], categorySelection=["Dave", "Alice"]),
        SEED_METRIC_LIST[2],
    ]
    events = state.set_descriptors(parse_metric_list(moved), now_ms=NOW)
    assert agent_states(events) == [("Alice", ("Support",))]  # Dave did not move: nothing for him
    assert all(e.topic == "agent-state" for e in events)  # the vendor value is not repeated
    assert agent_states(state.refresh(now_ms=NOW)) == [("Alice", ("Support",)), ("Dave", ("Support",))]


def test_a_group_value_no_longer_listed_takes_the_agent_out_of_the_queue() -> None:
    state = RealtimeState("cr1", rules=GROUPS)
    unlisted = [{**m, "categorySelection": []} for m in SEED_METRIC_LIST]  # membership from values only
    state.set_descriptors(parse_metric_list(unlisted), now_ms=NOW)
    member = {
        "key": {"metricId": "101", "categoryValue": "Bob"},
        "value": {"lastUpdateTime": NEW, "count": 1, "type": "COUNT"},
    }
    state.apply([parse_entry(member, now_ms=NOW), state_entry("Bob", "Talking")], now_ms=NOW)
    assert state.queues() == {"bob": ("Sales",)}
    gone, moved = state.prune(["101"], [], now_ms=NOW)
    assert [k.category_value for k in gone] == ["Bob"]
    assert agent_states(moved) == [("Bob", ())]  # leaving is published, as joining is
    assert all(e.topic == "agent-state" for e in moved)
    assert agent_states(state.refresh(now_ms=NOW)) == [("Bob", ())]


def test_an_agent_group_metric_removed_from_the_list_publishes_its_agents_again() -> None:
    state = RealtimeState("cr1", rules=GROUPS)
    unlisted = [{**m, "categorySelection": []} for m in SEED_METRIC_LIST]
    state.set_descriptors(parse_metric_list(unlisted), now_ms=NOW)
    member = {
        "key": {"metricId": "101", "categoryValue": "Bob"},
        "value": {"lastUpdateTime": NEW, "count": 1, "type": "COUNT"},
    }
    state.apply([parse_entry(member, now_ms=NOW), state_entry("Bob", "Talking")], now_ms=NOW)
    remaining = {m["metricId"] for m in SEED_METRIC_LIST} - {"101"}
    moved = state.forget(remaining, now_ms=NOW)
    assert agent_states(moved) == [("Bob", ())]
    assert state.forget(remaining, now_ms=NOW) == []  # nothing moved the second time

"""The ``wallboard:`` section: thresholds, stale markers, paging, views, reason labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamd.config import parse_config
from streamd.errors import ConfigError
from streamd.events import State
from streamd.wallboard.config import (
    CANONICAL_METRICS,
    DisplaySettings,
    StateThreshold,
    Threshold,
    WallboardConfig,
)

ROOT = Path(__file__).parents[2]


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, {})
    return info.value.problems


def test_defaults_are_the_alarms_the_page_had_hard_coded() -> None:
    cfg = WallboardConfig()
    assert cfg.thresholds.metrics == {"longest_wait_seconds": Threshold(alert=60.0)}
    assert cfg.thresholds.time_in_state == {
        s: StateThreshold(alert=900.0) for s in State if s is not State.AVAILABLE
    }
    assert cfg.thresholds.service_level_target is None  # no service-level colours unless asked
    assert (cfg.stale_after, cfg.page_seconds, cfg.views, cfg.reason_labels) == (120.0, 10.0, {}, {})


def test_a_full_section_parses_with_durations_states_and_queues() -> None:
    cfg = parse_config(
        """
wallboard:
  stale_after: 90s
  stale_after_per_source: {cr1: 30s}
  page_seconds: 15s
  thresholds:
    metrics:
      waiting: {warn: 5, alert: 10}
      service_level_percent: {warn: 80, alert: 70, direction: below}
      Calls in Queue: {alert: 20}
    service_level_target: 80
    service_level_alert_margin: 5
    queues:
      "pbx1:60141": {service_level_target: 90, metrics: {longest_wait_seconds: {warn: 30, alert: 60}}}
    time_in_state:
      not_ready: {warn: 10m, alert: 20m}
      after_call_work: {alert: 2m}
  views:
    sales: {title: Sales floor, queue: ["60141"], sections: [queues, agents], expand: [logged_out]}
    tv-2: {state: [available, busy], metrics: [waiting, service_level_percent]}
  reason_labels:
    pbx1: {"7": Lunch}
    "*": {break: Break}
""",
        {},
    ).wallboard
    assert cfg.stale_after == 90.0
    assert cfg.stale_after_of("cr1") == 30.0
    assert cfg.stale_after_of("pbx1") == 90.0
    assert cfg.thresholds.metrics["Calls in Queue"] == Threshold(alert=20.0)  # a vendor's own name
    assert cfg.thresholds.metrics["service_level_percent"].direction == "below"
    queue = cfg.thresholds.queues["pbx1:60141"]
    assert queue.service_level_target == 90
    assert queue.metrics["longest_wait_seconds"] == Threshold(warn=30.0, alert=60.0)
    assert cfg.thresholds.time_in_state == {
        State.NOT_READY: StateThreshold(warn=600.0, alert=1200.0),
        State.AFTER_CALL_WORK: StateThreshold(alert=120.0),
    }  # replaces the defaults
    assert cfg.views["sales"].sections == ["queues", "agents"]
    assert cfg.views["tv-2"].sections == ["summary", "queues", "agents"]
    assert cfg.views["tv-2"].state == [State.AVAILABLE, State.BUSY]
    assert cfg.reason_labels["pbx1"]["7"] == "Lunch"


def test_a_threshold_value_may_not_be_a_duration_but_a_level_of_time_in_state_may() -> None:
    # metric levels are numbers in the metric's canonical unit (seconds for the waits)
    assert any(
        "longest_wait_seconds.warn" in p
        for p in problems("wallboard: {thresholds: {metrics: {longest_wait_seconds: {warn: 1m}}}}")
    )
    cfg = parse_config("wallboard: {thresholds: {time_in_state: {busy: {warn: 90, alert: 1h}}}}", {})
    assert cfg.wallboard.thresholds.time_in_state[State.BUSY] == StateThreshold(warn=90.0, alert=3600.0)


def test_mistakes_are_named_one_line_each() -> None:
    found = problems(
        """
wallboard:
  stale_after: 0
  thresholds:
    metrics:
      service_level_percent: {warn: 80, alert: 70}
      abandoned: {warn: 3, alert: 5, direction: below}
      waiting: {}
    time_in_state:
      not_ready: {warn: 20m, alert: 10m}
      resting: {alert: 5m}
    service_level_target: 120
  views:
    "a,b": {}
    ok: {sections: [queues, queues]}
    other: {expand: [busy]}
  colour: red
"""
    )
    text = "\n".join(found)
    assert "wallboard.stale_after: Input should be greater than 0" in text
    assert (
        "wallboard.thresholds.metrics.service_level_percent: alert (70) is below warn (80) with direction: "
        "above; for a metric that is bad when low, set direction: below" in text
    )
    assert "wallboard.thresholds.metrics.abandoned: alert (5) is above warn (3) with direction: below" in text
    assert "wallboard.thresholds.metrics.waiting: set warn, alert or both" in text
    assert "wallboard.thresholds.time_in_state.not_ready: alert (600s) is shorter than warn (1200s)" in text
    assert "wallboard.thresholds.time_in_state.resting" in text
    assert "wallboard.thresholds.service_level_target: Input should be less than or equal to 100" in text
    assert "wallboard.views.a,b" in text  # a name ?rotate= could not list
    assert "wallboard.views.ok: sections: a section is listed twice" in text
    assert "wallboard.views.other.expand[0]: Input should be 'logged_out' or 'unknown'" in text
    assert "wallboard.colour" in text
    assert all("(line " in p for p in found)


def test_the_page_reads_the_display_settings_only() -> None:
    cfg = WallboardConfig(max_agents=5, stale_after=30.0)
    display = cfg.display()
    assert type(display) is DisplaySettings
    assert display.stale_after == 30.0
    dumped = display.model_dump(mode="json")
    assert set(dumped) == {
        "stale_after",
        "stale_after_per_source",
        "page_seconds",
        "thresholds",
        "views",
        "reason_labels",
    }
    assert dumped["thresholds"]["time_in_state"]["not_ready"] == {"warn": None, "alert": 900.0}
    assert "max_agents" not in dumped


def test_canonical_metrics_are_the_ones_the_issue_names_with_units() -> None:
    assert set(CANONICAL_METRICS) == {
        "waiting",
        "longest_wait_seconds",
        "average_wait_seconds",
        "service_level_percent",
        "answered",
        "abandoned",
        "agents_available",
        "agents_busy",
        "agents_logged_in",
    }
    assert CANONICAL_METRICS["service_level_percent"] == "percent"
    # the page knows the same names (its thresholds apply to them and to their vendor aliases)
    page = (ROOT / "streamd" / "wallboard" / "static" / "wallboard.js").read_text(encoding="utf-8")
    for name in CANONICAL_METRICS:
        assert f'name: "{name}"' in page


@pytest.mark.parametrize("path", ["config/full.yaml", "config/demo.yaml"])
def test_the_example_configs_have_a_valid_wallboard_section(path: str) -> None:
    data = yaml.safe_load((ROOT / path).read_text(encoding="utf-8"))
    cfg = WallboardConfig.model_validate(data["wallboard"])
    assert cfg.thresholds.metrics
    assert cfg.views

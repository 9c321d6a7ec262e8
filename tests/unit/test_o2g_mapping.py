"""The O2G agent-state table (mapping.py docstring), one case per documented row."""

from __future__ import annotations

import pytest

from streamd.events import State
from streamd.sources.o2g.mapping import SUB_STATES, agent_state, canonical_state, queue_metrics
from streamd.sources.o2g.models_callcenter import AgentSubState


@pytest.mark.parametrize(
    ("main", "sub", "expected"),
    [
        ("LOG_OFF", None, State.LOGGED_OUT),
        ("LOG_OFF", "READY", State.LOGGED_OUT),
        ("LOGGED_OFF", None, State.LOGGED_OUT),
        ("UNKNOWN", None, State.UNKNOWN),
        ("ERROR", "READY", State.UNKNOWN),
        (None, None, State.UNKNOWN),
        ("SOMETHING_NEW", "READY", State.UNKNOWN),
        ("LOG_ON", "READY", State.AVAILABLE),
        ("LOGGED_ON", "IDLE", State.AVAILABLE),
        ("LOG_ON", "BUSY", State.BUSY),
        ("LOG_ON", "WRAPUP", State.AFTER_CALL_WORK),
        ("LOG_ON", "WRAPUP_IM", State.AFTER_CALL_WORK),
        ("LOG_ON", "WRAPUP_EMAIL", State.AFTER_CALL_WORK),
        ("LOG_ON", "WRAPUP_EMAIL_INTERRUPTIBLE", State.AFTER_CALL_WORK),
        ("LOG_ON", "WRAPUP_OUTBOUND", State.AFTER_CALL_WORK),
        ("LOG_ON", "WRAPUP_CALLBACK", State.AFTER_CALL_WORK),
        ("LOG_ON", "TRANSACTION_CODE_INPUT", State.AFTER_CALL_WORK),
        ("LOG_ON", "PAUSE", State.NOT_READY),
        ("LOG_ON", "WITHDRAW", State.NOT_READY),
        ("LOG_ON", "OUT_OF_PG", State.NOT_READY),
        ("LOG_ON", None, State.UNKNOWN),
        ("LOG_ON", "SOMETHING_NEW", State.UNKNOWN),
    ],
)
def test_state_table(main: str | None, sub: str | None, expected: State) -> None:
    assert canonical_state(main, sub) is expected


def test_logged_on_without_sub_state_but_withdrawn_is_not_ready() -> None:
    assert canonical_state("LOG_ON", None, withdrawn=True) is State.NOT_READY
    assert canonical_state("LOG_ON", None, withdrawn=False) is State.UNKNOWN


def test_every_sub_state_is_in_the_table() -> None:
    assert set(SUB_STATES) == {s.value for s in AgentSubState}


def test_agent_state_fields() -> None:
    state = agent_state("pbx1", "oxe1", {"mainState": "LOG_OFF"})
    assert (state.agent_id, state.vendor_state, state.reason_code, state.queue_ids) == (
        "oxe1",
        "LOG_OFF",
        None,
        (),
    )
    state = agent_state("pbx1", "oxe1", {"mainState": "LOG_ON", "subState": "WITHDRAW", "withdrawReason": 0})
    assert state.reason_code == "0"


def test_queue_metrics_skip_absent_and_null_fields() -> None:
    table = {"a": ("metric_a", "calls"), "b": ("metric_b", None), "c": ("metric_c", None)}
    metrics = queue_metrics("s", "q1", {"a": 0, "b": None}, table)
    assert [(m.metric, m.value, m.unit) for m in metrics] == [("metric_a", 0, "calls")]

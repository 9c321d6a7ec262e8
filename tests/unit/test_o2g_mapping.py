"""The O2G agent-state table (mapping.py docstring), one case per documented row."""

from __future__ import annotations

import pytest

from streamd.events import State
from streamd.sources.o2g.mapping import (
    RTI_PHONE_STATES,
    SUB_STATES,
    agent_state,
    canonical_state,
    queue_metrics,
    rti_agent_state,
    rti_canonical_state,
)
from streamd.sources.o2g.models_callcenter import AgentPhoneState, AgentServiceState, AgentSubState


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


@pytest.mark.parametrize(
    ("service", "phone", "expected"),
    [
        ("LoggedOut", None, State.LOGGED_OUT),
        ("LoggedOut", "Idle", State.LOGGED_OUT),
        ("LoggedIn", "Idle", State.NOT_READY),
        ("Withdrawn", None, State.NOT_READY),
        ("Assigned", "Idle", State.AVAILABLE),
        ("Assigned", "AcdRinging", State.BUSY),
        ("Assigned", "AcdConversation", State.BUSY),
        ("Assigned", "PrivateExternalConversation", State.BUSY),
        ("Assigned", "ContinuousSupervision", State.BUSY),
        ("Assigned", "WrapUp", State.AFTER_CALL_WORK),
        ("Assigned", "TransactionOnDial", State.AFTER_CALL_WORK),
        ("Assigned", "Pause", State.NOT_READY),
        ("Assigned", "LineLockout", State.NOT_READY),
        ("Assigned", "LoggedOut", State.LOGGED_OUT),
        ("Assigned", "OutOfOrder", State.UNKNOWN),
        ("Assigned", "unknown", State.UNKNOWN),
        ("Assigned", None, State.UNKNOWN),
        ("unknown", "Idle", State.UNKNOWN),
        (None, "Idle", State.UNKNOWN),
    ],
)
def test_rti_state_table(service: str | None, phone: str | None, expected: State) -> None:
    assert rti_canonical_state(service, phone) is expected


def test_every_rti_phone_and_service_state_is_in_the_table() -> None:
    assert set(RTI_PHONE_STATES) | {"OutOfOrder", "unknown"} == {s.value for s in AgentPhoneState}
    mapped = {s for s in AgentServiceState if rti_canonical_state(s, "Idle") is not State.UNKNOWN}
    assert mapped == {"LoggedOut", "LoggedIn", "Assigned", "Withdrawn"}


def test_rti_agent_state_fields() -> None:
    attributes = {"serviceState": "Withdrawn", "withdrawReason": 2, "currentPG": "5001", "phoneState": "Idle"}
    state = rti_agent_state("pbx1", "oxe60113", attributes)
    assert (state.agent_id, state.state, state.vendor_state, state.reason_code, state.queue_ids) == (
        "oxe60113",
        State.NOT_READY,
        "Withdrawn/Idle",
        "2",
        ("5001",),
    )
    back = rti_agent_state("pbx1", "oxe60113", {**attributes, "serviceState": "Assigned"})
    assert back.reason_code is None  # RTI keeps the last reason after the withdrawal ended
    assert rti_agent_state("pbx1", "x", {"serviceState": "LoggedOut"}).vendor_state == "LoggedOut"

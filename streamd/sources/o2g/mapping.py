"""O2G -> canonical events: agent states to ``AgentState``, pilot/queue figures to ``QueueMetric``.

Agent state (source: package ``agent``, ``OnAgentStateChanged.state`` and the
``GET /acd/agent/state`` snapshot; agent id = the O2G login name, e.g. ``oxe60113``):

=======================================  =========================  ==========================
``mainState``                            ``subState``               canonical ``State``
=======================================  =========================  ==========================
LOG_OFF (seed example: LOGGED_OFF)       any                        logged_out
UNKNOWN, ERROR, anything else            any                        unknown
LOG_ON (seed example: LOGGED_ON)         READY (example: IDLE)      available
LOG_ON                                   BUSY                       busy
LOG_ON                                   WRAPUP, WRAPUP_IM,         after_call_work
                                         WRAPUP_EMAIL, WRAPUP_EMAIL_INTERRUPTIBLE,
                                         WRAPUP_OUTBOUND, WRAPUP_CALLBACK,
                                         TRANSACTION_CODE_INPUT
LOG_ON                                   PAUSE, WITHDRAW, OUT_OF_PG  not_ready
LOG_ON                                   absent, ``withdrawn=true``  not_ready
LOG_ON                                   absent or unknown value    unknown
=======================================  =========================  ==========================

``vendor_state`` is ``mainState`` or ``mainState/subState``; ``reason_code`` is the withdraw
reason number; ``queue_ids`` is the processing group. TRANSACTION_CODE_INPUT is the post-call
code entry, counted with wrap-up by O2G itself (``nbOfAgentsInWrapupAndTransaction``).
OUT_OF_PG = logged on outside its processing group, so it cannot take ACD calls. What the
events do not say is added by :mod:`.enrich` from O2G's slower reads: ``reason_label`` (``GET
/acd/agent/withdrawReasons``), ``agent_name`` (the user service), and in ``queue_ids`` the
agent's other processing groups and the pilots that serve them.

RTI agent events (``OnAgentRtiChanged``, :func:`rti_agent_state`) are deltas keyed by the
agent's directory number, not its login: :mod:`.enrich` maps them to a canonical state once the
number's login is known (the user service's ``companyPhone``), never under the number (one agent,
one canonical id). ``vendor_state`` is ``serviceState/phoneState``:

=======================  =============================================  =====================
``serviceState``         ``phoneState``                                 canonical ``State``
=======================  =============================================  =====================
LoggedOut                any                                            logged_out
LoggedIn, Withdrawn      any (LoggedIn = logged in, out of its group)   not_ready
Assigned                 Idle                                           available
Assigned                 AcdRinging, AcdConversation, AcdConsultation,  busy
                         AcdConference, AcdOutgoingConversation, Help,
                         Held, Dialing, BusyTone, Reserved, Private*,
                         Recording, *DiscreteListening,
                         ContinuousSupervision
Assigned                 WrapUp, TransactionOnDial                      after_call_work
Assigned                 Pause, LineLockout, Unavailable                not_ready
Assigned                 LoggedOut                                      logged_out
Assigned                 OutOfOrder, unknown, absent                    unknown
unknown, absent          any                                            unknown
=======================  =============================================  =====================

Queue metrics (``QueueMetric``, queue id = the pilot, queue or processing-group directory
number): every figure present in an ``OnPilotRtiChanged`` / ``OnQueueRtiChanged`` /
``OnPGAgentRtiChanged`` delta, ``OnPilotCallQueued.numberOfQueued`` and the pilot snapshot,
named and united as in :data:`PILOT_METRICS`, :data:`QUEUE_METRICS`, :data:`PG_AGENT_METRICS`
and :data:`PILOT_SNAPSHOT_METRICS`. A figure with a canonical name
(:data:`streamd.events.CANONICAL_QUEUE_METRICS`) is published under it only; the others keep
their former snake_case names; the ``o2g.rti`` / ``o2g.pilot`` topics keep O2G's own fields.
Units the seed does not state are ``None``. Canonical mapping:

=====================================  =================  ==========================  ========
O2G field                              object             canonical metric            unit
=====================================  =================  ==========================  ========
``nbOfWaitingCalls``                   pilot, queue       ``waiting``                 contacts
``numberOfQueued``                     OnPilotCallQueued  ``waiting``                 contacts
``serviceLevel``                       pilot              ``service_level_percent``   percent
``averageWaitingTime`` ("in sec")      pilot              ``average_wait_seconds``    seconds
``nbOfFreeAgents``                     processing group   ``agents_available``        agents
``nbOfBusyAgents``                     processing group   ``agents_busy``             agents
``nbOfLoggedOnAgents``                 processing group   ``agents_logged_in``        agents
=====================================  =================  ==========================  ========

Not mapped, for want of a stated unit or meaning: ``currentWaitingTime``,
``longestWaitingTimeInList`` (super queue), ``queuesLonguestWaitingTime`` (published as
``current_waiting_time``, ``longest_waiting_time_in_list``, ``queues_longest_waiting_time``);
O2G's RTI has no answered or abandoned counter (only the statistics reports do).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from streamd.events import AgentState, QueueMetric, State, new_agent_state, new_queue_metric

from .models_callcenter import AgentMainState as Main
from .models_callcenter import AgentSubState as Sub

VENDOR: Final = "o2g"

_LOGGED_ON: Final = frozenset({Main.LOG_ON, Main.LOGGED_ON})
_LOGGED_OFF: Final = frozenset({Main.LOG_OFF, Main.LOGGED_OFF})
SUB_STATES: Final[dict[str, State]] = {
    Sub.READY: State.AVAILABLE,
    Sub.IDLE: State.AVAILABLE,
    Sub.BUSY: State.BUSY,
    Sub.WRAPUP: State.AFTER_CALL_WORK,
    Sub.WRAPUP_IM: State.AFTER_CALL_WORK,
    Sub.WRAPUP_EMAIL: State.AFTER_CALL_WORK,
    Sub.WRAPUP_EMAIL_INTERRUPTIBLE: State.AFTER_CALL_WORK,
    Sub.WRAPUP_OUTBOUND: State.AFTER_CALL_WORK,
    Sub.WRAPUP_CALLBACK: State.AFTER_CALL_WORK,
    Sub.TRANSACTION_CODE_INPUT: State.AFTER_CALL_WORK,
    Sub.PAUSE: State.NOT_READY,
    Sub.WITHDRAW: State.NOT_READY,
    Sub.OUT_OF_PG: State.NOT_READY,
}
"""AgentSubState -> canonical state, for a logged-on agent."""


def canonical_state(main: str | None, sub: str | None, *, withdrawn: bool | None = None) -> State:
    """The canonical state of an O2G ACD agent (the table in the module docstring)."""
    if main in _LOGGED_OFF:
        return State.LOGGED_OUT
    if main not in _LOGGED_ON:
        return State.UNKNOWN
    if sub is None:
        return State.NOT_READY if withdrawn else State.UNKNOWN
    return SUB_STATES.get(sub, State.UNKNOWN)


def agent_state(
    source: str, login: str, state: dict[str, Any], *, since: datetime | None = None
) -> AgentState:
    """Map an O2G ``AgentState`` dict (already validated) of agent ``login`` to the canonical one."""
    main = state.get("mainState")
    sub = state.get("subState")
    pg = state.get("pgNumber") or state.get("pgGroupNumber")
    reason = state.get("withdrawReason")
    return new_agent_state(
        vendor=VENDOR,
        source=source,
        agent_id=login,
        state=canonical_state(main, sub, withdrawn=state.get("withdrawn")),
        vendor_state=f"{main}/{sub}" if sub else str(main),
        reason_code=str(reason) if reason is not None else None,
        since=since,
        queue_ids=(str(pg),) if pg else (),
    )


_BUSY_PHONE: Final = (
    "AcdRinging AcdConversation AcdConsultation AcdConference AcdOutgoingConversation Help Held Dialing "
    "BusyTone Reserved PrivateRinging PrivateLocalConversation PrivateExternalConversation PrivateConsultation "
    "PrivateConference Recording SupervisorDiscreteListening AgentDiscreteListening ContinuousSupervision"
)
RTI_PHONE_STATES: Final[dict[str, State]] = {
    "Idle": State.AVAILABLE,
    **dict.fromkeys(_BUSY_PHONE.split(), State.BUSY),
    "WrapUp": State.AFTER_CALL_WORK,
    "TransactionOnDial": State.AFTER_CALL_WORK,
    "Pause": State.NOT_READY,
    "LineLockout": State.NOT_READY,
    "Unavailable": State.NOT_READY,
    "LoggedOut": State.LOGGED_OUT,
}
"""RTI ``phoneState`` -> canonical state, for an agent ``Assigned`` to its processing group."""


def rti_canonical_state(service: str | None, phone: str | None) -> State:
    """The canonical state of an RTI agent (the second table in the module docstring)."""
    if service == "LoggedOut":
        return State.LOGGED_OUT
    if service in ("LoggedIn", "Withdrawn"):
        return State.NOT_READY
    if service != "Assigned" or phone is None:
        return State.UNKNOWN
    return RTI_PHONE_STATES.get(phone, State.UNKNOWN)


def rti_fields(attributes: dict[str, Any]) -> tuple[State, str, str | None, tuple[str, ...]]:
    """What :func:`rti_agent_state` maps from the RTI attributes: state, vendor state, reason
    code and queue ids (the comparisons of :mod:`.enrich` need no ``AgentState`` built)."""
    service = attributes.get("serviceState")
    phone = attributes.get("phoneState")
    reason = attributes.get("withdrawReason") if service == "Withdrawn" else None  # else the last one
    pg = attributes.get("currentPG")
    return (
        rti_canonical_state(service, phone),
        f"{service}/{phone}" if phone else str(service),
        str(reason) if reason is not None else None,
        (str(pg),) if pg else (),
    )


def rti_agent_state(
    source: str, login: str, attributes: dict[str, Any], *, since: datetime | None = None
) -> AgentState:
    """Map the RTI attributes of agent ``login`` (every ``OnAgentRtiChanged`` delta so far, merged)."""
    state, vendor_state, reason_code, queue_ids = rti_fields(attributes)
    return new_agent_state(
        vendor=VENDOR,
        source=source,
        agent_id=login,
        state=state,
        vendor_state=vendor_state,
        reason_code=reason_code,
        since=since,
        queue_ids=queue_ids,
    )


# O2G field -> (canonical metric, unit)
PILOT_METRICS: Final[dict[str, tuple[str, str | None]]] = {
    "state": ("state", None),
    "nbOfRunningCalls": ("running_calls", "calls"),
    "serviceLevel": ("service_level_percent", "percent"),
    "efficiency": ("efficiency", None),
    "nbOfWaitingCalls": ("waiting", "contacts"),
    "nbOfRingingACDCalls": ("ringing_calls", "calls"),
    "nbOfMutualAidCalls": ("mutual_aid_calls", "calls"),
    "nbOfDissuadedCalls": ("dissuaded_calls", "calls"),
    "nbOfCallsInConversation": ("calls_in_conversation", "calls"),
    "nbOfCallsInGeneralForwarding": ("calls_in_general_forwarding", "calls"),
    "nbOfCallsInRemotePG": ("calls_in_remote_pg", "calls"),
    "incomingTraffic": ("incoming_calls_last_minute", "calls"),
    "averageWaitingTime": ("average_wait_seconds", "seconds"),
    "worstServiceLevelInList": ("worst_service_level_in_list", None),
    "worstEfficiencyInList": ("worst_efficiency_in_list", None),
    "bestServiceLevelInList": ("best_service_level_in_list", None),
    "bestEfficiencyInList": ("best_efficiency_in_list", None),
}
QUEUE_METRICS: Final[dict[str, tuple[str, str | None]]] = {
    "state": ("state", None),
    "nbOfAgentsInDistribution": ("agents_in_distribution", "agents"),
    "incomingTraffic": ("incoming_calls_last_minute", "calls"),
    "outgoingTraffic": ("outgoing_calls_last_minute", "calls"),
    "nbOfWaitingCalls": ("waiting", "contacts"),
    "currentWaitingTime": ("current_waiting_time", None),
    "fillingRate": ("filling_rate", None),
    "expectedWaitingTime": ("expected_waiting_time", None),
    "longestWaitingTimeInList": ("longest_waiting_time_in_list", None),
}
PG_AGENT_METRICS: Final[dict[str, tuple[str, str | None]]] = {
    "state": ("state", None),
    "nbOfFreeAgents": ("agents_available", "agents"),
    "nbOfBusyAgents": ("agents_busy", "agents"),
    "nbOfLoggedOnAgents": ("agents_logged_in", "agents"),
    "nbOfWidthdrawnAgents": ("withdrawn_agents", "agents"),
    "nbOfAgentsInPrivateCall": ("agents_in_private_call", "agents"),
    "nbOfAgentsInACDCall": ("agents_in_acd_call", "agents"),
    "nbOfAgentsInACDRinging": ("agents_in_acd_ringing", "agents"),
    "nbOfAgentsInACDConv": ("agents_in_acd_conversation", "agents"),
    "nbOfAgentsInWrapupAndTransaction": ("agents_in_wrapup", "agents"),
    "nbOfAgentsInPause": ("agents_in_pause", "agents"),
    "nbOfIdleAgents": ("idle_agents", "agents"),
    "nbOfLoggedOnAndNotWithdrawnAgents": ("agents_logged_on_not_withdrawn", "agents"),
    "incomingTraffic": ("incoming_calls_last_minute", "calls"),
    "consolidatedQueuesNbOfWaitingCalls": ("consolidated_queues_waiting_calls", "calls"),
    "queuesLonguestWaitingTime": ("queues_longest_waiting_time", None),
}
"""Processing-group (``OnPGAgentRtiChanged``) fields; the queue id is the group's number, as in
an agent's ``queue_ids``."""
PILOT_SNAPSHOT_METRICS: Final[dict[str, tuple[str, str | None]]] = {
    "state": ("state", None),
    "detailedState": ("detailed_state", None),
    "waitingTime": ("expected_waiting_time", "seconds"),
    "saturation": ("saturated", None),
}


def queue_metrics(
    source: str,
    queue_id: str,
    obj: dict[str, Any],
    table: dict[str, tuple[str, str | None]],
    *,
    queue_name: str | None = None,
    as_of: datetime | None = None,
) -> list[QueueMetric]:
    """One ``QueueMetric`` per field of ``table`` present (not null) in ``obj``."""
    get = obj.get
    return [
        new_queue_metric(
            vendor=VENDOR,
            source=source,
            queue_id=queue_id,
            metric=metric,
            value=value,
            unit=unit,
            queue_name=queue_name,
            as_of=as_of,
        )
        for field, (metric, unit) in table.items()
        if (value := get(field)) is not None
    ]

"""Models of the call-centre O2G packages: agent, pilot, rti, acdstats, plus the REST bodies read
for snapshots (``AgentState``, ``Pilot``) (spec ``o2g-events-callcenter.md``; seed 004 cited per
class). system, pbxManagement and rsi are in :mod:`.models_other`.

Rules: see :mod:`.models_common`. RTI events are *deltas* ("the attributes that have changed
since the previous notification, and only them", 004 L14646-14652): only ``name``/``number``
/``type`` are required.
"""

from __future__ import annotations

import enum
from typing import Annotated, Literal

from .models_common import (
    CallCauseStr,
    DateTime,
    O2GEvent,
    O2GModel,
    PilotStatusStr,
    ServiceStateStr,
    TrunkIdentification,
    closed_values,
    open_enum,
)


class AgentMainState(enum.StrEnum):
    """ACD agent main state (004 L13171-13177) plus the seed example's spellings (L12890-12895)."""

    UNKNOWN = "UNKNOWN"
    LOG_ON = "LOG_ON"
    LOG_OFF = "LOG_OFF"
    ERROR = "ERROR"
    LOGGED_ON = "LOGGED_ON"  # seed example only
    LOGGED_OFF = "LOGGED_OFF"  # seed example only


class AgentSubState(enum.StrEnum):
    """ACD agent sub state while logged on (004 L13219-13233) plus the example's ``IDLE``."""

    READY = "READY"
    OUT_OF_PG = "OUT_OF_PG"
    BUSY = "BUSY"
    TRANSACTION_CODE_INPUT = "TRANSACTION_CODE_INPUT"
    WRAPUP = "WRAPUP"
    PAUSE = "PAUSE"
    WITHDRAW = "WITHDRAW"
    WRAPUP_IM = "WRAPUP_IM"
    WRAPUP_EMAIL = "WRAPUP_EMAIL"
    WRAPUP_EMAIL_INTERRUPTIBLE = "WRAPUP_EMAIL_INTERRUPTIBLE"
    WRAPUP_OUTBOUND = "WRAPUP_OUTBOUND"
    WRAPUP_CALLBACK = "WRAPUP_CALLBACK"
    IDLE = "IDLE"  # seed example only


RtiAgentType = closed_values("RtiAgentType", "Normal IVR")
AgentServiceState = closed_values("E_AgentServiceState", "LoggedOut LoggedIn Assigned Withdrawn unknown")
AgentPhoneState = closed_values(
    "E_AgentPhoneState",
    "Idle LineLockout OutOfOrder AcdRinging AcdConversation AcdConsultation Help AcdConference "
    "TransactionOnDial Pause WrapUp SupervisorDiscreteListening AgentDiscreteListening Recording "
    "LoggedOut Held Dialing PrivateRinging PrivateLocalConversation PrivateExternalConversation "
    "PrivateConsultation PrivateConference BusyTone Reserved AcdOutgoingConversation "
    "ContinuousSupervision Unavailable unknown",
)
QueueType = closed_values(
    "QueueType", "Normal MutualAid Dissuasion Virtual WaitingRoom VirtualWaitingRoom unknown"
)
PGAgentType = closed_values("PGAgentType", "Agent IVR QueuedIVR unknown")
PGOtherType = closed_values("PGOtherTypeDTO", "MutualAid Forward Guide Remote")
AcdStatsProgressStep = closed_values("AcdStatsProgressStep", "COLLECT PROCESSED FORMATED ERROR CANCELLED")


# -- agent (004 L12271-13402) -------------------------------------------------------------------


class AgentState(O2GModel):
    """ACD state of an agent: ``OnAgentStateChanged.state`` and ``GET /acd/agent/state`` (004 L13200-13218).

    The seed's GET example says ``pgGroupNumber`` (L12891); it is kept as an extra field and
    :func:`pg_number` reads either spelling.
    """

    mainState: Annotated[str, open_enum(AgentMainState)]
    subState: Annotated[str, open_enum(AgentSubState)] | None = None
    proAcdDeviceNumber: str | None = None
    pgNumber: str | None = None
    withdrawReason: int | None = None
    withdrawn: bool | None = None

    def pg_number(self) -> str | None:
        """The processing group, whichever spelling the server used."""
        extra = self.model_extra or {}
        value = self.pgNumber or extra.get("pgGroupNumber")
        return str(value) if value is not None else None


class AgentSkill(O2GModel):
    """One skill of an agent (004 L13178-13199)."""

    number: int | None = None
    level: int | None = None
    active: bool | None = None


class AgentSkills(O2GModel):
    """The whole skill set of an agent (004 L13178-13199)."""

    skills: list[AgentSkill] | None = None


class OnAgentStateChanged(O2GEvent):
    """The ACD state of an agent changed (004 L13326-13344)."""

    eventName: Literal["OnAgentStateChanged"]
    loginName: str
    state: AgentState


class OnAgentSkillChanged(O2GEvent):
    """Skills activated or deactivated; carries the whole set (004 L13308-13325)."""

    eventName: Literal["OnAgentSkillChanged"]
    loginName: str
    skills: AgentSkills


class OnSupervisorHelpRequested(O2GEvent):
    """An agent asks its supervisor for help (004 L13354-13360)."""

    eventName: Literal["OnSupervisorHelpRequested"]
    loginName: str
    agentNumber: str | None = None


class OnSupervisorHelpCancelled(O2GEvent):
    """A help request was cancelled (agent) or rejected (supervisor) (004 L13345-13353)."""

    eventName: Literal["OnSupervisorHelpCancelled"]
    loginName: str
    agentNumber: str | None = None


# -- pilot (004 L14341-14634) -------------------------------------------------------------------


class CallDataPilot(O2GModel):
    """Data of a call arriving on a pilot (004 L14538-14557)."""

    initialCalled: str | None = None
    anonymous: bool | None = None
    associatedData: str | None = None
    hexaBinaryAssociatedData: str | None = None
    trunkIdentification: TrunkIdentification | None = None
    networkRerouted: bool | None = None


class OnPilotCallCreated(O2GEvent):
    """A new call arrives on a pilot (004 L14559-14586)."""

    eventName: Literal["OnPilotCallCreated"]
    pilot: str
    caller: str
    callRef: str
    cause: CallCauseStr
    callData: CallDataPilot | None = None


class OnPilotCallQueued(O2GEvent):
    """The call has been queued (004 L14587-14606)."""

    eventName: Literal["OnPilotCallQueued"]
    pilot: str
    caller: str
    queue: str | None = None
    callRef: str
    cause: CallCauseStr
    numberOfQueued: int | None = None


class OnPilotCallRemoved(O2GEvent):
    """The call left the pilot: distribution, cancel or overflow (004 L14607-14624).

    ``releasingDevice``/``newDestination`` are ``[1]`` in the seed but optional here: a cancelled
    call has no new destination (callcenter spec ambiguity 18).
    """

    eventName: Literal["OnPilotCallRemoved"]
    pilot: str
    releasingDevice: str | None = None
    newDestination: str | None = None
    callRef: str
    cause: CallCauseStr


class PilotRule(O2GModel):
    """A pilot rule (004 L14263-14272)."""

    ruleNumber: str
    name: str | None = None
    active: bool


class PilotRules(O2GModel):
    """The rules of a pilot (004 L14263-14272)."""

    ruleList: list[PilotRule] | None = None


class Pilot(O2GModel):
    """A CCD pilot: ``GET /acd/{nodeId}/pilots[/{pilotNumber}]`` (004 L14172-14201).

    The seed's example sends ``queueState: "s_Opened"`` instead of ``state`` (kept as extra).
    """

    number: str | None = None
    name: str | None = None
    state: ServiceStateStr | None = None
    detailedState: PilotStatusStr | None = None
    waitingTime: int | None = None
    saturation: bool | None = None
    rules: PilotRules | None = None
    possibleTransfer: bool | None = None
    supervisedTransfer: bool | None = None


class Pilots(O2GModel):
    """``GET /acd/{nodeId}/pilots`` (004 L14273-14295); ``pilotList`` may be null."""

    pilotList: list[Pilot] | None = None


class PilotSnapshot(Pilot):
    """Snapshot event of one pilot (streamd-made: ``Pilot`` plus the ``nodeId`` it was read from)."""

    nodeId: str | None = None


# -- rti (004 L14635-15665): deltas ---------------------------------------------------------------


class _RtiEvent(O2GEvent):
    name: str
    number: str


class OnAgentRtiChanged(_RtiEvent):
    """Attributes of an agent changed (004 L15218-15272)."""

    eventName: Literal["OnAgentRtiChanged"]
    firstName: str | None = None
    type: Annotated[str, open_enum(RtiAgentType)]
    logonDate: str | None = None
    serviceState: Annotated[str, open_enum(AgentServiceState)] | None = None
    phoneState: Annotated[str, open_enum(AgentPhoneState)] | None = None
    pilotName: str | None = None
    queueName: str | None = None
    nbOfWithdrawals: int | None = None
    serviceStateDate: DateTime | None = None
    comDate: str | None = None
    withdrawalsTotalDuration: int | None = None
    nbOfPrivateCalls: int | None = None
    privateCallsTotalDuration: int | None = None
    nbOfServedACDCalls: int | None = None
    nbOfOutgoingACDCalls: int | None = None
    nbOfRefusedACDCalls: int | None = None
    nbOfInterceptedACDCalls: int | None = None
    nbOfTransferedACDCalls: int | None = None
    currentPG: str | None = None
    associatedSet: str | None = None
    withdrawReason: int | None = None


class OnPilotRtiChanged(_RtiEvent):
    """Attributes of a pilot changed (004 L15355-15399)."""

    eventName: Literal["OnPilotRtiChanged"]
    state: ServiceStateStr | None = None
    nbOfRunningCalls: int | None = None
    serviceLevel: int | None = None
    efficiency: int | None = None
    nbOfWaitingCalls: int | None = None
    nbOfRingingACDCalls: int | None = None
    nbOfMutualAidCalls: int | None = None
    nbOfDissuadedCalls: int | None = None
    nbOfCallsInConversation: int | None = None
    nbOfCallsInGeneralForwarding: int | None = None
    nbOfCallsInRemotePG: int | None = None
    incomingTraffic: int | None = None
    averageWaitingTime: int | None = None
    worstServiceLevelInList: int | None = None
    worstEfficiencyInList: int | None = None
    bestServiceLevelInList: int | None = None
    bestEfficiencyInList: int | None = None


class OnQueueRtiChanged(_RtiEvent):
    """Attributes of a queue changed (004 L15400-15430)."""

    eventName: Literal["OnQueueRtiChanged"]
    type: Annotated[str, open_enum(QueueType)]
    state: ServiceStateStr | None = None
    nbOfAgentsInDistribution: int | None = None
    incomingTraffic: int | None = None
    outgoingTraffic: int | None = None
    nbOfWaitingCalls: int | None = None
    currentWaitingTime: int | None = None
    fillingRate: int | None = None
    expectedWaitingTime: int | None = None
    longestWaitingTimeInList: int | None = None


class OnPGAgentRtiChanged(_RtiEvent):
    """Attributes of an agent processing group changed (004 L15273-15334)."""

    eventName: Literal["OnPGAgentRtiChanged"]
    type: Annotated[str, open_enum(PGAgentType)]
    state: ServiceStateStr | None = None
    nbOfWidthdrawnAgents: int | None = None
    nbOfAgentsInPrivateCall: int | None = None
    nbOfAgentsInACDCall: int | None = None
    nbOfAgentsInACDRinging: int | None = None
    nbOfAgentsInACDConv: int | None = None
    nbOfAgentsInWrapupAndTransaction: int | None = None
    nbOfAgentsInPause: int | None = None
    nbOfBusyAgents: int | None = None
    nbOfLoggedOnAgents: int | None = None
    nbOfFreeAgents: int | None = None
    nbOfIdleAgents: int | None = None
    nbOfLoggedOnAndNotWithdrawnAgents: int | None = None
    incomingTraffic: int | None = None
    consolidatedPilotsServiceLevel: int | None = None
    consolidatedPilotsEfficiency: int | None = None
    consolidatedQueuesWaitingTime: int | None = None
    consolidatedQueuesNbOfWaitingCalls: int | None = None
    consolidatedQueuesEWT: int | None = None
    pilotsWorstServiceLevel: int | None = None
    pilotsWorstEfficiency: int | None = None
    pilotsBestServiceLevel: int | None = None
    pilotsBestEfficiency: int | None = None
    queuesLonguestWaitingTime: int | None = None


class OnPGOtherRtiChanged(_RtiEvent):
    """Attributes of a processing group without agents changed (004 L15335-15354)."""

    eventName: Literal["OnPGOtherRtiChanged"]
    type: Annotated[str, open_enum(PGOtherType)]
    state: ServiceStateStr | None = None
    nbOfACDCalls: int | None = None
    incomingTraffic: int | None = None


# -- acdstats (004 L17187-17209) ----------------------------------------------------------------


class OnAcdStatsProgress(O2GEvent):
    """Progress of a statistics request (004 L17187-17209)."""

    eventName: Literal["OnAcdStatsProgress"]
    supervisor: str
    step: Annotated[str, open_enum(AcdStatsProgressStep)]
    nbTotObjects: int | None = None
    nbProcessedObjects: int | None = None
    resPath: str | None = None
    fullResPath: str | None = None
    xlsfullResPath: str | None = None

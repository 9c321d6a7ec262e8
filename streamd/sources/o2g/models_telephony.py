"""Models of the O2G ``telephony`` package (spec ``o2g-events-telephony.md`` §1, §7; seed 004
cited per class). eventSummary, unifiedComLog, user, userManagement and routingManagement are in
:mod:`.models_other`.

Rules: see :mod:`.models_common` (extra fields kept, open enums, dates as strings). Cardinality
``[1]`` fields are required, everything else optional; ``[0..*]`` lists stay ``None`` when absent
because absence carries meaning ("no modification" in OnCallModified).
"""

from __future__ import annotations

from typing import Annotated, Literal

from .models_common import (
    CallCauseStr,
    O2GEvent,
    O2GModel,
    PilotStatusStr,
    TrunkIdentification,
    closed_values,
    open_enum,
)

MediaState = closed_values(
    "MediaState", "UNKNOWN OFF_HOOK IDLE RELEASING DIALING HELD RINGING_INCOMING RINGING_OUTGOING ACTIVE"
)
RecordState = closed_values("RecordState", "PAUSED RECORDING")
UserState = closed_values("UserState", "FREE BUSY UNKNOWN")
OperationalState = closed_values("OperationalState", "IN_SERVICE OUT_OF_SERVICE UNKNOWN")
MainType = closed_values("MainType", "USER DEVICE SERVICE EXTERNAL UNKNOWN")

MediaStateStr = Annotated[str, open_enum(MediaState)]
UserStateStr = Annotated[str, open_enum(UserState)]


# -- call control types (004 L4594-6495) --------------------------------------------------------


class Identifier(O2GModel):
    """Identifier of a party (004 L5276-5281)."""

    loginName: str | None = None
    phoneNumber: str | None = None
    multiLine: bool | None = None


class ParticipantType(O2GModel):
    """Type of a participant (004 L6144-6152, ComLog copy L8566-8574)."""

    main: Annotated[str, open_enum(MainType)]
    subType: str | None = None


class PartyInfo(O2GModel):
    """A party involved in a call (004 L6153-6175)."""

    id: Identifier
    firstName: str | None = None
    lastName: str | None = None
    displayName: str | None = None
    type: ParticipantType | None = None


class Tag(O2GModel):
    """A tag attached to a call (004 L6316-6321)."""

    name: str
    value: str | None = None
    visibilities: list[str] | None = None


class CallCapabilities(O2GModel):
    """What can be done on a call (004 L4885-4938); all booleans optional."""

    addDevice: bool | None = None
    addParticipant: bool | None = None
    intruded: bool | None = None
    intrusion: bool | None = None
    transfer: bool | None = None
    blindTransfer: bool | None = None
    merge: bool | None = None
    redirect: bool | None = None
    pickedUp: bool | None = None
    redirectToVoiceMail: bool | None = None
    redirectToDVA: bool | None = None
    overflowToVoiceMail: bool | None = None
    dropMe: bool | None = None
    terminate: bool | None = None
    reject: bool | None = None
    callBack: bool | None = None
    park: bool | None = None
    startRecord: bool | None = None
    stopRecord: bool | None = None
    pauseRecord: bool | None = None
    resumeRecord: bool | None = None
    dropParticipant: bool | None = None
    muteParticipant: bool | None = None
    holdParticipant: bool | None = None


class AcdCallInfo(O2GModel):
    """ACD information of a call (004 L4623-4635)."""

    queueWaitingTime: int | None = None
    globalWaitingTime: int | None = None
    agentGroup: str | None = None
    local: bool | None = None


class QueueData(O2GModel):
    """State of the queue an ACD call waits in (004 L6244-6248); ``waitingTime`` in seconds."""

    waitingTime: int | None = None
    saturated: bool | None = None


class PilotTransferInfo(O2GModel):
    """Transfer-to-pilot information of an enquiry call (004 L6235-6243)."""

    transferPossible: bool | None = None
    pilotStatus: PilotStatusStr | None = None


class AcdCallData(O2GModel):
    """ACD data of a call (004 L4595-4622)."""

    callInfo: AcdCallInfo | None = None
    queueData: QueueData | None = None
    pilotNumber: str | None = None
    rsiNumber: str | None = None
    supervisedTransfer: bool | None = None
    pilotTransferInfo: PilotTransferInfo | None = None


class CallData(O2GModel):
    """Call data (004 L4971-5079); ``associateData`` is the wire spelling."""

    initialCalled: PartyInfo | None = None
    lastRedirecting: PartyInfo | None = None
    deviceCall: bool | None = None
    anonymous: bool | None = None
    callUUID: str | None = None
    state: MediaStateStr | None = None
    recordState: Annotated[str, open_enum(RecordState)] | None = None
    tags: list[Tag] | None = None
    capabilities: CallCapabilities | None = None
    associateData: str | None = None
    hexaBinaryAssociatedData: str | None = None
    accountInfo: str | None = None
    acdCallData: AcdCallData | None = None
    trunkIdentification: TrunkIdentification | None = None


class LegCapabilities(O2GModel):
    """What can be done on a leg (004 L5308-5320)."""

    answer: bool | None = None
    drop: bool | None = None
    hold: bool | None = None
    retrieve: bool | None = None
    reconnect: bool | None = None
    mute: bool | None = None
    unMute: bool | None = None
    sendDtmf: bool | None = None
    switchDevice: bool | None = None


class Leg(O2GModel):
    """A user's device in a call for one media (004 L5283-5307)."""

    deviceId: str
    state: MediaStateStr | None = None
    ringingRemote: bool | None = None
    capabilities: LegCapabilities | None = None


class Participant(O2GModel):
    """A participant of a call (004 L6087-6116)."""

    participantId: str
    identity: PartyInfo | None = None
    anonymous: bool | None = None
    undroppable: bool | None = None
    state: MediaStateStr | None = None


class DeviceCapabilities(O2GModel):
    """What a device can do (004 L5219-5226)."""

    deviceId: str
    makeCall: bool | None = None
    makeBusinessCall: bool | None = None
    makePrivateCall: bool | None = None
    unParkCall: bool | None = None


class DeviceState(O2GModel):
    """Operational state of a device (004 L5227-5238)."""

    deviceId: str
    state: Annotated[str, open_enum(OperationalState)]
    cause: CallCauseStr | None = None


class HuntingGroupStatus(O2GModel):
    """Hunting-group logon state (004 L5271-5275); ``"true"`` strings are accepted (L4036)."""

    logon: bool


class Call(O2GModel):
    """One call of a user (004 L4695-4833)."""

    callRef: str
    callData: CallData | None = None
    legs: list[Leg] | None = None
    participants: list[Participant] | None = None


class TelephonicState(O2GModel):
    """A user's telephonic state (004 L6322-6469)."""

    calls: list[Call] | None = None
    deviceCapabilities: list[DeviceCapabilities] | None = None
    userState: UserStateStr | None = None


# -- telephony events (004 L5490-6074) ----------------------------------------------------------


class UserEvent(O2GEvent):
    """Base of the per-user events: ``loginName`` is required."""

    loginName: str


class OnCallCreated(UserEvent):
    """A new call has been created (004 L5490-5645)."""

    eventName: Literal["OnCallCreated"]
    callRef: str
    cause: CallCauseStr | None = None
    callData: CallData | None = None
    initiator: str | None = None
    legs: list[Leg] | None = None
    participants: list[Participant] | None = None
    deviceCapabilities: list[DeviceCapabilities] | None = None


class OnCallModified(UserEvent):
    """An existing call has been modified; absent parts mean "no modification" (004 L5646-5862)."""

    eventName: Literal["OnCallModified"]
    callRef: str
    cause: CallCauseStr | None = None
    previousCallRef: str | None = None
    replacedByCallRef: str | None = None
    callData: CallData | None = None
    modifiedLegs: list[Leg] | None = None
    addedLegs: list[Leg] | None = None
    removedLegs: list[Leg] | None = None
    modifiedParticipants: list[Participant] | None = None
    addedParticipants: list[Participant] | None = None
    removedParticipantIds: list[str] | None = None
    deviceCapabilities: list[DeviceCapabilities] | None = None


class OnCallRemoved(UserEvent):
    """A call has been removed (hang up, transfer...) (004 L5863-5888)."""

    eventName: Literal["OnCallRemoved"]
    callRef: str
    cause: CallCauseStr | None = None
    newDestination: str | None = None
    deviceCapabilities: list[DeviceCapabilities] | None = None


class OnDeviceStateModified(UserEvent):
    """A device's state has been modified (004 L5889-5903)."""

    eventName: Literal["OnDeviceStateModified"]
    deviceStates: list[DeviceState]


class OnDynamicStateChanged(UserEvent):
    """The user's hunting-group logon state changed (004 L5904-5910)."""

    eventName: Literal["OnDynamicStateChanged"]
    huntingGroupState: HuntingGroupStatus | None = None


class OnTelephonyState(UserEvent):
    """The full telephonic state of a user; the answer to a telephony snapshot (004 L5911-6062)."""

    eventName: Literal["OnTelephonyState"]
    state: TelephonicState | None = None


class OnUserStateModified(UserEvent):
    """The user's state has been modified (FREE, BUSY...) (004 L6063-6074)."""

    eventName: Literal["OnUserStateModified"]
    state: UserStateStr

"""Models of the smaller O2G packages: eventSummary, unifiedComLog, user, userManagement,
routingManagement (spec ``o2g-events-telephony.md`` §2-5, §7) and system, pbxManagement, rsi
(spec ``o2g-events-callcenter.md`` §1, §2, §7); seed 004 cited per class.

Rules: see :mod:`.models_common`. rsi has no representation in the seed: its models follow ALE's
node SDK (``rsiPoint``, ``callRef``...) with every field optional.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from .models_common import DateTime, O2GEvent, O2GModel, closed_values, open_enum
from .models_telephony import ParticipantType, UserEvent

Role = closed_values("Role", "CALLER CALLEE UNKNOWN")
Reason = closed_values(
    "Reason",
    "ALL_TRUNK_BUSY INVALID_NUMBER ABANDONED BUSY CONFERENCED PICKUP FORWARDED REDIRECTED "
    "RELEASED_ON_REDIRECT TRANSFERRED RELEASED_ON_TRANSFER VOICEMAIL NORMAL UNKNOWN",
)
MediaType = closed_values("MediaType", "AUDIO UNKNOWN")
DestinationType = closed_values("DestinationType", "OFFICE MOBILE VOICEMAIL NUMBER UNKNOWN")
ForwardType = closed_values("ForwardType", "BUSY NO_ANSWER BUSY_NO_ANSWER")
VoicemailType = closed_values("VoicemailType", "VM_4635 VM_4645 EXTERNAL")
DeviceType = closed_values("DeviceType", "DECT DESKPHONE MOBILE SOFTPHONE")

DestinationTypeStr = Annotated[str, open_enum(DestinationType)]
ForwardTypeStr = Annotated[str, open_enum(ForwardType)]


# -- eventSummary (004 L8644-8746) --------------------------------------------------------------


class EventSummary(O2GModel):
    """A user's counters (004 L8701-8736); an absent counter means "unknown", not 0."""

    missedCallsNb: int | None = None
    voiceMessagesNb: int | None = None
    callBackRequestsNb: int | None = None
    faxNb: int | None = None
    newTextNb: int | None = None
    oldTextNb: int | None = None
    eventWaiting: bool | None = None


class OnEventSummaryUpdated(UserEvent):
    """The user's counters have changed (full set) (004 L8739-8745, L9648-9654)."""

    eventName: Literal["OnEventSummaryUpdated"]
    eventSummary: EventSummary


# -- unifiedComLog (004 L7781-8643) -------------------------------------------------------------


class ComIdentifier(O2GModel):
    """Identifier (ComLog) (004 L8321-8325)."""

    loginName: str | None = None
    phoneNumber: str | None = None


class ComPartyInfo(O2GModel):
    """PartyInfo (ComLog) (004 L8575-8596)."""

    id: ComIdentifier
    firstName: str | None = None
    lastName: str | None = None
    displayName: str | None = None
    type: ParticipantType | None = None


class ComParticipant(O2GModel):
    """Participant (ComLog) (004 L8485-8565)."""

    role: Annotated[str, open_enum(Role)] | None = None
    answered: bool | None = None
    identity: ComPartyInfo
    anonymous: bool | None = None
    initialCalled: ComPartyInfo | None = None
    reason: Annotated[str, open_enum(Reason)] | None = None
    leg: str | None = None


class TagValuePair(O2GModel):
    """Supplementary information of a record (004 L8631-8635)."""

    name: str
    value: str


class ComHistoryRecord(O2GModel):
    """A communication-log record (004 L8184-8249).

    ``comRef`` and ``medias`` are ``[1]`` in the seed but optional here: OnComRecordModified
    carries "all or part of the modified fields" (004 L8409); ``participants`` may be null.
    """

    recordId: int | None = None
    comRef: str | None = None
    acknowledged: bool | None = None
    participants: list[ComParticipant] | None = None
    beginDate: DateTime | None = None
    endDate: DateTime | None = None
    convDate: DateTime | None = None
    holdDuration: int | None = None
    transferredBy: str | None = None
    associatedData: str | None = None
    medias: list[Annotated[str, open_enum(MediaType)]] | None = None
    extensions: list[TagValuePair] | None = None


class OnComRecordCreated(UserEvent):
    """A new comlog entry has been created (004 L8341-8399)."""

    eventName: Literal["OnComRecordCreated"]
    record: ComHistoryRecord


class OnComRecordModified(UserEvent):
    """One or more records have been modified (partial record) (004 L8400-8462)."""

    eventName: Literal["OnComRecordModified"]
    record: ComHistoryRecord


class OnComRecordsAck(UserEvent):
    """Unanswered comlog records have been acknowledged (004 L8463-8469)."""

    eventName: Literal["OnComRecordsAck"]
    recordIds: list[int] | None = None


class OnComRecordsDeleted(UserEvent):
    """Comlog records destroyed; no ``recordIds`` = all the user's records (004 L8470-8477)."""

    eventName: Literal["OnComRecordsDeleted"]
    recordIds: list[int] | None = None


class OnComRecordsUnAck(UserEvent):
    """Unanswered comlog records have been unacknowledged (004 L8478-8484)."""

    eventName: Literal["OnComRecordsUnAck"]
    recordIds: list[int] | None = None


# -- user / userManagement (004 L1125-2073) -----------------------------------------------------


class UserVoicemail(O2GModel):
    """The user's voicemail box (004 L1678-1686)."""

    number: str
    type: Annotated[str, open_enum(VoicemailType)]


class Device(O2GModel):
    """A user's device (004 L1538-1550)."""

    type: Annotated[str, open_enum(DeviceType)] | None = None
    id: str | None = None
    subType: str | None = None


class User(O2GModel):
    """An O2G user (004 L1639-1671)."""

    companyPhone: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    loginName: str | None = None
    voicemail: UserVoicemail | None = None
    devices: list[Device] | None = None
    nodeId: str | None = None
    externalLogin: str | None = None


class OnUserCreated(O2GEvent):
    """A user has been created (administrator only) (004 L1566-1592)."""

    eventName: Literal["OnUserCreated"]
    user: User


class OnUserDeleted(O2GEvent):
    """A user has been deleted (administrator only) (004 L1593-1599)."""

    eventName: Literal["OnUserDeleted"]
    loginName: str


class OnUserInfoChanged(O2GEvent):
    """Any change on the user's data; packages user and userManagement (004 L1600-1626)."""

    eventName: Literal["OnUserInfoChanged"]
    loginName: str | None = None
    user: User


# -- routingManagement (004 L6838-7780) ---------------------------------------------------------


class Destination(O2GModel):
    """A routing destination (004 L7540-7555)."""

    type: DestinationTypeStr
    deviceId: str | None = None
    number: str | None = None
    selected: bool | None = None


class PresentationRoute(O2GModel):
    """Where calls are presented (004 L7663-7679)."""

    destinations: list[Destination]


class ForwardRoute(O2GModel):
    """A forward; no ``forwardType`` = immediate (004 L7571-7588)."""

    forwardType: ForwardTypeStr | None = None
    destinations: list[Destination] | None = None


class OverflowRoute(O2GModel):
    """An overflow (004 L7639-7656)."""

    overflowType: ForwardTypeStr
    destinations: list[Destination]


class DNDState(O2GModel):
    """Do-not-disturb state (004 L7565-7570)."""

    activate: bool | None = None


class RoutingState(O2GModel):
    """A user's routing state (004 L7680-7718)."""

    presentationRoutes: list[PresentationRoute]
    forwardRoutes: list[ForwardRoute] | None = None
    overflowRoutes: list[OverflowRoute] | None = None
    dndState: DNDState | None = None


class OnRoutingStateChanged(UserEvent):
    """The routing state has changed (full state); also a routing snapshot's answer (004 L7597-7638)."""

    eventName: Literal["OnRoutingStateChanged"]
    routingState: RoutingState


# -- system (004 L8926-8954) --------------------------------------------------------------------


class OnCtiLinkDown(O2GEvent):
    """The CTI link of a node is down (sent 30-60 s late) (004 L8926-8930)."""

    eventName: Literal["OnCtiLinkDown"]
    nodeId: str


class OnCtiLinkUp(O2GEvent):
    """The CTI link of a node is back (004 L8931-8935)."""

    eventName: Literal["OnCtiLinkUp"]
    nodeId: str


class OnLicenseExpiration(O2GEvent):
    """The licence file will expire in ``nbDays`` (< 0: expired since) (004 L8936-8943)."""

    eventName: Literal["OnLicenseExpiration"]
    message: str
    nbDays: int


class OnPbxLoaded(O2GEvent):
    """Data fully loaded from an OXE node (004 L8944-8948)."""

    eventName: Literal["OnPbxLoaded"]
    nodeId: str


class OnServerStart(O2GEvent):
    """O2G is ready (webhook subscriptions only) (004 L8949-8954)."""

    eventName: Literal["OnServerStart"]
    serverId: str


# -- pbxManagement (004 L11635-11719) -----------------------------------------------------------


class PbxObjectFather(O2GModel):
    """Father of a sub-object instance (004 L11714-11719)."""

    objectName: str
    objectId: str


class _PbxObjectEvent(O2GEvent):
    objectName: str
    objectId: str
    nodeId: str
    father: PbxObjectFather | None = None


class OnPbxObjectInstanceCreated(_PbxObjectEvent):
    """A PBX object instance is created (004 L11635-11643)."""

    eventName: Literal["OnPbxObjectInstanceCreated"]


class OnPbxObjectInstanceDeleted(_PbxObjectEvent):
    """A PBX object instance is deleted (004 L11644-11652)."""

    eventName: Literal["OnPbxObjectInstanceDeleted"]


class OnPbxObjectInstanceModified(_PbxObjectEvent):
    """A PBX object instance is modified (re-read it to see what) (004 L11653-11661)."""

    eventName: Literal["OnPbxObjectInstanceModified"]


# -- rsi (not in the seed; field names from ALE's o2g-node-sdk) -----------------------------------


class _RsiEvent(O2GEvent):
    rsiPoint: str | None = Field(default=None, description="RSI point extension number")
    callRef: str | None = None


class OnRouteRequest(_RsiEvent):
    """A routing request on an RSI point (no definition in 004)."""

    eventName: Literal["OnRouteRequest"]
    routeCrid: str | None = None
    request: Any = None


class OnRouteEnd(_RsiEvent):
    """A routing session ended (no definition in 004)."""

    eventName: Literal["OnRouteEnd"]
    routeCrid: str | None = None
    routedCallRef: str | None = None
    reason: str | None = None


class OnToneGeneratedStart(_RsiEvent):
    """Tones started on an RSI call (no definition in 004)."""

    eventName: Literal["OnToneGeneratedStart"]
    tonesTypes: Any = None


class OnToneGeneratedStop(_RsiEvent):
    """Tones stopped on an RSI call (no definition in 004)."""

    eventName: Literal["OnToneGeneratedStop"]


class OnDigitCollected(_RsiEvent):
    """Digits collected on an RSI call (no definition in 004)."""

    eventName: Literal["OnDigitCollected"]
    dataCollected: Any = None

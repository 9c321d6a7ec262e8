"""Shared building blocks of the O2G payload models.

Rules:

1. Every model keeps unknown vendor fields (``extra="allow"``): O2G versions add fields and the
   seed's examples carry fields its tables lack (``label``, ``apiRights``, ``pgGroupNumber``).
2. Enumerations are *open*: a field typed with :func:`open_enum` accepts any string and
   documents the known values in the JSON schema. The seed's templates truncate enums with
   ``...`` and its examples contradict its tables (``LOGGED_ON`` vs ``LOG_ON``), so an unknown
   value must never turn a live event into a dead letter. Python :class:`enum.StrEnum` classes
   list the known values for code that branches on them.
3. ``dateTime`` values stay strings (``yyyy-MM-ddTHH:mm:ss.SSSZ``; RTI sends ``"NS"`` when not
   significant): parsing them would cost time on the hot path and reject valid events.
4. Wire names are kept exactly, typos included (``associateData``, ``nbOfWidthdrawnAgents``).
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from streamd.tolerant import KnownValues

DATETIME_SCHEMA = WithJsonSchema(
    {
        "type": "string",
        "description": "UTC dateTime yyyy-MM-ddTHH:mm:ss.SSSZ (RTI: 'NS' when not significant)",
    }
)
DateTime = Annotated[str, DATETIME_SCHEMA]


class O2GModel(BaseModel):
    """Base of every O2G payload model: unknown fields are kept, enums are open."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class O2GEvent(O2GModel):
    """Base of every O2G event: one flat JSON object discriminated by ``eventName``."""

    eventName: str


def open_enum(values: type[enum.StrEnum]) -> KnownValues:
    """Annotation for an open enum: ``Annotated[str, open_enum(SomeEnum)]``.

    Any string validates; the schema lists the known values of ``values``, and a value outside
    them is a deviation (:mod:`streamd.tolerant`).
    """
    return KnownValues(tuple(v.value for v in values), values.__name__)


class CallCause(enum.StrEnum):
    """Cause of a call event (004 L4939-4970, identical in CCD 004 L14506-14537)."""

    ABANDONED = "ABANDONED"
    ALL_TRUNK_BUSY = "ALL_TRUNK_BUSY"
    BUSY = "BUSY"
    CLEARED = "CLEARED"
    PARTICIPANT_LEFT = "PARTICIPANT_LEFT"
    CONFERENCED = "CONFERENCED"
    INVALID_NUMBER = "INVALID_NUMBER"
    DESTINATION_NOT_OBTAINABLE = "DESTINATION_NOT_OBTAINABLE"
    DO_NOT_DISTURB = "DO_NOT_DISTURB"
    FORWARDED = "FORWARDED"
    NOT_ANSWERED = "NOT_ANSWERED"
    PICKED_UP = "PICKED_UP"
    PARKED = "PARKED"
    REDIRECTED = "REDIRECTED"
    OVERFLOWN = "OVERFLOWN"
    TRANSFERRED = "TRANSFERRED"
    CAMP_ON = "CAMP_ON"
    UNKNOWN = "UNKNOWN"
    PICKED_UP_TANDEM = "PICKED_UP_TANDEM"
    CALL_BACK = "CALL_BACK"
    RECALL = "RECALL"
    DISTRIBUTED = "DISTRIBUTED"
    ACD_ENTER_DISTRIBUTION = "ACD_ENTER_DISTRIBUTION"
    RESOURCES_NOT_AVAILABLE = "RESOURCES_NOT_AVAILABLE"
    SUPERVISOR_LISTENING = "SUPERVISOR_LISTENING"
    SUPERVISOR_INTRUSION = "SUPERVISOR_INTRUSION"
    SUPERVISOR_RESTRICT_INTRUSION = "SUPERVISOR_RESTRICT_INTRUSION"
    NO_AVAILABLE_AGENT = "NO_AVAILABLE_AGENT"
    LOCKOUT = "LOCKOUT"


class PilotStatus(enum.StrEnum):
    """Detailed pilot status (004 L6205-6215, L14297-14307)."""

    OPEN = "OPEN"
    BLOCKED = "BLOCKED"
    BLOCKED_ON_RULE = "BLOCKED_ON_RULE"
    BLOCKED_ON_BLOCKED_RULE = "BLOCKED_ON_BLOCKED_RULE"
    GENERAL_FORWARDING = "GENERAL_FORWARDING"
    GENERAL_FORWARDING_ON_RULE = "GENERAL_FORWARDING_ON_RULE"
    BLOCKED_ON_GENERAL_FORWARDING_RULE = "BLOCKED_ON_GENERAL_FORWARDING_RULE"
    OTHER = "OTHER"


class ServiceState(enum.StrEnum):
    """Pilot / queue / processing-group service state (004 L15658-15664, L14333-14339)."""

    CLOSED = "Closed"
    OPENED = "Opened"
    BLOCKED = "Blocked"
    UNKNOWN = "unknown"


CallCauseStr = Annotated[str, open_enum(CallCause)]
PilotStatusStr = Annotated[str, open_enum(PilotStatus)]
ServiceStateStr = Annotated[str, open_enum(ServiceState)]


class TrunkIdentification(O2GModel):
    """Trunk of an external call (004 L6475-6482, L14626-14634)."""

    networkTimeslot: int | None = None
    trunkNeqt: list[int] | None = None


def closed_values(name: str, values: str) -> type[enum.StrEnum]:
    """A StrEnum of the space-separated ``values`` (member name = wire value), for short enums."""
    return enum.StrEnum(name, {v: v for v in values.split()})  # type: ignore[return-value]


# -- REST errors (004 L364-557) ------------------------------------------------------------------


class RoutingErrorInfo(O2GModel):
    """Extra details of a routing service error (004 L439-451)."""

    errorType: str | None = None
    destinationType: str | None = None
    errorCause: str | None = None
    message: str | None = None


class TelephonyErrorInfo(O2GModel):
    """Extra details of a telephony service error (004 L499-509)."""

    errorType: str | None = None
    errorCause: str | None = None
    message: str | None = None


class UserPreferencesErrorInfo(O2GModel):
    """Extra details of a user-preferences error (004 L545-549)."""

    errorType: str | None = None
    parameter: str | None = None


class RestErrorInfo(O2GModel):
    """The body of every O2G error response (004 L364-398); every field is optional.

    ``httpStatus`` is declared ``int`` but the seed's examples send Spring names
    (``"FORBIDDEN"``), so both are accepted.
    """

    httpStatus: int | str | None = None
    code: int | None = None
    helpMessage: str | None = None
    type: str | None = None
    innerMessage: str | None = None
    canRetry: bool | None = None
    routing: RoutingErrorInfo | None = None
    telephony: TelephonyErrorInfo | None = None
    userPreferences: UserPreferencesErrorInfo | None = None

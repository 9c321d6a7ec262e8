"""Typed Alvaria responses (every field of seed 003's schemas) and the event payload models.

Rules:

1. Every field the seed documents is typed; every data-query field is optional ("Required: false"
   throughout, 003 L374-693); presence's fields are typed as the schema says but kept optional too,
   because the seed's own examples break its schema (``ehubSessionId`` is an integer there).
2. Unknown vendor fields are allowed and kept (``extra="allow"``): the Kafka value is the raw row.
   They are deviations all the same (tolerant reading, :mod:`streamd.tolerant`): :data:`ROW_READERS`
   reads each row against the strict twin of its model, which lists them with every other
   deviating path.
3. Enumerations (``stateId``, ``interactionTypeId``, ``channelTypeId``...) are *open* strings: the
   seed's example already uses values outside its enum (``InboundEmail``, ``email``).
4. An empty string in a date-time field means "none" (e.g. no interaction waiting); it is no
   deviation, and the published schema allows it. A number there is a deviation (pydantic would
   read it as epoch seconds or milliseconds, depending on its size): it is kept as received.
5. A published row is the row as received, with unambiguous coercions applied (``"5"`` -> ``5``).
   It conforms to its row model unless its record carries a ``streamd_deviations`` header; then
   it may differ from the model at exactly the listed paths (``$.row.stateDur``), where it keeps
   the value as received. The event schema says so: ``row`` is the row model or, for such a
   record, any JSON object.
6. :data:`EVENT_MODELS` maps each vendor ce_type to the model of its Kafka value, for
   ``streamd schema --events``. ce_types are ``alvaria.{query}.{RowAdded|RowChanged|RowRemoved|Row}``;
   ``Row`` is a snapshot row (``streamd_snapshot=true``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from streamd.tolerant import Reader


def _date_time_text(value: Any) -> Any:
    """``""`` -> None; a date-time must be text (a number's unit, seconds or ms, is ambiguous)."""
    if value == "":
        return None
    if isinstance(value, int | float):  # bool too
        raise ValueError("a date-time is an ISO-8601 string, not a number")
    return value


def _to_str(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


DateTime = Annotated[
    datetime | None,
    BeforeValidator(_date_time_text),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"const": ""}, {"type": "null"}]}),
]
"""An ISO-8601 date-time; ``""`` and null are None (and are published as received)."""


class VendorModel(BaseModel):
    """Base of every Alvaria payload model: unknown fields are kept, nothing is frozen."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ListActivity(VendorModel):
    """``CollectionListActivityResponse``: one contact list's dialler statistics (003 L374-399)."""

    kind: str | None = None
    contactList: str | None = Field(None, description="Name of the contact list.")
    recordsAvailable: int | None = Field(None, description="Records available to dial (dynamic list).")
    recordsAttempted: int | None = Field(None, description="Records dialled at least once.")
    recordsInActive: int | None = Field(None, description="Records that are with the dialler.")
    callsBusy: int | None = Field(None, description="Records that must be re-attempted.")
    passcountPenetration: int | None = Field(
        None, description="% of records dialled at least once (dynamic)."
    )
    passcountSaturation: int | None = Field(None, description="Attempts / records attempted, % (dynamic).")
    listPenetration: int | None = Field(None, description="% of records dialled at least once (static).")
    listSaturation: int | None = Field(None, description="Attempts / records attempted, % (static).")


class TeamActivityRow(VendorModel):
    """``teamActivityRows``: one team's agent-state counters (003 L426-459)."""

    teamId: str | None = None
    teamName: str | None = None
    notReadyCount: int | None = None
    parkCount: int | None = None
    parkWarningCount: int | None = None
    idleCount: int | None = None
    pendingActiveCount: int | None = None
    activeCount: int | None = None
    wrapCount: int | None = None
    wrapWarningCount: int | None = None
    multiLineCount: int | None = None
    holdCount: int | None = None
    previewCount: int | None = None


class UserActivityRow(VendorModel):
    """``userActivityRow``: one agent's current state within one team (003 L490-562)."""

    userId: str | None = None
    teamId: str | None = None
    preferredName: str | None = None
    teamName: str | None = None
    signOnTime: DateTime = None
    stateId: str | None = Field(None, description="Open enum: idle, active, notready, wrap, ... (003 L526).")
    stateName: str | None = None
    stateStartTime: DateTime = None
    reasonId: str | None = None
    reasonName: str | None = None
    interactionCount: int | None = None
    signOnTimeLocal: DateTime = None
    stateStartTimeLocal: DateTime = None
    stateDur: int | None = Field(None, description="Seconds in the current state (ticks; not diffed).")
    signOnDur: int | None = Field(None, description="Seconds since sign-on (ticks; not diffed).")


class ChannelActivityRow(VendorModel):
    """``channelActivityRow``: one worktype x interaction type x channel's counters (003 L599-693)."""

    interactionTypeId: str | None = None
    channelTypeId: str | None = None
    workTypeId: str | None = None
    interactionTypeName: str | None = None
    channelTypeName: str | None = None
    workTypeName: str | None = None
    dialCount: int | None = None
    activeCount: int | None = None
    queueCount: int | None = None
    selfServiceCount: int | None = None
    previewCount: int | None = None
    holdCount: int | None = None
    inactiveCount: int | None = None
    wrapCount: int | None = None
    ringCount: int | None = None
    longestWaitingQueueTime: DateTime = None
    selfServiceDur: int | None = None
    queueDur: int | None = None
    activeDur: int | None = None
    previewDur: int | None = None
    maxQueueDur: int | None = None


class PresenceUser(VendorModel):
    """``userRow`` of presence: one logged-on user (003 L744-761)."""

    userId: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    ehubSessionId: Annotated[
        str | None,
        BeforeValidator(_to_str),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
    ] = Field(
        None,
        description="Session id; the schema says string, the example sends an integer (published as sent).",
    )
    emailAddress: str | None = Field(None, description="In both examples, missing from the property table.")


class QueryDataList(VendorModel):
    """The ``via#queryDataList`` wrapper of team/user/channel activity."""

    kind: str | None = None
    totalItems: int | None = Field(None, description="Not always len(rows) (003 L118).")
    rows: list[dict[str, Any]] = Field(default_factory=list)


class UsersCollection(VendorModel):
    """``UsersCollection`` (presence, 003 L726-743)."""

    kind: str | None = None
    users: list[dict[str, Any]] = Field(default_factory=list)
    totalItems: int | None = None


class ErrorResponse(VendorModel):
    """``ErrorResponse`` (``error``) and the unreferenced ``ErrorResponseObj`` (``code``,
    ``message``, ``errors``; 003 L694-725) in one lenient model, plus OAuth2's
    ``error_description`` from the token endpoint."""

    error: str | None = None
    code: int | str | None = None
    message: str | None = None
    errors: list[Any] | str | None = Field(
        None, description="ErrorResponseItem objects {scope, reason, message}; the example prints a string."
    )
    error_description: str | None = None


def error_detail(content: bytes) -> str:
    """What Alvaria said about a refused request, for the error line: `` (error "Bad Request",
    code 5031, message "...")``; ``""`` when the body says nothing usable (no body, not JSON, no
    known field). Never raises."""
    try:
        answer = ErrorResponse.model_validate_json(content)
    except ValueError:  # not JSON, not an object, or fields of another type: the raw text says more
        text = content[:200].decode(errors="replace").strip()
        return f" ({text})" if text else ""
    parts = [f"{name} {value!r}" for name, value in _said(answer) if value not in (None, "")]
    return f" ({', '.join(parts)})" if parts else ""


def _said(answer: ErrorResponse) -> list[tuple[str, Any]]:
    said: list[tuple[str, Any]] = [
        ("error", answer.error),
        ("code", answer.code),
        ("message", answer.message),
        ("description", answer.error_description),
    ]
    items = answer.errors if isinstance(answer.errors, list) else []
    for item in items[:3]:
        if isinstance(item, dict):
            text = " ".join(str(item[k]) for k in ("scope", "reason", "message") if item.get(k))
            said.append(("detail", text[:200] or None))
    return said


ROW_MODELS: dict[str, type[VendorModel]] = {
    "listActivity": ListActivity,
    "teamActivity": TeamActivityRow,
    "userActivity": UserActivityRow,
    "channelActivity": ChannelActivityRow,
    "presence": PresenceUser,
}
"""Query name -> model of one row."""

ROW_READERS: dict[str, Reader[VendorModel]] = {query: Reader(model) for query, model in ROW_MODELS.items()}
"""Query name -> the tolerant reader of one row (its ``check`` is the diff's ``check``)."""

RowT = TypeVar("RowT", bound=VendorModel)

Change = Literal["added", "changed", "removed", "unchanged"]


class RowEvent(BaseModel, Generic[RowT]):
    """The Kafka value of every ``alvaria.{query}.*`` event (topic ``{prefix}alvaria.{query}``)."""

    query: str = Field(description="The query name, e.g. userActivity.")
    scope: str | None = Field(description="The teamId / workTypeId / contactList polled; null for org-wide.")
    key: str = Field(description="The row key, parts joined by ':' (also the Kafka key after '{source}:').")
    change: Change = Field(
        description="added / changed / removed since the previous poll; unchanged in snapshots."
    )
    changed: list[str] = Field(description="Fields whose value changed (ticking *Dur fields never count).")
    previous: dict[str, Any] = Field(description="The previous published value of each changed field.")
    gap_detected: bool = Field(
        description="userActivity: stateStartTime moved but stateId/reasonId did not, so a state was missed."
    )
    observed_at: datetime = Field(description="When streamd received the snapshot.")
    row: RowT | dict[str, Any] = Field(
        union_mode="left_to_right",  # the row model whenever it fits, else the object as received
        description=(
            "The vendor row as received, with unambiguous coercions applied (removed: the last row "
            "seen). It conforms to the row model unless the record's streamd_deviations header lists "
            "paths under $.row: there it keeps the value as received."
        ),
    )


class AlvariaListActivityEvent(RowEvent[ListActivity]):
    """Kafka value of ``alvaria.listActivity.*`` (key ``{source}:{contactList}``)."""


class AlvariaTeamActivityEvent(RowEvent[TeamActivityRow]):
    """Kafka value of ``alvaria.teamActivity.*`` (key ``{source}:{teamId}``)."""


class AlvariaUserActivityEvent(RowEvent[UserActivityRow]):
    """Kafka value of ``alvaria.userActivity.*`` (key ``{source}:{teamId}:{userId}``)."""


class AlvariaChannelActivityEvent(RowEvent[ChannelActivityRow]):
    """Kafka value of ``alvaria.channelActivity.*``.

    Key ``{source}:{workTypeId}:{interactionTypeId}:{channelTypeId}``.
    """


class AlvariaPresenceEvent(RowEvent[PresenceUser]):
    """Kafka value of ``alvaria.presence.*`` (key ``{source}:{userId}``)."""


QUERY_EVENT_MODELS: dict[str, type[RowEvent[Any]]] = {
    "listActivity": AlvariaListActivityEvent,
    "teamActivity": AlvariaTeamActivityEvent,
    "userActivity": AlvariaUserActivityEvent,
    "channelActivity": AlvariaChannelActivityEvent,
    "presence": AlvariaPresenceEvent,
}


def _event_models() -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for query, model in QUERY_EVENT_MODELS.items():
        for name in ("RowAdded", "RowChanged", "RowRemoved", "Row"):
            models[f"alvaria.{query}.{name}"] = model
    return models


EVENT_MODELS: dict[str, type[BaseModel]] = _event_models()
"""ce_type -> model of the Kafka value, for ``streamd schema --events``."""

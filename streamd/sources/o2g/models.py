"""The O2G event catalog: every event name -> its package, model and Kafka key.

Rules:

1. :data:`EVENTS` is the one registry: ``eventName`` -> :class:`EventSpec` (package, pydantic
   model, key function). The package names are the seed's subscription packages (004
   L2083-2099); they name the Kafka topic ``o2g.{package}``.
2. Key functions read the *raw* dict and return the entity whose order matters; they raise
   ``KeyError`` when the key field is absent or not a usable scalar (a non-empty string or a
   number), which makes the event unroutable (a dead letter). They follow following the catalogs' recommendations: the user's login for
   the per-user packages (a call's events stay ordered with the user's other events, and call
   re-referencing keeps one conversation in one partition), the pilot number for ``pilot``,
   ``{objectType}:{number}`` for ``rti``, the node for ``pbxManagement``, the supervisor for
   ``acdstats``, the RSI point for ``rsi``, one constant key for ``system``.
3. ``OnUserInfoChanged`` belongs to both ``user`` and ``userManagement``; it is published on
   ``o2g.user`` whichever subscription delivered it (its payload does not say).
4. :data:`EVENT_MODELS` maps every CloudEvents type O2G events can get
   (``o2g.{package}.{EventName}``, the snapshot types and the ``UnknownO2GEvent`` fallbacks) to
   its model, for ``streamd schema --events``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from . import models_callcenter as cc
from . import models_other as other
from . import models_telephony as tel
from .models_common import O2GEvent, O2GModel

__all__ = ["EVENTS", "EVENT_MODELS", "PACKAGES", "EventSpec", "UnknownO2GEvent", "guess_package"]

KeyFunction = Callable[[dict[str, Any]], str]


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How one O2G event is typed and routed."""

    package: str
    model: type[O2GModel]
    key: KeyFunction


class UnknownO2GEvent(O2GEvent):
    """An event whose ``eventName`` is not in the catalog: kept whole, typed only by its name."""


def scalar(obj: dict[str, Any], name: str) -> str:
    """``obj[name]`` as key text; ``KeyError`` unless it is a non-empty string or a number."""
    value = obj.get(name)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise KeyError(name)


def _login(obj: dict[str, Any]) -> str:
    return scalar(obj, "loginName")


def _user_login(obj: dict[str, Any]) -> str:
    user = obj.get("user")
    login = user.get("loginName") if isinstance(user, dict) else None
    return str(login or obj.get("loginName") or "unknown-user")


def _field(name: str) -> KeyFunction:
    def key(obj: dict[str, Any]) -> str:
        return scalar(obj, name)

    return key


def _rti(object_type: str) -> KeyFunction:
    def key(obj: dict[str, Any]) -> str:
        return f"{object_type}:{scalar(obj, 'number')}"

    return key


def _system(_obj: dict[str, Any]) -> str:
    return "system"


def _rsi(obj: dict[str, Any]) -> str:
    return str(obj.get("rsiPoint") or obj.get("callRef") or "rsi")


def _specs(package: str, key: KeyFunction, *models: type[O2GEvent]) -> dict[str, EventSpec]:
    return {m.__name__: EventSpec(package, m, key) for m in models}


EVENTS: Final[dict[str, EventSpec]] = {
    **_specs(
        "telephony",
        _login,
        tel.OnCallCreated,
        tel.OnCallModified,
        tel.OnCallRemoved,
        tel.OnUserStateModified,
        tel.OnDeviceStateModified,
        tel.OnTelephonyState,
        tel.OnDynamicStateChanged,
    ),
    **_specs("eventSummary", _login, other.OnEventSummaryUpdated),
    **_specs(
        "unifiedComLog",
        _login,
        other.OnComRecordCreated,
        other.OnComRecordModified,
        other.OnComRecordsDeleted,
        other.OnComRecordsAck,
        other.OnComRecordsUnAck,
    ),
    **_specs("user", _user_login, other.OnUserInfoChanged),
    **_specs("userManagement", _user_login, other.OnUserCreated, other.OnUserDeleted),
    **_specs("routingManagement", _login, other.OnRoutingStateChanged),
    **_specs(
        "agent",
        _login,
        cc.OnAgentStateChanged,
        cc.OnSupervisorHelpRequested,
        cc.OnSupervisorHelpCancelled,
        cc.OnAgentSkillChanged,
    ),
    **_specs(
        "rsi",
        _rsi,
        other.OnRouteRequest,
        other.OnRouteEnd,
        other.OnToneGeneratedStart,
        other.OnToneGeneratedStop,
        other.OnDigitCollected,
    ),
    **_specs("pilot", _field("pilot"), cc.OnPilotCallCreated, cc.OnPilotCallQueued, cc.OnPilotCallRemoved),
    **_specs(
        "system",
        _system,
        other.OnLicenseExpiration,
        other.OnPbxLoaded,
        other.OnCtiLinkDown,
        other.OnCtiLinkUp,
        other.OnServerStart,
    ),
    **_specs(
        "pbxManagement",
        _field("nodeId"),
        other.OnPbxObjectInstanceCreated,
        other.OnPbxObjectInstanceModified,
        other.OnPbxObjectInstanceDeleted,
    ),
    **_specs("rti", _rti("agent"), cc.OnAgentRtiChanged),
    **_specs("rti", _rti("pilot"), cc.OnPilotRtiChanged),
    **_specs("rti", _rti("pgAgent"), cc.OnPGAgentRtiChanged),
    **_specs("rti", _rti("queue"), cc.OnQueueRtiChanged),
    **_specs("rti", _rti("pgOther"), cc.OnPGOtherRtiChanged),
    **_specs("acdstats", _field("supervisor"), cc.OnAcdStatsProgress),
}
"""eventName -> package, model, key function; every event of both catalogs."""

PACKAGES: Final = tuple(dict.fromkeys(spec.package for spec in EVENTS.values()))
"""Every subscription package, in the seed's order."""

UNKNOWN_PACKAGE: Final = "unknown"

# Name prefixes -> package, for events missing from the catalog (e.g. the seed's
# "OnRtiPilotChanged" spellings, "OnPreferencesChanged"). First match wins.
_PREFIXES: Final = (
    ("OnRti", "rti"),
    ("OnPilot", "pilot"),
    ("OnAgent", "agent"),
    ("OnSupervisor", "agent"),
    ("OnComRecord", "unifiedComLog"),
    ("OnCall", "telephony"),
    ("OnDevice", "telephony"),
    ("OnTelephony", "telephony"),
    ("OnEventSummary", "eventSummary"),
    ("OnPbxObject", "pbxManagement"),
    ("OnUser", "user"),
    ("OnPreferences", "user"),
    ("OnRouting", "routingManagement"),
    ("OnRoute", "rsi"),
    ("OnTone", "rsi"),
    ("OnDigit", "rsi"),
    ("OnAcdStats", "acdstats"),
    ("OnCtiLink", "system"),
    ("OnPbx", "system"),
    ("OnLicense", "system"),
    ("OnServer", "system"),
)


def guess_package(event_name: str) -> str:
    """The package an unknown event most likely belongs to, else ``"unknown"``."""
    if event_name.endswith("RtiChanged"):
        return "rti"
    for prefix, package in _PREFIXES:
        if event_name.startswith(prefix):
            return package
    return UNKNOWN_PACKAGE


SNAPSHOT_MODELS: Final[dict[str, type[O2GModel]]] = {"o2g.pilot.PilotSnapshot": cc.PilotSnapshot}

EVENT_MODELS: Final[dict[str, type[O2GModel]]] = {
    **{f"o2g.{spec.package}.{name}": spec.model for name, spec in EVENTS.items()},
    **SNAPSHOT_MODELS,
    **{f"o2g.{package}.UnknownO2GEvent": UnknownO2GEvent for package in (*PACKAGES, UNKNOWN_PACKAGE)},
}
"""CloudEvents type -> model, for ``streamd schema --events``."""

"""What the O2G guide (004) says, stated here for the simulator, never taken from the product.

Rules:

1. The event names of each subscription package, the fields that route an event, the error
   bodies and Tomcat's page are written out from the guide: a wrong name here or in the product
   shows up as a failing test (tests/unit/test_o2g_sim_guide.py).
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from starlette.responses import Response

from streamd.sim.deviate import Guide

KEEPALIVE: Final = b'{"eventName":"OnChannelInformation","text":"keepalive"}\n'
"""What an idle chunk channel writes to keep the connection open."""

GUIDE_PACKAGES: dict[str, tuple[str, ...]] = {
    "telephony": ("OnCallCreated OnCallModified OnCallRemoved OnUserStateModified OnDeviceStateModified "
                  "OnTelephonyState OnDynamicStateChanged",),
    "eventSummary": ("OnEventSummaryUpdated",),
    "unifiedComLog": ("OnComRecordCreated OnComRecordModified OnComRecordsDeleted OnComRecordsAck OnComRecordsUnAck",),
    "user": ("OnUserInfoChanged",),
    "userManagement": ("OnUserCreated OnUserDeleted OnUserInfoChanged",),
    "routingManagement": ("OnRoutingStateChanged",),
    "agent": ("OnAgentStateChanged OnSupervisorHelpRequested OnSupervisorHelpCancelled OnAgentSkillChanged",),
    "rsi": ("OnRouteRequest OnRouteEnd OnToneGeneratedStart OnToneGeneratedStop OnDigitCollected",),
    "pilot": ("OnPilotCallCreated OnPilotCallQueued OnPilotCallRemoved",),
    "system": ("OnLicenseExpiration OnPbxLoaded OnCtiLinkDown OnCtiLinkUp",),
    "pbxManagement": ("OnPbxObjectInstanceCreated OnPbxObjectInstanceModified OnPbxObjectInstanceDeleted",),
    "rti": ("OnAgentRtiChanged OnPilotRtiChanged OnPGAgentRtiChanged OnQueueRtiChanged OnPGOtherRtiChanged",),
    "acdstats": ("OnAcdStatsProgress",),
}  # fmt: skip
"""The events of each subscription package as the O2G guide lists them (004 L2083-2099 and each
package's event table), stated here, not taken from the product: a wrong name in either shows up
as a failing test (tests/unit/test_o2g_sim_guide.py)."""
PACKAGE_EVENTS: dict[str, tuple[str, ...]] = {
    package: tuple(name for text in texts for name in text.split())
    for package, texts in GUIDE_PACKAGES.items()
}
EVENT_PACKAGES: dict[str, list[str]] = {}
for _package, _events in PACKAGE_EVENTS.items():
    for _event in _events:
        EVENT_PACKAGES.setdefault(_event, []).append(_package)
ID_FIELD: Final = {"pilot": "pilot", "rti": "number", "rsi": "rsiPoint"}
NUMBERED: Final = frozenset({"pilot", "rsi"})  # ids are pilot / RSI numbers: "*" (all users) matches none
SERVER_START: Final = "OnServerStart"

GUIDE = Guide(
    routing=frozenset({"eventName", "loginName", "pilot", "number", "nodeId", "supervisor", "rsiPoint"}),
    required=frozenset({"callRef", "deviceId", "mainState", "id", "main", "participantId", "caller"}),
    enums=frozenset({"mainState", "subState", "cause", "main"}),
)
"""What the O2G guide (004) says of the simulated traffic's events, for :func:`deviate`: the
fields that route an event (its name, its key), the ones it marks required, the enumerations."""

TOMCAT_404: Final = (
    b'<!doctype html><html lang="en"><head><title>HTTP Status 404 \xe2\x80\x93 Not Found</title></head>'
    b"<body><h1>HTTP Status 404 \xe2\x80\x93 Not Found</h1></body></html>"
)
"""What Tomcat answers for the O2G paths while the webapp is still deploying: no RestErrorInfo."""
ERRORS: Final = {
    "NOT_READY": (1000, True, "The server is not yet available. Please retry later."),
    "INVALID_SESSION": (1001, True, "No valid session found for the given identifier."),
    "NOT_ALLOWED": (1002, False, "Not allowed: insufficient rights or bad credential."),
    "NOT_FOUND": (1003, True, "Missing or bad parameter sent by a request on a service."),
    "SERVER_PROBLEM": (1007, False, "Server general problem. Please contact the installer."),
}
"""The ``RestErrorInfo`` of each error type the simulator answers: code, canRetry, helpMessage."""


def error_body(status: int, kind: str) -> bytes:
    """The ``RestErrorInfo`` JSON body of an error of type ``kind``."""
    code, can_retry, message = ERRORS.get(kind, ERRORS["SERVER_PROBLEM"])
    return orjson.dumps(
        {"httpStatus": status, "code": code, "helpMessage": message, "type": kind, "canRetry": can_retry}
    )


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error(status: int, kind: str) -> Response:
    """An error answer with its ``RestErrorInfo`` body."""
    return Response(error_body(status, kind), status_code=status, media_type="application/json")


def tomcat_404() -> Response:
    """Tomcat's HTML 404 (the webapp is not deployed)."""
    return Response(TOMCAT_404, status_code=404, media_type="text/html;charset=utf-8")

"""What seed 003 says, as far as the Alvaria simulator needs it (stated here, never taken from the
product: a field name the product gets wrong must fail a test)."""

from __future__ import annotations

QUERIES = ("listActivity", "teamActivity", "userActivity", "channelActivity", "presence")
SCOPE_PARAMS = {
    "listActivity": "contactList",
    "teamActivity": "teamId",
    "userActivity": "teamId",
    "channelActivity": "workTypeId",
}
TOKEN_PATH = "/tokenservice/oauth2/access_token"

TEAM_COUNT_FIELDS = (
    "notReadyCount",
    "parkCount",
    "parkWarningCount",
    "idleCount",
    "pendingActiveCount",
    "activeCount",
    "wrapCount",
    "wrapWarningCount",
    "multiLineCount",
    "holdCount",
    "previewCount",
)
"""``teamActivityRows``' counters as seed 003 lists them (L426-459)."""

GUIDE_FIELDS: dict[str, dict[str, str]] = {
    "listActivity": {
        "kind": "str",
        "contactList": "str",
        **dict.fromkeys(
            (
                "recordsAvailable",
                "recordsAttempted",
                "recordsInActive",
                "callsBusy",
                "passcountPenetration",
                "passcountSaturation",
                "listPenetration",
                "listSaturation",
            ),
            "int",
        ),
    },
    "teamActivity": {"teamId": "str", "teamName": "str", **dict.fromkeys(TEAM_COUNT_FIELDS, "int")},
    "userActivity": {
        "userId": "str",
        "teamId": "str",
        "preferredName": "str",
        "teamName": "str",
        "signOnTime": "datetime",
        "stateId": "str",
        "stateName": "str",
        "stateStartTime": "datetime",
        "reasonId": "str",
        "reasonName": "str",
        "interactionCount": "int",
        "signOnTimeLocal": "datetime",
        "stateStartTimeLocal": "datetime",
        "stateDur": "int",
        "signOnDur": "int",
    },
    "channelActivity": {
        "interactionTypeId": "str",
        "channelTypeId": "str",
        "workTypeId": "str",
        "interactionTypeName": "str",
        "channelTypeName": "str",
        "workTypeName": "str",
        **dict.fromkeys(
            (
                "dialCount",
                "activeCount",
                "queueCount",
                "selfServiceCount",
                "previewCount",
                "holdCount",
                "inactiveCount",
                "wrapCount",
                "ringCount",
            ),
            "int",
        ),
        "longestWaitingQueueTime": "datetime",
        **dict.fromkeys(("selfServiceDur", "queueDur", "activeDur", "previewDur", "maxQueueDur"), "int"),
    },
    "presence": {
        "userId": "str",
        "firstName": "str",
        "lastName": "str",
        "ehubSessionId": "str",
        "emailAddress": "str",
    },
}
"""Query -> field -> ``int`` / ``datetime`` / ``str``: every row field seed 003 documents (L374-761),
stated here from the guide, never taken from the product (a wrong name must fail a test)."""

ROW_KEYS: dict[str, tuple[str, ...]] = {
    "listActivity": ("contactList",),
    "teamActivity": ("teamId",),
    "userActivity": ("teamId", "userId"),
    "channelActivity": ("workTypeId", "interactionTypeId", "channelTypeId"),
    "presence": ("userId",),
}
"""The row identity of each query (spec section 7, the org id left out)."""

SCOPE_FIELDS: dict[str, str] = {
    "listActivity": "contactList",
    "teamActivity": "teamId",
    "userActivity": "teamId",
    "channelActivity": "workTypeId",
}
"""The row field that repeats the polled scope (presence has none)."""

ERROR_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    429: "Throttled",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

STATE_NAMES = {
    "idle": "Idle",
    "active": "Active",
    "wrap": "Wrap",
    "notready": "Not Ready",
    "held": "Held",
    "loggedoff": "Logged Off",
}
TEAM_COUNTERS = {
    "notready": "notReadyCount",
    "park": "parkCount",
    "parkwarning": "parkWarningCount",
    "idle": "idleCount",
    "pendingactive": "pendingActiveCount",
    "active": "activeCount",
    "wrap": "wrapCount",
    "wrapwarning": "wrapWarningCount",
    "held": "holdCount",
    "preview": "previewCount",
}
CHANNELS = (("inboundacd", "voice", "Inbound Acd", "Voice"), ("inboundchat", "chat", "Inbound Chat", "Chat"))

ORG_ROOT = "/via/v2/organizations/{org}"
QUERY_PATH = ORG_ROOT + "/reporting/queries/{query}/data"
PRESENCE_PATH = ORG_ROOT + "/reporting/presence/users/data"
TEAMS_PATH = ORG_ROOT + "/provisioning/teams"
"""Where the guide says team ids come from (003 L111); the endpoint itself is not documented."""
WORK_TYPES_PATH = ORG_ROOT + "/provisioning/workTypes"
"""Where the guide says worktype ids come from (003 L256); not documented either."""
LISTS_PATH = ORG_ROOT + "/campaign/lists"
"""``GET /campaign/lists`` (003 L49: a collection whose ``contactLists[x].name`` is the list name;
the guide gives no base path, so it is served under the organisation root)."""

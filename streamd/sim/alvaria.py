"""A real Alvaria Cloud reporting server on loopback: OAuth2 token endpoint plus the five queries.

Rules:

1. :class:`AlvariaWorld` is the pure data model (N agents in teams, worktypes, contact lists); it
   changes only in :meth:`AlvariaWorld.step` (random, seeded, driven by the injected clock) or
   through its explicit mutators, so tests can script exact snapshots.
2. :class:`AlvariaSimulator` serves it with starlette + uvicorn on ``127.0.0.1:0``
   (``async with AlvariaSimulator() as sim: sim.url``). Paths and bodies follow seed 003: token at
   ``/tokenservice/oauth2/access_token``, queries under ``/via/v2/organizations/{orgId}``.
3. It enforces what the real API requires: a valid, unexpired bearer token (401 otherwise; presence
   answers 401 without a body), the ``x-api-key`` (403 otherwise), the scope parameters (400).
4. Faults are scripted per query (or ``"*"``, or ``"token"``), and per scope, with
   :meth:`AlvariaSimulator.fail`: 429 with ``Retry-After`` (seconds or HTTP date), 408, 503, 5xx,
   slow answers, each with the guide's error body (``ErrorResponse`` / ``ErrorResponseObj``);
   :meth:`~AlvariaSimulator.outage` keeps one scope failing until it is lifted. Tokens can be
   expired or revoked at any time, :meth:`~AlvariaSimulator.refuse_client` makes the token
   endpoint refuse the client for good (401 ``invalid_client``) until it is switched back, and
   ``token_latency`` makes it slow. Every request lands in :attr:`AlvariaSimulator.log` with a
   timestamp from the injected clock.
5. ``deviate`` (0..1, default 0) makes that share of the rows of every answer deviate from seed 003
   the way real servers do (:func:`deviate_row`): numbers as text or as ``5.0``, text where a number
   belongs, a number where text belongs, an object or a list for a scalar, a date-time that is not
   one, unknown fields. Key fields are never touched, so every row stays routable. Which rows
   deviate, and how, is a pure function of ``seed``, the query and the row key (deterministic
   whatever the order of requests); :attr:`AlvariaSimulator.deviations` records the JSON paths
   of each deviating row last served. :meth:`~AlvariaSimulator.omit` serves rows without some
   fields (every data-query field is optional in the guide, the row keys too).
6. The world follows the guide where it matters to a client: a user can be associated with several
   worktypes (presence per ``workTypeId`` lists them under each), and can lose one association
   while staying logged on (:meth:`AlvariaWorld.unassign`).
7. The simulator states the guide's fields itself (:data:`GUIDE_FIELDS`, :data:`ROW_KEYS`) and never
   imports the product's tables, so a field name the product gets wrong fails a test.
"""

from __future__ import annotations

import base64
import itertools
import math
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote

import anyio
import orjson
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.sim.server import serving

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
FIRST = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo", "Kim", "Lea")
LAST = ("Smith", "Okafor", "Nguyen", "Garcia", "Kowalski", "Rossi", "Haddad", "Ito")


def iso(epoch: float) -> str:
    """``yyyy-MM-ddTHH:mm:ssZ`` as the seed prints UTC times."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Agent:
    """One simulated agent."""

    user_id: str
    first: str
    last: str
    team_id: str
    work_type_id: str
    """The worktype whose channelActivity counts this agent's interactions."""
    work_types: set[str] = field(default_factory=set)
    """Every worktype the agent is associated with (presence ``workTypeId``); one or more."""
    state_id: str = "idle"
    reason_id: str = ""
    state_start: float = 0.0
    sign_on: float = 0.0
    session_id: int = 0
    logged_on: bool = True
    interactions: int = 0


@dataclass(slots=True)
class Queue:
    """One worktype x channel's waiting interactions."""

    waiting: int = 0
    oldest: float = 0.0
    self_service: int = 0


class AlvariaWorld:
    """The simulated contact centre behind the queries (pure; time comes from the caller)."""

    def __init__(
        self,
        *,
        agents: int = 20,
        teams: int = 2,
        work_types: int = 2,
        contact_lists: tuple[str, ...] = ("Leads", "Renewals"),
        seed: int = 1,
        now: float = 0.0,
        mean_state_seconds: float = 20.0,
    ) -> None:
        self.rng = random.Random(seed)
        self.team_ids = [f"team{t + 1}" for t in range(teams)]
        self.team_names = {t: f"Team {i + 1}" for i, t in enumerate(self.team_ids)}
        self.work_type_ids = [f"wt{w + 1}.104" for w in range(work_types)]
        self.contact_lists = list(contact_lists)
        self.mean_state_seconds = mean_state_seconds
        self.last_step = now
        self._sessions = itertools.count(2323)
        self.agents: dict[str, Agent] = {}
        for i in range(agents):
            self.add_agent(f"agent{i + 1:05d}", now=now, index=i)
        self.queues = {(w, c[0]): Queue() for w in self.work_type_ids for c in CHANNELS}
        self.lists = {name: [1000 * (i + 1), 0, 0, 0] for i, name in enumerate(self.contact_lists)}

    def add_agent(
        self, user_id: str, *, now: float, index: int | None = None, team_id: str | None = None
    ) -> Agent:
        """Sign a new agent on (idle)."""
        i = len(self.agents) if index is None else index
        team = team_id or self.team_ids[i % len(self.team_ids)]
        work_types = self.work_type_ids
        home = work_types[i % len(work_types)]
        agent = Agent(
            user_id=user_id,
            first=FIRST[i % len(FIRST)],
            last=LAST[(i // len(FIRST)) % len(LAST)],
            team_id=team,
            work_type_id=home,
            work_types={home},
            state_start=now,
            sign_on=now,
            session_id=next(self._sessions),
        )
        if i % 3 == 0:  # a third of the agents also serve the next worktype, as real users do
            agent.work_types.add(work_types[(i + 1) % len(work_types)])
        self.agents[user_id] = agent
        return agent

    def assign(self, user_id: str, work_type_id: str) -> None:
        """Associate an agent with one more worktype (it appears on that worktype's presence list)."""
        self.agents[user_id].work_types.add(work_type_id)

    def unassign(self, user_id: str, work_type_id: str) -> None:
        """Drop an agent's association with one worktype; it stays logged on for the others."""
        self.agents[user_id].work_types.discard(work_type_id)

    def set_state(self, user_id: str, state_id: str, *, now: float, reason_id: str = "") -> None:
        """Move one agent to ``state_id`` (``loggedoff`` also removes them from presence)."""
        agent = self.agents[user_id]
        agent.state_id, agent.reason_id, agent.state_start = state_id, reason_id, now
        agent.interactions = 1 if state_id in ("active", "held", "wrap") else 0
        if state_id == "loggedoff":
            agent.logged_on = False
        elif not agent.logged_on:
            agent.logged_on, agent.sign_on, agent.session_id = True, now, next(self._sessions)

    def remove_agent(self, user_id: str) -> None:
        """Drop an agent entirely (gone from every query)."""
        del self.agents[user_id]

    def step(self, now: float) -> None:
        """Advance the world to ``now``: agents change state, queues and lists move."""
        dt = max(0.0, now - self.last_step)
        self.last_step = now
        if dt == 0:
            return
        p = 1.0 - math.exp(-dt / self.mean_state_seconds)
        for agent in self.agents.values():
            if self.rng.random() < p:
                self._transition(agent, now)
        for queue in self.queues.values():
            queue.waiting = max(0, queue.waiting + self.rng.choice((-1, 0, 0, 1)))
            queue.self_service = max(0, queue.self_service + self.rng.choice((-1, 0, 1)))
            if queue.waiting == 0:
                queue.oldest = 0.0
            elif queue.oldest == 0.0:
                queue.oldest = now - self.rng.uniform(0, 30)
        for counters in self.lists.values():
            dialled = self.rng.randint(0, 3)
            counters[1] += dialled
            counters[2] = self.rng.randint(0, 20)
            counters[3] = self.rng.randint(0, 5)

    def _transition(self, agent: Agent, now: float) -> None:
        nxt = {
            "idle": ("active", "active", "notready"),
            "active": ("wrap", "held"),
            "held": ("active",),
            "wrap": ("idle",),
            "notready": ("idle", "idle", "loggedoff"),
            "loggedoff": ("idle",),
        }
        state = self.rng.choice(nxt.get(agent.state_id, ("idle",)))
        reason = self.rng.choice(("break", "lunch", "training")) if state == "notready" else ""
        self.set_state(agent.user_id, state, now=now, reason_id=reason)

    def user_rows(self, team_id: str, now: float, tz: str = "Z") -> list[dict[str, Any]]:
        """userActivity rows of one team."""
        return [self._user_row(a, now) for a in self.agents.values() if a.team_id == team_id and a.logged_on]

    def _user_row(self, a: Agent, now: float) -> dict[str, Any]:
        return {
            "userId": a.user_id,
            "teamId": a.team_id,
            "preferredName": f"{a.first} {a.last}",
            "teamName": self.team_names.get(a.team_id, a.team_id),
            "signOnTime": iso(a.sign_on),
            "stateId": a.state_id,
            "stateName": STATE_NAMES.get(a.state_id, a.state_id.title()),
            "stateStartTime": iso(a.state_start),
            "reasonId": a.reason_id,
            "reasonName": a.reason_id.title(),
            "interactionCount": a.interactions,
            "signOnTimeLocal": iso(a.sign_on),
            "stateStartTimeLocal": iso(a.state_start),
            "stateDur": int(now - a.state_start),
            "signOnDur": int(now - a.sign_on),
        }

    def team_rows(self, team_id: str) -> list[dict[str, Any]]:
        """teamActivity rows (one per team)."""
        row: dict[str, Any] = {"teamId": team_id, "teamName": self.team_names.get(team_id, team_id)}
        row |= dict.fromkeys(TEAM_COUNT_FIELDS, 0)
        for a in self.agents.values():
            if a.team_id == team_id and a.logged_on and a.state_id in TEAM_COUNTERS:
                row[TEAM_COUNTERS[a.state_id]] += 1
        return [row]

    def channel_rows(self, work_type_id: str, now: float) -> list[dict[str, Any]]:
        """channelActivity rows of one worktype (one per interaction type and channel)."""
        rows = []
        for type_id, channel_id, type_name, channel_name in CHANNELS:
            queue = self.queues.get((work_type_id, type_id), Queue())
            mine = [a for a in self.agents.values() if a.work_type_id == work_type_id and a.logged_on]
            busy = sum(1 for a in mine if a.state_id == "active") if channel_id == "voice" else 0
            rows.append(
                {
                    "interactionTypeId": type_id,
                    "channelTypeId": channel_id,
                    "workTypeId": work_type_id,
                    "interactionTypeName": type_name,
                    "channelTypeName": channel_name,
                    "workTypeName": f"Worktype {work_type_id}",
                    "dialCount": 0,
                    "activeCount": busy,
                    "queueCount": queue.waiting,
                    "selfServiceCount": queue.self_service,
                    "previewCount": 0,
                    "holdCount": sum(1 for a in mine if a.state_id == "held") if channel_id == "voice" else 0,
                    "inactiveCount": 0,
                    "wrapCount": sum(1 for a in mine if a.state_id == "wrap") if channel_id == "voice" else 0,
                    "ringCount": 0,
                    "longestWaitingQueueTime": iso(queue.oldest) if queue.waiting else "",
                    "selfServiceDur": queue.self_service * 12,
                    "queueDur": int(queue.waiting * (now - queue.oldest)) if queue.waiting else 0,
                    "activeDur": busy * 60,
                    "previewDur": 0,
                    "maxQueueDur": int(now - queue.oldest) if queue.waiting else 0,
                }
            )
        return rows

    def list_row(self, name: str) -> dict[str, Any]:
        """listActivity's single object for one contact list."""
        total, attempted, active, busy = self.lists[name]
        penetration = min(100, 100 * attempted // max(total, 1))
        return {
            "kind": "via#listActivity",
            "contactList": name,
            "recordsAvailable": max(0, total - attempted),
            "recordsAttempted": attempted,
            "recordsInActive": active,
            "callsBusy": busy,
            "passcountPenetration": penetration,
            "passcountSaturation": min(100, penetration + busy),
            "listPenetration": penetration,
            "listSaturation": min(100, penetration + busy),
        }

    def presence_users(self, work_type_id: str | None = None) -> list[dict[str, Any]]:
        """presence ``users``: every logged-on agent (of one worktype when given)."""
        return [
            {
                "userId": a.user_id,
                "firstName": a.first,
                "lastName": a.last,
                "ehubSessionId": a.session_id,
                "emailAddress": f"{a.user_id}@example.com",
            }
            for a in self.agents.values()
            if a.logged_on and (work_type_id is None or work_type_id in a.work_types)
        ]


def row_key(query: str, row: dict[str, Any], scope: str | None) -> str:
    """The row's identity (:data:`ROW_KEYS`) as ``a:b``; a missing scope field is the polled scope."""
    parts = []
    for name in ROW_KEYS[query]:
        value = row.get(name)
        if value is None or value == "":
            value = scope if name == SCOPE_FIELDS.get(query) and scope is not None else ""
        parts.append(str(value))
    return ":".join(parts)


def _deviant(kind: str, value: Any, rng: random.Random) -> Any:
    """A deviating stand-in for ``value`` of a field documented as ``kind``."""
    if kind == "int":
        return rng.choice(
            (str(value), float(value) if isinstance(value, int) else "1.0", "n/a", {"value": value})
        )
    if kind == "datetime":
        return rng.choice(("soon", {"at": value}, ["2018-02-07T11:29:46Z"]))
    return rng.choice((len(str(value)) + 0.5, [value], {"text": value}))


def deviate_row(
    query: str, row: dict[str, Any], rng: random.Random
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A copy of ``row`` with one to three deviating fields (and maybe an unknown one).

    Returns the copy and the JSON paths that deviate (``$.stateDur``); the key fields of the query
    (:data:`ROW_KEYS`) are never touched.
    """
    types = GUIDE_FIELDS[query]
    keys = set(ROW_KEYS[query])
    candidates = [name for name in row if name in types and name not in keys]
    out = dict(row)
    paths: list[str] = []
    for name in rng.sample(candidates, k=min(len(candidates), rng.randint(1, 3))):
        out[name] = _deviant(types[name], row[name], rng)
        paths.append(f"$.{name}")
    if not paths or rng.random() < 0.5:
        out["vendorExtension"] = {"level": [1, {"deep": True}], "note": None}
        paths.append("$.vendorExtension")
    return out, tuple(paths)


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer instead of the real one.

    Without ``body`` the answer carries the guide's error schema: ``ErrorResponse``
    (``{"error": "Service Unavailable"}``), or ``ErrorResponseObj`` (``{"code", "message",
    "errors"}``) when ``code`` or ``message`` is given.
    """

    status: int
    retry_after: str | None = None
    body: bytes | None = None
    delay: float = 0.0
    code: int | None = None
    message: str | None = None

    def content(self) -> bytes:
        """The answer's body."""
        if self.body is not None:
            return self.body
        if self.code is None and self.message is None:
            return orjson.dumps({"error": ERROR_TEXT.get(self.status, f"HTTP {self.status}")})
        item = {"scope": "reporting", "reason": ERROR_TEXT.get(self.status, ""), "message": self.message}
        return orjson.dumps({"code": self.code, "message": self.message, "errors": [item]})


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request the simulator received."""

    time: float
    method: str
    path: str
    query: str
    params: dict[str, str]
    status: int
    authorization: str | None = None

    @property
    def scope(self) -> str | None:
        """The polled teamId / workTypeId / contactList, if any."""
        for name in ("teamId", "workTypeId", "contactList"):
            if name in self.params:
                return self.params[name]
        return None


@dataclass(slots=True)
class _Token:
    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class _Tokens:
    issued: dict[str, _Token] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class AlvariaSimulator:
    """Serve an :class:`AlvariaWorld` as the Alvaria reporting API on loopback.

    Args:
        agents: number of simulated agents (spread over ``teams`` teams and ``work_types`` worktypes).
        org_id: the organisation in the path.
        client_id / client_secret / api_key: the credentials it accepts.
        token_ttl: ``expires_in`` of issued tokens, in seconds (short by default).
        clock: seconds (epoch-like); drives token expiry, the world and the request log.
        auto_advance: move the world on by the clock before answering each data request.
        seed: seeds the world and the deviations.
        deviate: the share of rows (0..1) that deviate from seed 003 (module rule 5).
        port: 0 for an ephemeral port.
    """

    def __init__(
        self,
        *,
        agents: int = 20,
        teams: int = 2,
        work_types: int = 2,
        org_id: str = "acme",
        client_id: str = "streamd",
        client_secret: str = "s3cret",
        api_key: str = "key-123",
        token_ttl: float = 60.0,
        clock: Callable[[], float] | None = None,
        auto_advance: bool = True,
        seed: int = 1,
        deviate: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        import time

        if not 0.0 <= deviate <= 1.0:
            raise ValueError(f"deviate must be a share between 0 and 1, not {deviate}")

        self.clock = clock or time.time
        self.world = AlvariaWorld(
            agents=agents, teams=teams, work_types=work_types, seed=seed, now=self.clock()
        )
        self.org_id = org_id
        self.client_id, self.client_secret, self.api_key = client_id, client_secret, api_key
        self.token_ttl = token_ttl
        self.auto_advance = auto_advance
        self.seed, self.deviate = seed, deviate
        self.deviations: dict[tuple[str, str], tuple[str, ...]] = {}
        """(query, row key) -> the deviating JSON paths of that row as last served."""
        self.host, self.port = host, port
        self.log: list[LoggedRequest] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self.token_latency = 0.0
        """Seconds the token endpoint takes to answer (a real token service is not instant)."""
        self.latency = 0.0
        """Seconds every data answer takes (a real reporting store is not instant either)."""
        self.omitted: dict[str, frozenset[str]] = {}
        """Query -> fields left out of every served row (:meth:`omit`)."""
        self._faults: dict[tuple[str, str | None], deque[Fault]] = {}
        self._outages: dict[tuple[str, str | None], Fault] = {}
        self._tokens = _Tokens()
        self._client_refused = False
        self._stack: AsyncExitStack | None = None
        self.url = ""
        self.app = Starlette(
            routes=[
                Route(TOKEN_PATH, self._token, methods=["POST"]),
                Route(
                    "/via/v2/organizations/{org}/reporting/queries/{query}/data", self._query, methods=["GET"]
                ),
                Route(
                    "/via/v2/organizations/{org}/reporting/presence/users/data",
                    self._presence,
                    methods=["GET"],
                ),
            ]
        )

    # -- scripting ---------------------------------------------------------------------------
    def fail(self, query: str, *faults: Fault, scope: str | None = None) -> None:
        """Answer the next requests of ``query`` (a query name, ``"token"`` or ``"*"``) with ``faults``;
        with ``scope``, only the requests for that teamId / workTypeId / contactList."""
        self._faults.setdefault((query, scope), deque()).extend(faults)

    def outage(self, query: str, scope: str | None, fault: Fault | None) -> None:
        """Answer every request of ``query`` for ``scope`` (None: every scope) with ``fault`` until
        ``outage(query, scope, None)`` ends it: one team's data store down, the others fine."""
        if fault is None:
            self._outages.pop((query, scope), None)
        else:
            self._outages[(query, scope)] = fault

    def omit(self, query: str, *fields: str) -> None:
        """Serve ``query``'s rows without ``fields`` (the guide marks every data-query field as not
        required, the row keys too); ``omit(query)`` serves them whole again."""
        self.omitted[query] = frozenset(fields)

    def refuse_client(self, refused: bool = True) -> None:
        """From now on the token endpoint answers 401 ``invalid_client`` (as for a revoked client
        secret), and every issued token is revoked; ``refuse_client(False)`` accepts it again."""
        self._client_refused = refused
        if refused:
            self.revoke_tokens()

    def expire_tokens(self) -> None:
        """Every issued token is expired from now on (the next data call gets 401)."""
        for token in self._tokens.issued.values():
            token.expires_at = min(token.expires_at, self.clock())

    def revoke_tokens(self) -> None:
        """Every issued token is revoked (401) although not expired."""
        for token in self._tokens.issued.values():
            token.revoked = True

    def requests(self, query: str | None = None) -> list[LoggedRequest]:
        """The logged requests (of one query, or ``"token"``)."""
        return [r for r in self.log if query is None or r.query == query]

    @property
    def base_url(self) -> str:
        """The ``base_url`` a source should use (ends in ``/organizations/{orgId}``)."""
        return f"{self.url}/via/v2/organizations/{self.org_id}"

    @property
    def token_url(self) -> str:
        """The ``token_url`` a source should use."""
        return self.url + TOKEN_PATH

    def source_config(self, name: str = "alvaria1", **overrides: Any) -> dict[str, Any]:
        """A ``kind: alvaria`` config block polling every query of this simulator."""
        block: dict[str, Any] = {
            "kind": "alvaria",
            "name": name,
            "base_url": self.base_url,
            "token_url": self.token_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_key": self.api_key,
            "queries": list(QUERIES),
            "interval": "2s",
            "team_ids": list(self.world.team_ids),
            "work_type_ids": list(self.world.work_type_ids),
            "contact_lists": list(self.world.contact_lists),
        }
        return block | overrides

    # -- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> AlvariaSimulator:
        async with AsyncExitStack() as stack:
            self.url = await stack.enter_async_context(serving(self.app, host=self.host, port=self.port))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._stack is not None
        await self._stack.aclose()

    # -- handlers ----------------------------------------------------------------------------
    async def _token(self, request: Request) -> Response:
        with self._track("token"):
            return await self._token_answer(request)

    async def _token_answer(self, request: Request) -> Response:
        fault = self._fault("token", None)
        if fault is not None:
            return await self._answer_fault(request, "token", fault)
        if self.token_latency:
            await anyio.sleep(self.token_latency)
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))  # no python-multipart
        client_id, secret = self._credentials(request, form)
        if form.get("grant_type") != "client_credentials":
            return self._json(request, "token", 400, {"error": "unsupported_grant_type"})
        if self._client_refused or client_id != self.client_id or secret != self.client_secret:
            return self._json(request, "token", 401, {"error": "invalid_client"})
        if "reportingapi" not in str(form.get("scope", "")).split():
            return self._json(request, "token", 400, {"error": "invalid_scope"})
        token = f"tok-{next(self._tokens.counter)}"
        self._tokens.issued[token] = _Token(self.clock() + self.token_ttl)
        body = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.token_ttl,
            "scope": "reportingapi",
        }
        return self._json(request, "token", 200, body)

    async def _query(self, request: Request) -> Response:
        query = request.path_params["query"]
        with self._track(query):
            return await self._query_data(request, query)

    async def _query_data(self, request: Request, query: str) -> Response:
        if query not in QUERIES or query == "presence":
            return self._json(request, query, 404, {"error": "Not Found"})
        scope = request.query_params.get(SCOPE_PARAMS.get(query, ""))
        denied = await self._gate(request, query, scope)
        if denied is not None:
            return denied
        params, now = request.query_params, self.clock()
        if query == "listActivity":
            name = params.get("contactList")
            if not name:
                return self._json(request, query, 400, {"error": "Bad Request"})
            if name not in self.world.lists:
                return self._json(
                    request, query, 404, {"error": "No ListActivity exists for the provided entity Id"}
                )
            (row,) = self.deviating(query, name, [self.world.list_row(name)])
            return self._json(request, query, 200, row)
        if not scope:
            return self._json(request, query, 400, {"error": "Bad Request"})
        known = self.world.work_type_ids if query == "channelActivity" else self.world.team_ids
        if scope not in known:
            return self._json(request, query, 404, {"error": "Not Found"})
        if query == "teamActivity":
            rows = self.world.team_rows(scope)
        elif query == "userActivity":
            rows = self.world.user_rows(scope, now)
        else:
            rows = self.world.channel_rows(scope, now)
        rows = self.deviating(query, scope, rows)
        return self._json(
            request, query, 200, {"kind": "via#queryDataList", "totalItems": len(rows), "rows": rows}
        )

    async def _presence(self, request: Request) -> Response:
        with self._track("presence"):
            return await self._presence_data(request)

    @contextmanager
    def _track(self, query: str) -> Iterator[None]:
        self.in_flight[query] = self.in_flight.get(query, 0) + 1
        self.max_in_flight[query] = max(self.max_in_flight.get(query, 0), self.in_flight[query])
        try:
            yield
        finally:
            self.in_flight[query] -= 1

    async def _presence_data(self, request: Request) -> Response:
        denied = await self._gate(request, "presence", request.query_params.get("workTypeId"))
        if denied is not None:
            return denied
        if request.query_params.get("state") != "LoggedOn":
            return self._json(request, "presence", 400, {"error": "Bad Request"})
        work_type = request.query_params.get("workTypeId")
        users = self.deviating("presence", work_type, self.world.presence_users(work_type))
        body = {"kind": "via#presenceDataList", "users": users, "totalItems": len(users)}
        return self._json(request, "presence", 200, body)

    async def _gate(self, request: Request, query: str, scope: str | None) -> Response | None:
        """Faults, then token and api-key checks; None lets the request through."""
        fault = self._fault(query, scope)
        if fault is not None:
            return await self._answer_fault(request, query, fault)
        auth = request.headers.get("authorization", "")
        token = self._tokens.issued.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if token is None or token.revoked or self.clock() >= token.expires_at:
            body = None if query == "presence" else {"error": "Unauthorized"}  # presence: schema "None"
            return self._json(request, query, 401, body)
        if request.headers.get("x-api-key") != self.api_key:
            return self._json(request, query, 403, {"message": "Forbidden"})
        if self.latency:
            await anyio.sleep(self.latency)
        if self.auto_advance:
            self.world.step(self.clock())
        return None

    def deviating(self, query: str, scope: str | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` with the share ``deviate`` of them deviating (module rule 5), without the
        fields :meth:`omit` leaves out."""
        omitted = self.omitted.get(query)
        if omitted:
            rows = [{k: v for k, v in row.items() if k not in omitted} for row in rows]
        if not self.deviate:
            return rows
        out = []
        for row in rows:
            key = row_key(query, row, scope)
            rng = random.Random(f"{self.seed}:{query}:{key}")  # str seeds hash stably (sha512)
            if rng.random() < self.deviate:
                row, paths = deviate_row(query, row, rng)
                self.deviations[(query, key)] = paths
            out.append(row)
        return out

    def _fault(self, query: str, scope: str | None) -> Fault | None:
        for where in ((query, scope), (query, None)):
            if where in self._outages:
                return self._outages[where]
        for where in ((query, scope), (query, None), ("*", None)):
            queue = self._faults.get(where)
            if queue:
                return queue.popleft()
        return None

    async def _answer_fault(self, request: Request, query: str, fault: Fault) -> Response:
        if fault.delay:
            await anyio.sleep(fault.delay)
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        self._record(request, query, fault.status)
        return Response(
            fault.content(), status_code=fault.status, headers=headers, media_type="application/json"
        )

    def _json(self, request: Request, query: str, status: int, body: Any) -> Response:
        self._record(request, query, status)
        content = b"" if body is None else orjson.dumps(body)
        return Response(content, status_code=status, media_type="application/json")

    def _record(self, request: Request, query: str, status: int) -> None:
        entry = LoggedRequest(
            time=self.clock(),
            method=request.method,
            path=request.url.path,
            query=query,
            params=dict(request.query_params),
            status=status,
            authorization=request.headers.get("authorization"),
        )
        self.log.append(entry)

    @staticmethod
    def _credentials(request: Request, form: dict[str, Any]) -> tuple[str | None, str | None]:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None, None
            return unquote(user), unquote(secret)
        cid, sec = form.get("client_id"), form.get("client_secret")
        return (cid if isinstance(cid, str) else None), (sec if isinstance(sec, str) else None)


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    agents: int = 50,
    token_ttl: float = 300.0,
    deviate: float = 0.0,
    task_status: TaskStatus[AlvariaSimulator] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a simulator until cancelled (for ``streamd demo``); ``task_status`` gets the simulator.

    Use ``sim = await tg.start(serve_forever)`` and put ``sim.source_config()`` in the demo config.
    """
    async with AlvariaSimulator(
        agents=agents, token_ttl=token_ttl, deviate=deviate, host=host, port=port
    ) as sim:
        task_status.started(sim)
        await anyio.sleep_forever()


@asynccontextmanager
async def demo(agents: int) -> AsyncIterator[dict[str, Any]]:
    """``streamd demo``'s hook: start a simulator, yield the ``kind: alvaria`` config block for it.

    Polls all five queries every 2 s with 2-minute tokens, so the demo also shows token refreshes.
    """
    async with AlvariaSimulator(agents=agents, token_ttl=120.0) as sim:
        yield sim.source_config("alvaria1", interval="2s")


async def _main(
    port: int, agents: int, token_ttl: float, deviate: float
) -> None:  # pragma: no cover - manual use
    async with AlvariaSimulator(agents=agents, token_ttl=token_ttl, deviate=deviate, port=port) as sim:
        print(orjson.dumps(sim.source_config(), option=orjson.OPT_INDENT_2).decode(), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(
        description="Alvaria Cloud reporting simulator (prints its config block)"
    )
    parser.add_argument("--port", type=int, default=9103, help="TCP port (0 = any free port)")
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--token-ttl", type=float, default=300.0, help="expires_in of issued tokens, seconds")
    parser.add_argument(
        "--deviate", type=float, default=0.0, help="share of rows (0..1) that deviate from the seed's schemas"
    )
    args = parser.parse_args()
    anyio.run(_main, args.port, args.agents, args.token_ttl, args.deviate)

"""A Calabrio ONE simulator: a real HTTP server on 127.0.0.1 for tests and ``streamd demo``.

What it serves (paths as in spec/calabrio.md, seed 002):

- ``POST /api/rest/authorize`` (JSON ``username`` or ``userId`` + ``password``) -> ``sessionId``
  and the ``hazelcast.sessionId`` cookie; ``GET`` (who am I) and ``DELETE`` (logout) too.
  Every other route answers 401 without a live session cookie.
- ``POST /api/rest/scheduling/realTime/activity/detail?fromTime=&toTime=`` (body ``agentIds``):
  activities with ``fromTime <= timestamp < toTime`` plus, per agent with one, the state that
  began before ``fromTime`` and was left inside the window (002 L4590-4603). An activity becomes
  visible at its ``visible_at`` (late capture), which may be after its ``timestamp``.
- ``GET /api/rest/scheduling/adherence/agent?date=&pageSize=&pageNumber=`` (pageSize <= 200).
- ``GET /api/rest/scheduling/agent``: the agent reference list. As the guide says (002 L671-686),
  only ``fullDetail=true`` returns every field (``acdId``, ``services``, teams...); without it a
  row holds the basic detail only: the id, first and last name and employee number.
- ``POST /api/rest/scheduling/gis/realTimeAgentState``: the real-time data capture endpoint.
  It records accepted records in :attr:`CalabrioSimulator.captured`; a request containing an
  invalid or scripted-to-reject record is refused as a whole with 400 (nothing recorded).
  ``capture_body`` makes it take only one body shape (the seed leaves the shape undocumented,
  002 L4686-4690): ``"array"`` refuses a single object, ``"object"`` an array, with 400.

Scripting: :meth:`add_activity` (``visible_at`` after ``timestamp``: an activity captured late),
:meth:`expire_sessions`, ``expire_after`` (a session dies after N API calls), :meth:`fail_next`
(status + optional ``Retry-After`` on the next matching requests), :meth:`garble_next` (a 200
whose body cannot be read: not JSON, not an array, an HTML login page), ``ignore_page_number``
(adherence pages ignore ``pageNumber``: every page is the first), ``reject_acd_ids``,
``capture_body``; :attr:`requests` logs every request. With ``auto=True`` agents change state on
their own (the demo).

Deviations (tolerant reading): ``deviate`` (a share, 0.0-1.0) makes that share of the
activities, of the agents' activity rows (their fields besides the activities), of the adherence
rows and of the agent reference rows deviate from the document the way real servers do
(:mod:`streamd.sim.deviate`: a number as text, an unknown field at any depth, text where an
object was documented, an ``agentState`` outside the documented list), never so that the input
cannot be routed (see :data:`ACTIVITY_GUIDE`). Whether and how an input deviates depends only on
``seed`` and the input's identity, so a re-read serves the same deviation;
:attr:`CalabrioSimulator.deviated_activities` and :attr:`~CalabrioSimulator.deviated_adherence`
record what was served deviating, :attr:`~CalabrioSimulator.deviated` every changed path.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.sim.deviate import Guide, deviate
from streamd.sim.server import serving

SESSION_COOKIE = "hazelcast.sessionId"
STATES = ("LOGGED_OUT", "READY_WAITING", "TALK", "WORK_AFTER_CONTACT", "HOLD", "NOT_READY_BUSY")
GIS_CODES = frozenset({1, 2, 3, 4, 5, 6, 10})
MAX_RANGE_MS = 31 * 86_400_000
_NEXT = {
    "LOGGED_OUT": ("READY_WAITING",),
    "READY_WAITING": ("TALK", "TALK", "NOT_READY_BUSY"),
    "TALK": ("WORK_AFTER_CONTACT", "HOLD", "READY_WAITING"),
    "HOLD": ("TALK",),
    "WORK_AFTER_CONTACT": ("READY_WAITING", "NOT_READY_BUSY"),
    "NOT_READY_BUSY": ("READY_WAITING", "READY_WAITING", "LOGGED_OUT"),
}
ROW_GUIDE = Guide(routing=frozenset({"agentId", "realTimeActivities"}))
"""An agent's activity row (002 L4614-4628): ``agentId`` is its key; its activities deviate on
their own (:data:`ACTIVITY_GUIDE`)."""
ACTIVITY_GUIDE = Guide(routing=frozenset(), enums=frozenset({"agentState"}))
"""One activity: ``agentState`` and ``timestamp`` route it (the window's de-dup key), and every
change :func:`~streamd.sim.deviate.deviate` can make leaves them usable (the timestamp as text,
a state outside the documented list); no field is documented as required beyond those two."""
ADHERENCE_GUIDE = Guide(routing=frozenset({"agentId"}))
"""An adherence row (002 L599-656): ``agentId`` is its key; nothing else is marked required."""
REFERENCE_GUIDE = Guide(routing=frozenset({"agentId"}))
"""An agent reference row (002 L688-739): ``agentId`` identifies it."""
_FIRST = ("Ana", "Ben", "Chloé", "Dev", "Eli", "Fatima", "Gus", "Hana", "Ivo", "Jun")
_LAST = ("Silva", "Okafor", "Martin", "Patel", "Kim", "Haddad", "Berg", "Sato", "Novak", "Li")


def wall_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class SimAgent:
    """One simulated agent (reference data)."""

    agent_id: int
    acd_id: str
    first_name: str
    last_name: str
    services: tuple[int, ...] = (1,)

    def reference(self, *, full: bool = True) -> dict[str, Any]:
        """The Agent API row: every field with ``fullDetail=true``, else the basic detail (002 L680)."""
        if not full:
            return {
                "agentId": self.agent_id,
                "firstName": self.first_name,
                "lastName": self.last_name,
                "employeeNumber": f"E{self.agent_id}",
            }
        return {
            "agentId": self.agent_id,
            "acdId": self.acd_id,
            "active": True,
            "employeeNumber": f"E{self.agent_id}",
            "firstName": self.first_name,
            "lastName": self.last_name,
            "mainTeam": {"teamId": 3, "name": "Default Team"},
            "services": list(self.services),
            "teams": [3],
            "settings": {"$ref": f"/api/rest/scheduling/agent/{self.agent_id}/settings"},
        }


@dataclass(frozen=True, slots=True)
class SimActivity:
    """One state change, visible from ``visible_at`` (epoch ms) on."""

    timestamp: int
    state: str
    reason_code: str | None
    visible_at: int

    def wire(self) -> dict[str, Any]:
        """As the activity API returns it."""
        return {"agentState": self.state, "reasonCode": self.reason_code, "timestamp": self.timestamp}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One logged request."""

    method: str
    path: str
    query: dict[str, str]
    session: str | None
    status: int
    body: Any = None


GARBLED: dict[str, tuple[bytes, str]] = {
    "not_json": (b'[{"agentId": 101, "realTimeActivities": [{"agentState": "TA', "application/json"),
    "not_array": (b'{"errorMessage": "The service is busy, try again later"}', "application/json"),
    "login_page": (
        b"<!DOCTYPE html><html><head><title>Calabrio ONE</title></head><body>"
        b'<form action="/login" method="post"><input name="username"></form></body></html>',
        "text/html;charset=UTF-8",
    ),
}
"""The bodies :meth:`CalabrioSimulator.garble_next` answers 200 with: a truncated JSON array (a
proxy that cut the answer), an object where an array is documented, an HTML login page (an SSO
proxy in front of the tenant)."""


@dataclass(slots=True)
class _Fault:
    status: int
    path: str | None
    times: int
    retry_after: str | None
    body: tuple[bytes, str] | None = None


@dataclass(slots=True)
class CalabrioSimulator:
    """See the module docstring. Use as ``async with CalabrioSimulator(...) as sim: sim.url``."""

    agents: int | list[SimAgent] = 5
    username: str = "api@example.com"
    password: str = "secret"
    clock_ms: Callable[[], int] = wall_ms
    auto: bool = False
    seed: int = 0
    max_late_ms: int = 0
    expire_after: int | None = None
    session_idle_ms: int | None = None
    reject_acd_ids: set[str] = field(default_factory=set)
    capture_body: Literal["any", "array", "object"] = "any"
    ignore_page_number: bool = False
    deviate: float = 0.0
    host: str = "127.0.0.1"
    port: int = 0
    url: str = ""
    requests: list[RequestRecord] = field(default_factory=list)
    captured: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    authorizations: int = 0
    adherence: dict[int, dict[str, Any]] = field(default_factory=dict)
    deviated_activities: set[tuple[int, int]] = field(default_factory=set)
    """``(agentId, timestamp)`` of every activity served deviating (its own fields or its row's)."""
    deviated_adherence: set[int] = field(default_factory=set)
    """``agentId`` of every adherence row served deviating."""
    deviated: list[str] = field(default_factory=list)
    """The JSON path each deviating input changed (relative to that input), each time it was served."""
    _agents: list[SimAgent] = field(default_factory=list)
    _activities: dict[int, list[SimActivity]] = field(default_factory=dict)
    _sessions: dict[str, list[int]] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    _rng: random.Random = field(default_factory=random.Random)
    _next_change: dict[int, int] = field(default_factory=dict)
    _serving: contextlib.AbstractAsyncContextManager[str] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.deviate <= 1.0:
            raise ValueError(f"deviate must be a share between 0 and 1, got {self.deviate}")
        self._rng.seed(self.seed)
        if isinstance(self.agents, list):
            self._agents = list(self.agents)
        else:
            self._agents = [
                SimAgent(101 + i, str(5001 + i), _FIRST[i % 10], _LAST[(i // 10 + i) % 10], (1 + i % 2,))
                for i in range(self.agents)
            ]
        self._activities = {a.agent_id: [] for a in self._agents}
        if self.auto:
            now = self.clock_ms()
            for a in self._agents:
                self.add_activity(a.agent_id, now - self._rng.randint(1_000, 60_000), "READY_WAITING")
                self._next_change[a.agent_id] = now + self._rng.randint(1_000, 8_000)

    # --- scripting ---------------------------------------------------------------------------

    @property
    def agent_list(self) -> list[SimAgent]:
        """The simulated agents."""
        return list(self._agents)

    def add_activity(
        self,
        agent_id: int,
        timestamp: int,
        state: str,
        reason_code: str | None = None,
        *,
        visible_at: int | None = None,
    ) -> None:
        """Record that ``agent_id`` entered ``state`` at ``timestamp`` (visible from ``visible_at``)."""
        rows = self._activities.setdefault(agent_id, [])
        rows.append(
            SimActivity(timestamp, state, reason_code, timestamp if visible_at is None else visible_at)
        )
        rows.sort(key=lambda a: a.timestamp)

    def expire_sessions(self) -> None:
        """Invalidate every session now (the next call gets 401)."""
        self._sessions.clear()

    def fail_next(
        self, status: int, *, path: str | None = None, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests (to ``path``, if given) with ``status``."""
        self._faults.append(_Fault(status, path, times, retry_after))

    def garble_next(self, kind: str, *, path: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` requests (to ``path``, if given) 200 with an unreadable body.

        Args:
            kind: a key of :data:`GARBLED`: ``not_json``, ``not_array`` or ``login_page``.
        """
        if kind not in GARBLED:
            raise ValueError(f"unknown garble {kind!r}; one of {sorted(GARBLED)}")
        self._faults.append(_Fault(200, path, times, None, GARBLED[kind]))

    def set_adherence(self, agent_id: int, **fields: Any) -> None:
        """Override adherence figures of one agent (e.g. ``scheduleAdherence=91.5``)."""
        self.adherence.setdefault(agent_id, {}).update(fields)

    def calls(self, path: str) -> list[RequestRecord]:
        """The logged requests to ``path``."""
        return [r for r in self.requests if r.path == path]

    # --- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> CalabrioSimulator:
        self._serving = serving(self.app(), host=self.host, port=self.port)
        self.url = await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._serving is not None
        await self._serving.__aexit__(None, None, None)

    def app(self) -> Starlette:
        """The ASGI app (also usable with ``httpx.ASGITransport``)."""
        routes = [
            Route("/api/rest/authorize", self._authorize, methods=["POST", "GET", "DELETE"]),
            Route("/api/rest/scheduling/realTime/activity/detail", self._activity, methods=["POST"]),
            Route("/api/rest/scheduling/adherence/agent", self._adherence, methods=["GET"]),
            Route("/api/rest/scheduling/agent", self._agents_route, methods=["GET"]),
            Route("/api/rest/scheduling/gis/realTimeAgentState", self._capture, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    # --- handlers ----------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        if (fault := self._fault(request)) is not None:
            return self._log(request, fault)
        if request.method == "DELETE":
            self._sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
            return self._log(request, Response(status_code=200))
        if request.method == "GET":
            session = self._session(request)
            return self._log(
                request, _json(self._user(session)) if session else _error(401, "Not authorized")
            )
        body = await _body(request)
        user = body.get("username") or body.get("userId")
        if user != self.username or body.get("password") != self.password:
            return self._log(request, _error(401, "Invalid username or password"), {"username": user})
        session = "HZ" + uuid.uuid4().hex.upper()
        self._sessions[session] = [self.clock_ms(), 0]
        self.authorizations += 1
        response = _json(self._user(session))
        response.set_cookie(SESSION_COOKIE, session, httponly=True)
        return self._log(request, response, {"username": user})

    def _user(self, session: str) -> dict[str, Any]:
        return {
            "sessionId": session,
            "id": 2,
            "userId": self.username,
            "firstName": "api",
            "lastName": "user",
            "teamId": 3,
            "teamName": "Default Team",
            "lang": "en",
            "sessionTimeout": "60",
            "timezoneString": "America/Chicago",
            "tenantId": 1,
            "permissions": ["AdministerWFM", "WFMAppManagement", "EditSchedules"],
            "groupsInScope": [],
            "teamsInScope": [],
            "serviceQueuesInScope": [],
        }

    async def _activity(self, request: Request) -> Response:
        if (denied := self._guard(request)) is not None:
            return denied
        try:
            from_ms, to_ms = int(request.query_params["fromTime"]), int(request.query_params["toTime"])
        except (KeyError, ValueError):
            return self._log(request, _error(400, "fromTime and toTime (epoch ms) are required"))
        if not 0 <= to_ms - from_ms <= MAX_RANGE_MS:
            return self._log(request, _error(400, "The time range must be between 0 and 31 days"))
        body = await _body(request)
        wanted = {int(a) for a in body.get("agentIds") or []}
        self._tick()
        now = self.clock_ms()
        out = []
        for agent in self._agents:
            if wanted and agent.agent_id not in wanted:
                continue
            visible = [a for a in self._activities.get(agent.agent_id, []) if a.visible_at <= now]
            inside = [a for a in visible if from_ms <= a.timestamp < to_ms]
            if not inside:
                continue
            before = [a for a in visible if a.timestamp < from_ms]
            rows = ([before[-1]] if before else []) + inside
            plain: dict[str, Any] = {"agentId": agent.agent_id, "employeeId": None}
            row = self._deviated(plain, ROW_GUIDE, "row", agent.agent_id)
            wires = []
            for a in rows:
                wire = self._deviated(
                    a.wire(), ACTIVITY_GUIDE, "activity", agent.agent_id, a.timestamp, a.state
                )
                if row is not None or wire is not None:
                    self.deviated_activities.add((agent.agent_id, a.timestamp))
                wires.append(a.wire() if wire is None else wire)
            out.append({**(plain if row is None else row), "realTimeActivities": wires})
        return self._log(request, _json(out), body)

    async def _adherence(self, request: Request) -> Response:
        if (denied := self._guard(request)) is not None:
            return denied
        query = request.query_params
        try:
            size, page = int(query.get("pageSize", 25)), int(query.get("pageNumber", 1))
        except ValueError:
            return self._log(request, _error(400, "pageSize and pageNumber must be numbers"))
        if "date" not in query or not 1 <= size <= 200 or page < 1:
            return self._log(request, _error(400, "date is required; pageSize 1-200; pageNumber >= 1"))
        if self.ignore_page_number:  # a server that always serves the first page
            page = 1
        rows = []
        for agent in self._agents[(page - 1) * size : page * size]:
            row = self._adherence_row(agent)
            deviating = self._deviated(row, ADHERENCE_GUIDE, "adherence", agent.agent_id)
            if deviating is not None:
                self.deviated_adherence.add(agent.agent_id)
            rows.append(row if deviating is None else deviating)
        return self._log(request, _json(rows))

    def _adherence_row(self, agent: SimAgent) -> dict[str, Any]:
        drift = (self.clock_ms() // 60_000) % 7 if self.auto else 0
        row: dict[str, Any] = {
            "agentId": agent.agent_id,
            "acdAgentId": agent.acd_id,
            "scheduledSeconds": 28_800,
            "scheduledInServiceSeconds": 25_200,
            "actualInServiceSeconds": 20_000 + agent.agent_id + drift * 60,
            "notInAdherenceSeconds": 600 + drift * 30,
            "scheduleAdherence": 92.5 - drift * 0.5,
            "scheduleConformity": 97.1,
            "details": [
                {
                    "scheduledActivityType": "in_service",
                    "scheduledActityStartTime": "2026-01-01T08:00:00Z",
                    "inAdherenceSeconds": 3000,
                    "outOfAdherenceSeconds": 600,
                    "actuals": [
                        {
                            "actualAgentState": "TALK",
                            "actualAgentStateStartTime": "2026-01-01T08:01:00Z",
                            "actualReasonCode": None,
                            "inAdherenceSeconds": 3000,
                            "outOfAdherenceSeconds": 0,
                        }
                    ],
                }
            ],
        }
        row.update(self.adherence.get(agent.agent_id, {}))
        return row

    async def _agents_route(self, request: Request) -> Response:
        if (denied := self._guard(request)) is not None:
            return denied
        full = request.query_params.get("fullDetail", "").lower() == "true"
        rows = []
        for agent in self._agents:
            row = agent.reference(full=full)
            deviating = self._deviated(row, REFERENCE_GUIDE, "agent", agent.agent_id)
            rows.append(row if deviating is None else deviating)
        return self._log(request, _json(rows))

    async def _capture(self, request: Request) -> Response:
        if (denied := self._guard(request)) is not None:
            return denied
        body = await _body(request, keep_lists=True)
        shape = "array" if isinstance(body, list) else "object"
        if self.capture_body not in ("any", shape):
            self.rejected.extend(body if isinstance(body, list) else [body])
            message = f"Invalid request body: expected a JSON {self.capture_body}, got a JSON {shape}"
            return self._log(request, _error(400, message), body)
        records = body if isinstance(body, list) else [body]
        problems = [(i, why) for i, rec in enumerate(records) if (why := self._invalid(rec)) is not None]
        if problems:
            self.rejected.extend(records[i] for i, _ in problems)
            errors = [{"index": i, "reason": why} for i, why in problems]
            response = _json({"errorMessage": "Invalid agent state", "errors": errors}, 400)
            return self._log(request, response, body)
        self.captured.extend(records)
        return self._log(request, Response(status_code=200), body)

    def _invalid(self, record: Any) -> str | None:
        if not isinstance(record, dict):
            return "not an object"
        acd, code, ts, reason = (
            record.get(k) for k in ("acdAgentId", "gisStateIdentifier", "timestamp", "reasonCode")
        )
        if not isinstance(acd, str) or not acd:
            return "acdAgentId is required"
        if acd in self.reject_acd_ids:
            return f"unknown acdAgentId {acd}"
        if code not in GIS_CODES or isinstance(code, bool):
            return "gisStateIdentifier must be 1-6 or 10"
        if not isinstance(ts, int) or isinstance(ts, bool):
            return "timestamp must be epoch ms"
        if isinstance(reason, int) and not 1 <= reason <= 65535:
            return "reasonCode must be 1-65535 or text"
        return None

    # --- plumbing ----------------------------------------------------------------------------

    def _deviated(
        self, obj: dict[str, Any], guide: Guide, kind: str, *ident: object
    ) -> dict[str, Any] | None:
        """A deviating copy of one input when it is to deviate (``deviate``), else None.

        Decided by ``seed``, ``kind`` and the input's identity only: the same input deviates the
        same way whenever it is served.
        """
        if self.deviate <= 0.0:
            return None
        rng = random.Random(":".join(map(str, (self.seed, kind, *ident))))
        if rng.random() >= self.deviate:
            return None
        out, path = deviate(obj, rng, guide)
        self.deviated.append(path)
        return out

    def _guard(self, request: Request) -> Response | None:
        if (fault := self._fault(request)) is not None:
            return self._log(request, fault)
        if self._session(request) is None:
            return self._log(request, _error(401, "Session expired or not authorized"))
        return None

    def _session(self, request: Request) -> str | None:
        session = request.cookies.get(SESSION_COOKIE)
        state = self._sessions.get(session or "")
        if session is None or state is None:
            return None
        now = self.clock_ms()
        if self.session_idle_ms is not None and now - state[0] > self.session_idle_ms:
            del self._sessions[session]
            return None
        if self.expire_after is not None and state[1] >= self.expire_after:
            del self._sessions[session]
            return None
        state[0], state[1] = now, state[1] + 1
        return session

    def _fault(self, request: Request) -> Response | None:
        for fault in self._faults:
            if fault.path is None or fault.path == request.url.path:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                if fault.body is not None:
                    return Response(fault.body[0], status_code=fault.status, media_type=fault.body[1])
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
                return _error(fault.status, "scripted fault", headers)
        return None

    def _log(self, request: Request, response: Response, body: Any = None) -> Response:
        self.requests.append(
            RequestRecord(
                request.method,
                request.url.path,
                dict(request.query_params),
                request.cookies.get(SESSION_COOKIE),
                response.status_code,
                body,
            )
        )
        return response

    def _tick(self) -> None:
        """Auto mode: move agents through plausible state sequences up to now."""
        if not self.auto:
            return
        now = self.clock_ms()
        for agent in self._agents:
            while self._next_change[agent.agent_id] <= now:
                at = self._next_change[agent.agent_id]
                rows = self._activities[agent.agent_id]
                state = self._rng.choice(_NEXT[rows[-1].state if rows else "LOGGED_OUT"])
                reason = str(self._rng.choice((1, 2, 7))) if state == "NOT_READY_BUSY" else None
                self.add_activity(
                    agent.agent_id, at, state, reason, visible_at=at + self._rng.randint(0, self.max_late_ms)
                )
                self._next_change[agent.agent_id] = at + self._rng.randint(2_000, 20_000)


async def _body(request: Request, *, keep_lists: bool = False) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    if request.headers.get("content-type", "").startswith(("multipart/form-data", "application/x-www-form")):
        return dict(await request.form())
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    if isinstance(data, dict) or (keep_lists and isinstance(data, list)):
        return data
    return {}


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"errorMessage": message, "requestId": str(uuid.uuid4())})
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    agents: int = 20,
    username: str = "api@example.com",
    password: str = "secret",
    max_late_ms: int = 3_000,
    deviate: float = 0.0,
    on_ready: Callable[[CalabrioSimulator], None] | None = None,
) -> None:
    """Run a self-changing simulator until cancelled (``streamd demo`` / ``streamd simulate``);
    ``deviate`` is the share of its traffic that deviates from the document (module docstring)."""
    async with CalabrioSimulator(
        agents=agents,
        username=username,
        password=password,
        auto=True,
        max_late_ms=max_late_ms,
        deviate=deviate,
        host=host,
        port=port,
    ) as sim:
        if on_ready is not None:
            on_ready(sim)
        await anyio.sleep_forever()


@contextlib.asynccontextmanager
async def demo_source(agents: int, name: str = "wfm", deviate: float = 0.0) -> AsyncIterator[dict[str, Any]]:
    """``streamd demo``: a self-changing simulator and the ``kind: calabrio`` source config for it.

    The activities arrive up to 3 s late (so the overlap has work to do), adherence is on;
    ``deviate`` is the share of its traffic that deviates from the document (module docstring).
    """
    async with CalabrioSimulator(agents=agents, auto=True, max_late_ms=3_000, deviate=deviate) as sim:
        yield {
            "kind": "calabrio",
            "name": name,
            "url": sim.url,
            "username": sim.username,
            "password": sim.password,
            "interval": "5s",
            "timeout": "4s",
            "overlap": "30s",
            "adherence": True,
            "adherence_interval": "30s",
        }


def rtdc_sink_config(source: dict[str, Any], from_: str) -> dict[str, Any]:
    """The ``kind: calabrio-rtdc`` sink config that feeds ``from_``'s agent states into the same simulator."""
    return {
        "kind": "calabrio-rtdc",
        "from": from_,
        "url": source["url"],
        "username": source["username"],
        "password": source["password"],
        "flush_interval": "1s",
    }

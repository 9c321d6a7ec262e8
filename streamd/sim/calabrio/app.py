"""The Calabrio simulator's routes, as the guide documents them (seed 002; see the package rules).

Rules:

1. Every route but ``/api/rest/authorize`` answers 401 without a live session cookie; a
   scripted fault (:mod:`.faults`) answers before anything else.
2. Handlers read and change the :class:`~.world.CalabrioWorld` only; the request log is the
   shared middleware (:class:`streamd.sim.script.RequestLog`), and request bodies are kept in
   :attr:`CalabrioSimulator.bodies` in the order they came.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.sim.calabrio.capture import capture
from streamd.sim.calabrio.faults import ANY
from streamd.sim.calabrio.responses import error_response, json_response
from streamd.sim.calabrio.wfm import schedule_rows
from streamd.sim.calabrio.world import ACTIVITY_GUIDE, ADHERENCE_GUIDE, REFERENCE_GUIDE, ROW_GUIDE

if TYPE_CHECKING:
    from streamd.sim.calabrio.simulator import CalabrioSimulator

SESSION_COOKIE = "hazelcast.sessionId"
MAX_RANGE_MS = 31 * 86_400_000
AUTHORIZE = "/api/rest/authorize"
ACTIVITY = "/api/rest/scheduling/realTime/activity/detail"
ADHERENCE = "/api/rest/scheduling/adherence/agent"
AGENTS = "/api/rest/scheduling/agent"
CAPTURE = "/api/rest/scheduling/gis/realTimeAgentState"
TEAMS = "/api/rest/org/common/team/permission/{permission}"
SERVICES = "/api/rest/scheduling/service"
CONTACTS = "/api/rest/monitoring/contacts/lite"
SCHEDULE = "/api/rest/scheduling/schedule/activity/detail"


def build_app(sim: CalabrioSimulator) -> Starlette:
    """The routes of ``sim`` (without the request log)."""
    routes = CalabrioRoutes(sim)
    return Starlette(
        routes=[
            Route(AUTHORIZE, routes.authorize, methods=["POST", "GET", "DELETE"]),
            Route(ACTIVITY, routes.activity, methods=["POST"]),
            Route(ADHERENCE, routes.adherence, methods=["GET"]),
            Route(AGENTS, routes.agents, methods=["GET"]),
            Route(CAPTURE, routes.capture, methods=["POST"]),
            Route(TEAMS, routes.teams, methods=["GET"]),
            Route(SERVICES, routes.services, methods=["GET"]),
            Route(CONTACTS, routes.contacts, methods=["GET"]),
            Route(SCHEDULE, routes.schedule, methods=["GET", "POST"]),
        ]
    )


class CalabrioRoutes:
    """The handlers (rule 2)."""

    def __init__(self, sim: CalabrioSimulator) -> None:
        self.sim = sim
        self.world = sim.world

    async def authorize(self, request: Request) -> Response:
        """Log in (POST), who am I (GET), log out (DELETE); 002 L500-548."""
        if (fault := await self._fault(request)) is not None:
            return fault
        if request.method == "DELETE":
            self.world.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
            return Response(status_code=200)
        if request.method == "GET":
            session = self._session(request)
            return json_response(self._user(session)) if session else error_response(401, "Not authorized")
        body = await self._body(request)
        user = body.get("username") or body.get("userId")
        if user != self.sim.username or body.get("password") != self.sim.password:
            return error_response(401, "Invalid username or password")
        session = "HZ" + uuid.uuid4().hex.upper()
        self.world.sessions[session] = [self.world.clock_ms(), 0]
        self.sim.authorizations += 1
        response = json_response(self._user(session))
        response.set_cookie(SESSION_COOKIE, session, httponly=True)
        return response

    def _user(self, session: str) -> dict[str, Any]:
        return {
            "sessionId": session,
            "id": 2,
            "userId": self.sim.username,
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

    async def activity(self, request: Request) -> Response:
        """Real-time activity detail (002 L4560-4628)."""
        if (denied := await self._guard(request)) is not None:
            return denied
        try:
            from_ms, to_ms = int(request.query_params["fromTime"]), int(request.query_params["toTime"])
        except (KeyError, ValueError):
            return error_response(400, "fromTime and toTime (epoch ms) are required")
        if not 0 <= to_ms - from_ms <= MAX_RANGE_MS:
            return error_response(400, "The time range must be between 0 and 31 days")
        body = await self._body(request)
        wanted = {int(a) for a in body.get("agentIds") or []}
        self.world.tick()
        out = []
        for agent in self.world.agents:
            if wanted and agent.agent_id not in wanted:
                continue
            rows = self.world.window(agent.agent_id, from_ms, to_ms)
            if not rows:
                continue
            plain: dict[str, Any] = {"agentId": agent.agent_id, "employeeId": None}
            row = self.world.deviated_copy(plain, ROW_GUIDE, "row", agent.agent_id)
            wires = []
            for a in rows:
                wire = self.world.deviated_copy(
                    a.wire(), ACTIVITY_GUIDE, "activity", agent.agent_id, a.timestamp, a.state
                )
                if row is not None or wire is not None:
                    self.world.deviated_activities.add((agent.agent_id, a.timestamp))
                wires.append(a.wire() if wire is None else wire)
            out.append({**(plain if row is None else row), "realTimeActivities": wires})
        return json_response(out)

    async def adherence(self, request: Request) -> Response:
        """Agent adherence, paged (002 L580-656)."""
        if (denied := await self._guard(request)) is not None:
            return denied
        query = request.query_params
        try:
            size, page = int(query.get("pageSize", 25)), int(query.get("pageNumber", 1))
        except ValueError:
            return error_response(400, "pageSize and pageNumber must be numbers")
        if "date" not in query or not 1 <= size <= 200 or page < 1:
            return error_response(400, "date is required; pageSize 1-200; pageNumber >= 1")
        if self.sim.ignore_page_number:  # a server that always serves the first page
            page = 1
        rows = []
        for agent in self.world.agents[(page - 1) * size : page * size]:
            row = self.world.adherence_row(agent, query["date"])
            deviating = self.world.deviated_copy(row, ADHERENCE_GUIDE, "adherence", agent.agent_id)
            if deviating is not None:
                self.world.deviated_adherence.add(agent.agent_id)
            rows.append(row if deviating is None else deviating)
        return json_response(rows)

    async def agents(self, request: Request) -> Response:
        """The agent reference list (002 L671-739): ``fullDetail=true`` for every field."""
        if (denied := await self._guard(request)) is not None:
            return denied
        full = request.query_params.get("fullDetail", "").lower() == "true"
        rows = []
        for agent in self.world.agents:
            row = agent.reference(full=full)
            deviating = self.world.deviated_copy(row, REFERENCE_GUIDE, "agent", agent.agent_id)
            rows.append(row if deviating is None else deviating)
        return json_response(rows)

    async def teams(self, request: Request) -> Response:
        """The teams in the caller's scope (Team (with Scope), 002 L4496-4530)."""
        return (
            denied
            if (denied := await self._guard(request)) is not None
            else json_response(self.world.teams())
        )

    async def services(self, request: Request) -> Response:
        """The service queues (GET Service API, 002 L5100-5140)."""
        return (
            denied
            if (denied := await self._guard(request)) is not None
            else json_response(self.world.queues())
        )

    async def schedule(self, request: Request) -> Response:
        """Schedule Details by Agents and Date (002 L4902-4999): ``fromDate``/``toDate`` required."""
        if (denied := await self._guard(request)) is not None:
            return denied
        query = request.query_params
        try:
            rows = schedule_rows(self.world, query["fromDate"], query["toDate"])
        except (KeyError, ValueError):
            return error_response(400, "fromDate and toDate (YYYY-MM-DD) are required")
        body = await self._body(request) if request.method == "POST" else {}
        wanted = {int(a) for a in body.get("agentIds") or []}
        return json_response([r for r in rows if not wanted or r["agentId"] in wanted])

    async def contacts(self, request: Request) -> Response:
        """Contact monitoring: the contacts of the past 15 minutes (002 L2313-2353)."""
        if (denied := await self._guard(request)) is not None:
            return denied
        return json_response({"contacts": dict(self.world.contacts)})

    async def capture(self, request: Request) -> Response:
        """Real-time data capture (002 L4642-4704): all records of a request or none (:mod:`.capture`)."""
        if (denied := await self._guard(request)) is not None:
            return denied
        return await capture(self.sim, request, self._body)

    # --- plumbing ----------------------------------------------------------------------------

    async def _guard(self, request: Request) -> Response | None:
        if (fault := await self._fault(request)) is not None:
            return fault
        if self._session(request) is None:
            return error_response(401, "Session expired or not authorized")
        return None

    async def _fault(self, request: Request) -> Response | None:
        fault = self.sim.faults.take(request.url.path, ANY)
        return None if fault is None else await fault.respond()

    def _session(self, request: Request) -> str | None:
        session = request.cookies.get(SESSION_COOKIE)
        state = self.world.sessions.get(session or "")
        if session is None or state is None:
            return None
        now = self.world.clock_ms()
        idle, most = self.sim.session_idle_ms, self.sim.expire_after
        if (idle is not None and now - state[0] > idle) or (most is not None and state[1] >= most):
            del self.world.sessions[session]
            return None
        state[0], state[1] = now, state[1] + 1
        return session

    async def _body(self, request: Request, *, keep_lists: bool = False) -> Any:
        raw = await request.body()
        body: Any = {}
        if raw and request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form")
        ):
            body = dict(await request.form())
        elif raw:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                data = {}
            if isinstance(data, dict) or (keep_lists and isinstance(data, list)):
                body = data
        self.sim.bodies.append((request.url.path, body))
        return body

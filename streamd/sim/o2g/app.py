"""The simulated O2G's routes, answering from its world as the guide (004) documents them.

Rules:

1. Every route first asks the faults (:meth:`~streamd.sim.o2g.faults.O2GFaults.fault`) whether
   the request gets a scripted answer; then the session (the ``AlcUserId`` cookie): a request
   without a live session gets 403 ``INVALID_SESSION``.
2. URLs it returns use ``sim.scheme`` (``https`` behind a TLS front); its private (internal)
   URLs use ``sim.private_url`` when set (an intranet address the client may not reach).
3. Snapshots asked for over REST (agents, telephony, RTI) are answered 204; their events are
   queued like any event.
"""

from __future__ import annotations

import base64
import secrets
import time
from typing import TYPE_CHECKING

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.sim.o2g.channel import EARLY_WAIT, ChannelResponse, channel_body, deliver
from streamd.sim.o2g.control import control
from streamd.sim.o2g.directory import directory_routes
from streamd.sim.o2g.guide import error, json_response, tomcat_404
from streamd.sim.o2g.system import system_routes
from streamd.sim.o2g.world import Session, Subscription

if TYPE_CHECKING:
    from streamd.sim.o2g.simulator import O2GSimulator

R = "/api/rest/1.0"


class O2GApp:
    """The routes of one simulator."""

    def __init__(self, sim: O2GSimulator) -> None:
        self.sim = sim

    def starlette(self) -> Starlette:
        """The ASGI app."""
        sim = self.sim
        routes = [
            Route("/api/rest", self.root, methods=["GET"]),
            Route("/api/rest/authenticate", self.authenticate, methods=["GET"]),
            Route(f"{R}/sessions", self.sessions, methods=["GET", "POST", "DELETE"]),
            Route(f"{R}/sessions/keepalive", self.keepalive, methods=["POST"]),
            Route(f"{R}/subscriptions", self.subscriptions, methods=["POST", "PUT"]),
            Route(f"{R}/subscriptions/{{sid}}", self.unsubscribe, methods=["DELETE"]),
            Route("/OTEvents", self.channel, methods=["GET", "POST"]),
            Route(f"{R}/logins", self.logins, methods=["GET"]),
            Route(f"{R}/acd/agent/state", self.agent_state, methods=["GET"]),
            Route(f"{R}/acd/agent/state/snapshot", self.agent_snapshot, methods=["POST"]),
            Route(f"{R}/telephony/state", self.telephony_state, methods=["GET"]),
            Route(f"{R}/telephony/state/snapshot", self.telephony_snapshot, methods=["POST"]),
            Route(f"{R}/pbxs", self.pbxs, methods=["GET"]),
            Route(f"{R}/acd/{{node}}/pilots", self.pilot_list, methods=["GET"]),
            Route(f"{R}/acd/pilotmonitoring/{{pilot}}", self.pilot_monitoring, methods=["POST", "DELETE"]),
            Route(f"{R}/acd/pilotmonitoring/{{node}}/{{pilot}}", self.pilot_monitoring, methods=["POST", "DELETE"]),
            Route(f"{R}/acd/rti/ctx", self.rti_context, methods=["POST", "PUT", "DELETE"]),
            Route(f"{R}/acd/rti/snapshot", self.rti_snapshot, methods=["POST"]),
            *system_routes(sim, R, self.guarded),
            *directory_routes(sim, R, self.guarded),
            Route("/_sim/{action}", self.control, methods=["POST"]),
        ]  # fmt: skip
        return Starlette(routes=routes)

    async def control(self, request: Request) -> Response:
        """Out-of-band control, not O2G (:mod:`.control`)."""
        return await control(self.sim, request)

    def base(self, request: Request) -> str:
        """The base URL this request reached, with the simulator's scheme (rule 2)."""
        return str(request.base_url.replace(scheme=self.sim.scheme)).rstrip("/")

    def urls(self, request: Request) -> tuple[str, str]:
        """The bases of the public and the private (internal) URLs it returns (rule 2)."""
        public = self.base(request)
        return public, (self.sim.private_url or public).rstrip("/")

    def session_of(self, request: Request) -> Session | None:
        """The live session of the request's cookie (and it was seen now)."""
        session = self.sim.sessions.get(request.cookies.get("AlcUserId", ""))
        if session is not None:
            session.last_seen = time.monotonic()
        return session

    async def guarded(self, request: Request) -> Response | None:
        """A scripted fault, else 403 without a session, else None (rule 1)."""
        if failed := await self.sim.fault(request.url.path):
            return failed
        return None if self.session_of(request) else error(403, "INVALID_SESSION")

    async def root(self, request: Request) -> Response:
        if failed := await self.sim.fault(request.url.path):
            return failed
        auth, internal = (f"{b}/api/rest/authenticate?version=1.0" for b in self.urls(request))
        return json_response({
            "serverInfo": {"productName": "O2G Simulator", "productType": "O2G",
                           "productVersion": {"major": "2.7", "minor": "004.000"}, "haMode": self.sim.system.ha},
            "versions": [{"id": "1.0", "status": "CURRENT", "publicUrl": auth, "internalUrl": internal}],
        })  # fmt: skip

    async def authenticate(self, request: Request) -> Response:
        if failed := await self.sim.fault(request.url.path):
            return failed
        expected = "Basic " + base64.b64encode(f"{self.sim.username}:{self.sim.password}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return error(401, "NOT_ALLOWED")
        token = "eyJhbGciOiJIUzI1NiJ9." + secrets.token_hex(16)
        sessions, internal = (f"{b}{R}/sessions" for b in self.urls(request))
        body = {"credential": token, "publicUrl": sessions, "internalUrl": internal, "expired": "false"}
        response = json_response(body)
        response.set_cookie("AlcUserId", token, path="/")
        return response

    async def sessions(self, request: Request) -> Response:
        if failed := await self.sim.fault(request.url.path):
            return failed
        token = request.cookies.get("AlcUserId", "")
        if request.method == "POST":
            if not token.startswith("eyJ"):
                return error(403, "INVALID_SESSION")
            if token in self.sim.sessions:
                return error(403, "NOT_ALLOWED")  # a cookie opens one session only (004 L705)
            body = orjson.loads(await request.body() or b"{}")
            ttl = float(body.get("timeToLive") or self.sim.session_ttl)
            self.sim.sessions[token] = Session(token, ttl, time.monotonic())
            base, internal = (f"{b}{R}" for b in self.urls(request))
            ttl_out: str | float = str(int(ttl)) if ttl.is_integer() else ttl  # "1800" as in 004 L930
            response = json_response({"admin": True, "timeToLive": ttl_out, "publicBaseUrl": base,
                                      "privateBaseUrl": internal, "services": [], "otherSessions": []})  # fmt: skip
            response.set_cookie("JSESSIONID", secrets.token_hex(8) + ".tomcat", path="/api")
            return response
        session = self.session_of(request)
        if session is None:
            return error(403 if request.method == "GET" else 500, "INVALID_SESSION")
        if request.method == "DELETE":
            self.sim.drop_session(token)
            return Response(status_code=204)
        return json_response({"admin": True, "timeToLive": int(session.ttl)})

    async def keepalive(self, request: Request) -> Response:
        return await self.guarded(request) or Response(status_code=204)

    async def subscriptions(self, request: Request) -> Response:
        sim = self.sim
        if failed := await self.guarded(request):
            return failed
        session = self.session_of(request)
        assert session is not None
        body = orjson.loads(await request.body() or b"{}")
        if request.method == "PUT":
            for sub in session.subs.values():
                sub.selectors = list(body.get("selectors") or [])
            return Response(status_code=204)
        selectors = list((body.get("filter") or {}).get("selectors") or [])
        if body.get("version") != "1.0" or not selectors or sim.refuse_subscriptions:
            message = sim.refuse_subscriptions or "version 1.0 and a selector are required"
            return json_response({"status": "REFUSED", "message": message})
        sid = secrets.token_hex(12)
        sub = Subscription(sid, session, selectors, body.get("webHookUrl"))
        session.subs[sid] = sub
        if sub.webhook_url:
            early, sim.early = sim.early, []
            for event in early:
                sub.put(orjson.dumps(event) + b"\n")
            sim.start_soon(lambda http: deliver(sim, http, sub))
            if early:  # O2G delivers before the client has its answer (issue 15 item 5)
                with anyio.move_on_after(EARLY_WAIT):
                    await sub.answered.wait()
            return json_response(
                {"subscriptionId": sid, "status": "ACCEPTED", "mode": "WEBHOOK", "format": "JSON"}
            )
        sub.unread_since = time.monotonic()  # the first opening has the same minute (spec ambiguity 4)
        poll, internal = (f"{b}/OTEvents?subscriptionId={sid}" for b in self.urls(request))
        return json_response({"subscriptionId": sid, "publicPollingUrl": poll, "privatePollingUrl": internal,
                              "status": "ACCEPTED", "mode": "CHUNK", "format": "JSON"})  # fmt: skip

    async def unsubscribe(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        session = self.session_of(request)
        assert session is not None
        sub = session.subs.pop(request.path_params["sid"], None)
        if sub is None:
            return error(400, "NOT_FOUND")
        sub.close()
        return Response(status_code=204)

    async def channel(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        session = self.session_of(request)
        assert session is not None
        sub = session.subs.get(request.query_params.get("subscriptionId", ""))
        if sub is None or sub.webhook_url:
            return error(404, "NOT_FOUND")
        sub.channel += 1  # one reader per subscription: a new channel closes the old one
        sub.wake.set()
        return ChannelResponse(sub, sub.channel, channel_body(self.sim, sub, sub.channel))

    async def logins(self, request: Request) -> Response:
        return await self.guarded(request) or json_response({"loginNames": list(self.sim.agents)})

    async def agent_state(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        state = self.sim.agents.get(request.query_params.get("loginName", ""))
        return json_response(state) if state else error(404, "NOT_FOUND")

    async def agent_snapshot(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        self.sim.publish(*(self.sim.traffic.agent_event(login) for login in self.sim.agents))
        return Response(status_code=204)

    async def telephony_state(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        login = request.query_params.get("loginName", "")
        if login not in self.sim.agents:
            return error(400, "NOT_FOUND")
        return json_response(self.sim.traffic.telephony_event(login)["state"])

    async def telephony_snapshot(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        login = request.query_params.get("loginName")
        if login is not None and login not in self.sim.agents:
            return error(400, "NOT_FOUND")
        users = [login] if login is not None else list(self.sim.agents)
        self.sim.publish(*(self.sim.traffic.telephony_event(user) for user in users))
        return Response(status_code=204)

    async def pbxs(self, request: Request) -> Response:
        return await self.guarded(request) or json_response({"nodeIds": self.sim.nodes})

    async def pilot_list(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        node = request.path_params["node"]
        if node not in self.sim.nodes:
            return error(404, "NOT_FOUND")
        pilots = [pilot for number, pilot in self.sim.pilots.items() if self.sim.pilot_nodes[number] == node]
        return json_response({"pilotList": pilots})

    async def pilot_monitoring(self, request: Request) -> Response:
        node = request.path_params.get("node")
        if node is None and self.sim.legacy:
            return tomcat_404()  # /acd/pilotmonitoring/{pilotNumber} is "since version 2.7.2"
        if failed := await self.guarded(request):
            return failed
        session = self.session_of(request)
        assert session is not None
        pilot = request.path_params["pilot"]
        if pilot not in self.sim.pilots or node not in (None, self.sim.pilot_nodes[pilot]):
            return error(404, "NOT_FOUND")
        if request.method == "POST":
            session.pilots.add(pilot)
        else:
            session.pilots.discard(pilot)
        return Response(status_code=204)

    async def rti_context(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        body = orjson.loads(await request.body() or b"null")
        self.sim.rti_context = None if request.method == "DELETE" else body
        return Response(status_code=204)

    async def rti_snapshot(self, request: Request) -> Response:
        if failed := await self.guarded(request):
            return failed
        if self.sim.rti_context is not None:
            self.sim.publish(*self.sim.traffic.rti_snapshot())
        return Response(status_code=204)

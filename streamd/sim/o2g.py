"""A simulated ALE OmniPCX Open Gateway: a real HTTP server (starlette + uvicorn) on 127.0.0.1.

Rules:

1. It speaks the protocol streamd's client speaks, as 004 documents it: discovery ``GET
   /api/rest``, Basic login setting ``AlcUserId``, sessions with a TTL and keepalive, subscriptions
   (selectors matched per package and id), the HTTP chunk channel ``POST /OTEvents?subscriptionId=``
   (NDJSON events, ``OnChannelInformation`` keepalives when idle), webhook POSTs carrying the
   subscription id as the Cookie header, and the REST state the snapshot reads.
2. Events are queued per subscription and leave the queue only once written to a channel (or
   acknowledged 2xx by a webhook), so a client that reconnects to the same subscription loses
   nothing; a deleted or expired subscription loses its queue, as O2G's does (004 L2313-2314),
   and so does a chunk subscription whose channel stayed closed for ``reopen_window`` seconds
   (one minute: 004 L2142, L2145).
3. Selectors match as the guide says: ``"*"`` stands for every *user* (004 L2107), so it matches
   no ``pilot``/``rsi`` event, whose ids are pilot / RSI numbers (004 L2102-2103); pilot events
   exist only for pilots a live session monitors (``POST /acd/pilotmonitoring/{pilot}``, or the
   pre-2.7.2 ``/{nodeId}/{pilot}`` form, 004 L14349-14469); ``OnServerStart`` goes only to a
   webhook subscription that names it (004 L8950). Pilots are spread over ``nodes`` PBX nodes.
4. Faults are scripted through methods (:meth:`O2GSimulator.fail_next` (``error="tomcat"``: an
   HTML 404), :meth:`cut_next_event` (after some whole events), :meth:`end_next_channels` (empty
   channels), :meth:`close_channels`, :meth:`drop_subscriptions`, :meth:`expire_sessions`,
   :meth:`silence`, :meth:`set_down`, :meth:`set_deploying` (Tomcat's 404 while the webapp
   deploys after a restart), :meth:`post_early` (a webhook POST before the subscription's
   answer), ``legacy=True`` (a server older than 2.7.2), a wrong :attr:`password`); every request
   is in :attr:`requests`. ``scheme="https"`` makes the URLs it returns fit a TLS front.
5. Telephony state (004 L4516-4592): ``GET /telephony/state?loginName=`` answers a user's
   ``TelephonicState``; ``POST /telephony/state/snapshot`` (all users without ``loginName``, one
   with it) is acknowledged 204 and its answers, one ``OnTelephonyState`` per user, are queued
   like any event. Calls begin and end unseen with ``sim.traffic.hold_call`` / ``drop_call``.
6. System events (004 L8926-8954) are published by :meth:`cti_link`, :meth:`pbx_loaded`,
   :meth:`license_expiration` and :meth:`server_start`; only subscriptions naming the ``system``
   package (or the event) get them (``OnServerStart``: only a webhook subscription, rule 3).
7. ``deviate=0.1`` makes that share of the published events deviate from the guide the way real
   servers do (:mod:`streamd.sim.deviate`: a missing field, a number as a string, an unknown
   field...), never in their routing fields; :attr:`deviated` lists the changed paths.

Use ``async with O2GSimulator(agents=20, rate=50) as sim: ... sim.url``; ``rate=0`` (the default)
generates nothing by itself: tests call :meth:`publish` or :meth:`generate`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamd.sim.deviate import Guide, deviate
from streamd.sim.o2g_traffic import O2GTraffic
from streamd.sim.server import serving

log = logging.getLogger("streamd.sim.o2g")

KEEPALIVE = b'{"eventName":"OnChannelInformation","text":"keepalive"}\n'

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
_EVENT_PACKAGES: dict[str, list[str]] = {}
for _package, _events in PACKAGE_EVENTS.items():
    for _event in _events:
        _EVENT_PACKAGES.setdefault(_event, []).append(_package)
_ID_FIELD = {"pilot": "pilot", "rti": "number", "rsi": "rsiPoint"}
_NUMBERED = frozenset({"pilot", "rsi"})  # ids are pilot / RSI numbers: "*" (all users) matches none
SERVER_START = "OnServerStart"
EARLY_WAIT = 0.5
"""Seconds a webhook subscription's answer waits for its early POST to be answered (:meth:`post_early`)."""
TOMCAT_404 = (
    b'<!doctype html><html lang="en"><head><title>HTTP Status 404 \xe2\x80\x93 Not Found</title></head>'
    b"<body><h1>HTTP Status 404 \xe2\x80\x93 Not Found</h1></body></html>"
)
"""What Tomcat answers for the O2G paths while the webapp is still deploying: no RestErrorInfo."""
_ERRORS = {
    "NOT_READY": (1000, True, "The server is not yet available. Please retry later."),
    "INVALID_SESSION": (1001, True, "No valid session found for the given identifier."),
    "NOT_ALLOWED": (1002, False, "Not allowed: insufficient rights or bad credential."),
    "NOT_FOUND": (1003, True, "Missing or bad parameter sent by a request on a service."),
    "SERVER_PROBLEM": (1007, False, "Server general problem. Please contact the installer."),
}


GUIDE = Guide(
    routing=frozenset({"eventName", "loginName", "pilot", "number", "nodeId", "supervisor", "rsiPoint"}),
    required=frozenset({"callRef", "deviceId", "mainState", "id", "main", "participantId", "caller"}),
    enums=frozenset({"mainState", "subState", "cause", "main"}),
)
"""What the O2G guide (004) says of the simulated traffic's events, for :func:`deviate`: the
fields that route an event (its name, its key), the ones it marks required, the enumerations."""


class _Cut(Exception):
    """Raised inside a channel body to abort the connection mid-event."""


class _QuietCut(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Cut))


_QUIET_CUT = _QuietCut()


@dataclass(eq=False)
class _Session:
    token: str
    ttl: float
    last_seen: float
    subs: dict[str, _Sub] = field(default_factory=dict)
    pilots: set[str] = field(default_factory=set)  # the pilots this session monitors


@dataclass(eq=False)
class _Sub:
    id: str
    session: _Session
    selectors: list[dict[str, Any]]
    webhook_url: str | None
    pending: deque[bytes] = field(default_factory=deque)
    wake: anyio.Event = field(default_factory=anyio.Event)
    channel: int = 0
    closed: bool = False
    reader: int | None = None  # the channel reading it now, if any
    unread_since: float | None = None  # when it was last left without a reader (chunk mode)
    answered: anyio.Event = field(default_factory=anyio.Event)  # its first webhook POST was answered

    def matches(self, event: dict[str, Any]) -> bool:
        name = str(event.get("eventName", ""))
        packages = _EVENT_PACKAGES.get(name, [])
        if name == SERVER_START and not self.webhook_url:
            return False  # "needs a webhook url to be configured" (004 L8950)
        for selector in self.selectors:
            names = selector.get("names") or []
            if name not in names and not any(p in names for p in packages):
                continue
            ids = selector.get("ids")
            package = next((p for p in packages if p in names), packages[0] if packages else "")
            key = _ID_FIELD.get(package, "loginName")
            if not ids or ("*" in ids and package not in _NUMBERED) or key not in event:
                return True  # no key field: an unroutable event injected for streamd to dead-letter
            if str(event.get(key, "")) in ids:
                return True
        return False

    def put(self, data: bytes) -> None:
        self.pending.append(data)
        self.wake.set()


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request the simulator answered."""

    method: str
    path: str
    status: int


class O2GSimulator:
    """A fake O2G server with realistic agent/call traffic and scriptable faults."""

    def __init__(
        self,
        *,
        agents: int = 10,
        pilots: int = 2,
        nodes: int = 1,
        rate: float = 0.0,
        username: str = "admin",
        password: str = "admin",
        session_ttl: float = 1800.0,
        keepalive_period: float = 60.0,
        webhook_cookie: str = "value",
        events_per_chunk: int = 512,
        stamp: str | None = None,
        deviate: float = 0.0,
        seed: int | None = 0,
        reopen_window: float = 60.0,
        legacy: bool = False,
        scheme: str = "http",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.username, self.password = username, password
        self.session_ttl, self.keepalive_period, self.rate = session_ttl, keepalive_period, rate
        self.webhook_cookie = webhook_cookie  # "value": Cookie: <id>; "named": Cookie: subscriptionId=<id>
        self.events_per_chunk = events_per_chunk  # at most this many queued events per HTTP chunk
        self.stamp = stamp  # a field added to every published event: time.time_ns() when queued
        self.host, self.port = host, port
        self.deviate = deviate  # this share of published events deviates from the guide (sim.deviate)
        self.deviated: list[str] = []  # the JSON path each deviating event changed, in order
        self._deviate_rng = random.Random(seed)
        self.reopen_window = reopen_window  # a chunk subscription left unread this long is closed
        self.legacy = legacy  # older than 2.7.2: pilot monitoring only as /acd/pilotmonitoring/{node}/{pilot}
        self.scheme = scheme  # of the URLs it returns ("https" behind a TLS-terminating proxy)
        self.down = False
        self.deploying = False
        self.refuse_subscriptions: str | None = None  # a message: every subscription is REFUSED
        self.requests: list[LoggedRequest] = []
        self.webhook_log: list[tuple[str, int]] = []
        self.sessions: dict[str, _Session] = {}
        self.rti_context: Any = None
        self.published = 0
        self._prepared: list[dict[str, Any]] = []
        self._faults: list[list[Any]] = []  # [path fragment, status, remaining, error type]
        self._cut_next: int | None = None  # whole events written before the cut, when armed
        self._early: list[dict[str, Any]] = []
        self._empty_next = 0
        self._silent = False
        self._closing = False
        self.traffic = O2GTraffic(agents=agents, pilots=pilots, seed=seed)
        self.agents = self.traffic.agents
        self.pilots = self.traffic.pilots
        self.nodes = [str(n + 1) for n in range(max(1, nodes))]
        self.pilot_nodes = {p: self.nodes[i % len(self.nodes)] for i, p in enumerate(self.pilots)}
        self._serving: AbstractAsyncContextManager[str] | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._traffic_running = False
        self._http: httpx.AsyncClient | None = None
        self.url = ""

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> O2GSimulator:
        self._http = httpx.AsyncClient(timeout=5.0)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        logging.getLogger("uvicorn.error").addFilter(_QUIET_CUT)
        self._serving = serving(_RequestLog(self._app(), self), host=self.host, port=self.port)
        self.url = await self._serving.__aenter__()
        self._tg.start_soon(self._reaper)
        if self.rate > 0:
            self._start_traffic()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._tg is not None
        assert self._serving is not None
        assert self._http is not None
        self._closing = True
        for sub in self._all_subs():
            sub.wake.set()
        await self._serving.__aexit__(None, None, None)
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        await self._http.aclose()

    async def serve_forever(self) -> None:
        """Run until cancelled (for ``streamd demo`` / ``streamd simulate``)."""
        async with self:
            log.warning("O2G simulator on %s (user %s / %s)", self.url, self.username, self.password)
            await anyio.sleep_forever()

    # -- faults --------------------------------------------------------------------------

    def fail_next(self, path: str, status: int = 503, count: int = 1, error: str = "NOT_READY") -> None:
        """Answer the next ``count`` requests whose path contains ``path`` with ``status``."""
        self._faults.append([path, status, count, error])

    def clear_faults(self) -> None:
        """Forget the faults :meth:`fail_next` scripted and did not use yet."""
        self._faults.clear()

    def end_next_channels(self, count: int = 1) -> None:
        """The next ``count`` chunk channels close at once, without writing a byte."""
        self._empty_next += count

    def cut_next_event(self, after: int = 0) -> None:
        """Abort the next chunk channel that writes: ``after`` whole events, then half of the next."""
        self._cut_next = after

    def expire_sessions(self) -> None:
        """Expire every session now: their subscriptions and channels are closed."""
        for token in list(self.sessions):
            self._drop_session(token)

    def silence(self, on: bool = True) -> None:
        """Stop (or resume) writing anything, keepalives included, on every chunk channel."""
        self._silent = on
        if not on:
            for sub in self._all_subs():
                sub.wake.set()

    def set_down(self, down: bool = True) -> None:
        """Take the server down (every request 503, channels closed, sessions lost) or up again."""
        self.down = down
        if down:
            self.expire_sessions()

    def set_deploying(self, deploying: bool = True) -> None:
        """Restart O2G: sessions lost, and until called with False Tomcat answers every request
        with its HTML 404 (no ``RestErrorInfo``): the webapp is still deploying."""
        self.deploying = deploying
        if deploying:
            self.expire_sessions()

    def post_early(self, *events: dict[str, Any]) -> None:
        """POST ``events`` to the next webhook subscription *before* answering its creation: O2G
        delivers as soon as the subscription exists (the answer waits up to :data:`EARLY_WAIT` s
        for the first POST's answer)."""
        self._early.extend(events)

    @property
    def monitored_pilots(self) -> set[str]:
        """Pilots some live session monitors: only their pilot events exist."""
        return {p for session in self.sessions.values() for p in session.pilots}

    def filters(self) -> list[list[dict[str, Any]]]:
        """The selectors of each live subscription."""
        return [sub.selectors for sub in self._all_subs()]

    def drop_subscriptions(self) -> None:
        """Delete every subscription server-side (their channels close; the sessions stay)."""
        for session in self.sessions.values():
            for sub in session.subs.values():
                _close(sub)
            session.subs.clear()

    def close_channels(self) -> None:
        """Close every open chunk channel cleanly (the subscriptions stay)."""
        for sub in self._all_subs():
            sub.channel += 1
            sub.wake.set()

    # -- system events (rule 6) ----------------------------------------------------------

    def cti_link(self, node: str, up: bool) -> int:
        """``OnCtiLinkDown`` / ``OnCtiLinkUp`` of ``node``; returns how many subscriptions got it."""
        return self.publish({"eventName": "OnCtiLinkUp" if up else "OnCtiLinkDown", "nodeId": node})

    def pbx_loaded(self, node: str) -> int:
        """``OnPbxLoaded``: the data of ``node`` are fully loaded (004 L8944-8948)."""
        return self.publish({"eventName": "OnPbxLoaded", "nodeId": node})

    def license_expiration(self, days: int, message: str = "license file expiration") -> int:
        """``OnLicenseExpiration``: the licence file expires in ``days`` (negative: expired since)."""
        return self.publish({"eventName": "OnLicenseExpiration", "message": message, "nbDays": days})

    def server_start(self) -> int:
        """``OnServerStart`` (webhook subscriptions naming it only, 004 L8950)."""
        return self.publish({"eventName": SERVER_START, "serverId": self.host})

    # -- traffic -------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        """Ids of the live subscriptions."""
        return [s.id for s in self._all_subs()]

    def publish(self, *events: dict[str, Any]) -> int:
        """Queue events for every subscription whose selectors match; returns how many matched."""
        matched = 0
        monitored = self.monitored_pilots
        for event in events:
            pilot = event.get("pilot")
            if "pilot" in _EVENT_PACKAGES.get(str(event.get("eventName")), ()) and (
                pilot is not None and str(pilot) not in monitored
            ):
                continue  # no monitoring, no event (004 L14343-14360)
            if self.deviate and self._deviate_rng.random() < self.deviate:
                event, path = deviate(event, self._deviate_rng, GUIDE)
                self.deviated.append(path)
            if self.stamp is not None:  # for latency benchmarks: when the vendor wrote it
                event = {**event, self.stamp: time.time_ns()}
            data = orjson.dumps(event) + b"\n"
            self.published += 1
            for sub in self._all_subs():
                if sub.matches(event):
                    sub.put(data)
                    matched += 1
        return matched

    def publish_raw(self, data: bytes) -> None:
        """Queue raw bytes (e.g. a malformed event) on every subscription."""
        for sub in self._all_subs():
            sub.put(data)

    def generate(self, n: int) -> list[dict[str, Any]]:
        """Produce (and publish) at least ``n`` realistic agent, call and pilot events."""
        produced: list[dict[str, Any]] = []
        while len(produced) < n:
            produced.extend(self.traffic.tick())
        self.publish(*produced)
        return produced

    def _start_traffic(self) -> None:
        if not self._traffic_running:
            assert self._tg is not None
            self._traffic_running = True
            self._tg.start_soon(self._traffic)

    async def _traffic(self) -> None:
        """Generate ``rate`` events per second, paced by the clock (sleeps overshoot; this does not)."""
        budget, last = 0.0, time.monotonic()
        while True:
            await anyio.sleep(0.001 if self.rate >= 1000 else 0.01 if self.rate >= 100 else 0.1)
            now = time.monotonic()
            budget, last = budget + self.rate * (now - last), now
            if budget >= 1 and not self.down:
                produced = self.generate(int(budget))
                budget -= len(produced)  # a tick may yield a few events more: owed back
            elif self.rate <= 0:
                budget = 0.0

    async def _reaper(self) -> None:
        while True:
            await anyio.sleep(0.05)
            now = time.monotonic()
            for token, session in list(self.sessions.items()):
                if now - session.last_seen > session.ttl:
                    self._drop_session(token)
                    continue
                for sid, sub in list(session.subs.items()):
                    if sub.unread_since is not None and now - sub.unread_since > self.reopen_window:
                        del session.subs[sid]  # "closed after the socket ... closed for one minute"
                        _close(sub)

    # -- HTTP ----------------------------------------------------------------------------

    def _app(self) -> Starlette:
        r = "/api/rest/1.0"
        routes = [
            Route("/api/rest", self._root, methods=["GET"]),
            Route("/api/rest/authenticate", self._authenticate, methods=["GET"]),
            Route(f"{r}/sessions", self._sessions, methods=["GET", "POST", "DELETE"]),
            Route(f"{r}/sessions/keepalive", self._keepalive, methods=["POST"]),
            Route(f"{r}/subscriptions", self._subscriptions, methods=["POST", "PUT"]),
            Route(f"{r}/subscriptions/{{sid}}", self._unsubscribe, methods=["DELETE"]),
            Route("/OTEvents", self._channel, methods=["GET", "POST"]),
            Route(f"{r}/logins", self._logins, methods=["GET"]),
            Route(f"{r}/acd/agent/state", self._agent_state, methods=["GET"]),
            Route(f"{r}/acd/agent/state/snapshot", self._agent_snapshot, methods=["POST"]),
            Route(f"{r}/telephony/state", self._telephony_state, methods=["GET"]),
            Route(f"{r}/telephony/state/snapshot", self._telephony_snapshot, methods=["POST"]),
            Route(f"{r}/pbxs", self._pbxs, methods=["GET"]),
            Route(f"{r}/acd/{{node}}/pilots", self._pilot_list, methods=["GET"]),
            Route(f"{r}/acd/pilotmonitoring/{{pilot}}", self._pilot_monitoring, methods=["POST", "DELETE"]),
            Route(
                f"{r}/acd/pilotmonitoring/{{node}}/{{pilot}}",
                self._pilot_monitoring,
                methods=["POST", "DELETE"],
            ),
            Route(f"{r}/acd/rti/ctx", self._rti_context, methods=["POST", "PUT", "DELETE"]),
            Route(f"{r}/acd/rti/snapshot", self._rti_snapshot, methods=["POST"]),
            Route("/_sim/{action}", self._control, methods=["POST"]),
        ]
        return Starlette(routes=routes)

    def _base(self, request: Request) -> str:
        return str(request.base_url.replace(scheme=self.scheme)).rstrip("/")

    def _fault(self, request: Request) -> Response | None:
        if self.down:
            return _error(503, "NOT_READY")
        if self.deploying:
            return _tomcat_404()
        for fault in self._faults:
            if fault[0] in request.url.path and fault[2] > 0:
                fault[2] -= 1
                return _tomcat_404() if fault[3] == "tomcat" else _error(fault[1], fault[3])
        return None

    def _session_of(self, request: Request) -> _Session | None:
        session = self.sessions.get(request.cookies.get("AlcUserId", ""))
        if session is not None:
            session.last_seen = time.monotonic()
        return session

    async def _root(self, request: Request) -> Response:
        if failed := self._fault(request):
            return failed
        auth = f"{self._base(request)}/api/rest/authenticate?version=1.0"
        return _json({
            "serverInfo": {"productName": "O2G Simulator", "productType": "O2G",
                           "productVersion": {"major": "2.7", "minor": "004.000"}, "haMode": False},
            "versions": [{"id": "1.0", "status": "CURRENT", "publicUrl": auth, "internalUrl": auth}],
        })  # fmt: skip

    async def _authenticate(self, request: Request) -> Response:
        if failed := self._fault(request):
            return failed
        expected = "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return _error(401, "NOT_ALLOWED")
        token = "eyJhbGciOiJIUzI1NiJ9." + secrets.token_hex(16)
        sessions = f"{self._base(request)}/api/rest/1.0/sessions"
        body = {"credential": token, "publicUrl": sessions, "internalUrl": sessions, "expired": "false"}
        response = _json(body)
        response.set_cookie("AlcUserId", token, path="/")
        return response

    async def _sessions(self, request: Request) -> Response:
        if failed := self._fault(request):
            return failed
        token = request.cookies.get("AlcUserId", "")
        if request.method == "POST":
            if not token.startswith("eyJ"):
                return _error(403, "INVALID_SESSION")
            if token in self.sessions:
                return _error(403, "NOT_ALLOWED")  # a cookie opens one session only (004 L705)
            body = orjson.loads(await request.body() or b"{}")
            ttl = float(body.get("timeToLive") or self.session_ttl)
            self.sessions[token] = _Session(token, ttl, time.monotonic())
            base = f"{self._base(request)}/api/rest/1.0"
            ttl_out: str | float = str(int(ttl)) if ttl.is_integer() else ttl  # "1800" as in 004 L930
            response = _json({"admin": True, "timeToLive": ttl_out, "publicBaseUrl": base,
                              "privateBaseUrl": base, "services": [], "otherSessions": []})  # fmt: skip
            response.set_cookie("JSESSIONID", secrets.token_hex(8) + ".tomcat", path="/api")
            return response
        session = self._session_of(request)
        if session is None:
            return _error(403 if request.method == "GET" else 500, "INVALID_SESSION")
        if request.method == "DELETE":
            self._drop_session(token)
            return Response(status_code=204)
        return _json({"admin": True, "timeToLive": int(session.ttl)})

    async def _keepalive(self, request: Request) -> Response:
        if failed := self._fault(request):
            return failed
        if self._session_of(request) is None:
            return _error(403, "INVALID_SESSION")
        return Response(status_code=204)

    async def _subscriptions(self, request: Request) -> Response:
        if failed := self._fault(request):
            return failed
        session = self._session_of(request)
        if session is None:
            return _error(403, "INVALID_SESSION")
        body = orjson.loads(await request.body() or b"{}")
        if request.method == "PUT":
            for sub in session.subs.values():
                sub.selectors = list(body.get("selectors") or [])
            return Response(status_code=204)
        selectors = list((body.get("filter") or {}).get("selectors") or [])
        if body.get("version") != "1.0" or not selectors or self.refuse_subscriptions:
            message = self.refuse_subscriptions or "version 1.0 and a selector are required"
            return _json({"status": "REFUSED", "message": message})
        sid = secrets.token_hex(12)
        sub = _Sub(sid, session, selectors, body.get("webHookUrl"))
        session.subs[sid] = sub
        if sub.webhook_url:
            assert self._tg is not None
            early, self._early = self._early, []
            for event in early:
                sub.put(orjson.dumps(event) + b"\n")
            self._tg.start_soon(self._deliver, sub)
            if early:  # O2G delivers before the client has its answer (issue 15 item 5)
                with anyio.move_on_after(EARLY_WAIT):
                    await sub.answered.wait()
            return _json({"subscriptionId": sid, "status": "ACCEPTED", "mode": "WEBHOOK", "format": "JSON"})
        sub.unread_since = time.monotonic()  # the first opening has the same minute (spec ambiguity 4)
        poll = f"{self._base(request)}/OTEvents?subscriptionId={sid}"
        return _json({"subscriptionId": sid, "publicPollingUrl": poll, "privatePollingUrl": poll,
                      "status": "ACCEPTED", "mode": "CHUNK", "format": "JSON"})  # fmt: skip

    async def _unsubscribe(self, request: Request) -> Response:
        if failed := self._fault(request):
            return failed
        session = self._session_of(request)
        if session is None:
            return _error(403, "INVALID_SESSION")
        sub = session.subs.pop(request.path_params["sid"], None)
        if sub is None:
            return _error(400, "NOT_FOUND")
        _close(sub)
        return Response(status_code=204)

    async def _channel(self, request: Request) -> Response:
        if failed := self._fault(request):
            return failed
        session = self._session_of(request)
        if session is None:
            return _error(403, "INVALID_SESSION")
        sub = session.subs.get(request.query_params.get("subscriptionId", ""))
        if sub is None or sub.webhook_url:
            return _error(404, "NOT_FOUND")
        sub.channel += 1  # one reader per subscription: a new channel closes the old one
        sub.wake.set()
        return _Channel(sub, sub.channel, self._channel_body(sub, sub.channel))

    async def _channel_body(self, sub: _Sub, channel: int) -> AsyncIterator[bytes]:
        def open_() -> bool:
            return not (self._closing or self.down or sub.closed or sub.channel != channel)

        if self._empty_next:
            self._empty_next -= 1
            return

        while open_():
            if self._silent:
                await anyio.sleep(0.01)
                continue
            if sub.pending:
                if self._cut_next is not None:
                    whole = min(self._cut_next, len(sub.pending) - 1)
                    self._cut_next = None
                    if whole:
                        yield b"".join(sub.pending[i] for i in range(whole))
                        for _ in range(whole):
                            sub.pending.popleft()
                    first = sub.pending[0]
                    yield first[: len(first) // 2]
                    raise _Cut("cut mid-event")
                batch = [sub.pending[i] for i in range(min(self.events_per_chunk, len(sub.pending)))]
                yield b"".join(batch)
                for _ in batch:  # only written events leave the queue
                    sub.pending.popleft()
                continue
            sub.wake = anyio.Event()
            with anyio.move_on_after(self.keepalive_period) as idle:
                await sub.wake.wait()
            if idle.cancelled_caught and open_() and not self._silent:
                yield KEEPALIVE

    async def _deliver(self, sub: _Sub) -> None:
        assert self._http is not None
        cookie = sub.id if self.webhook_cookie == "value" else f"subscriptionId={sub.id}"
        while not (sub.closed or self._closing):
            if not sub.pending or self.down:
                sub.wake = anyio.Event()
                with anyio.move_on_after(0.2):
                    await sub.wake.wait()
                continue
            try:
                response = await self._http.post(
                    str(sub.webhook_url),
                    content=sub.pending[0].rstrip(b"\n"),
                    headers={"Cookie": cookie, "Content-Type": "application/json"},
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            self.webhook_log.append((sub.id, status))
            sub.answered.set()
            if 200 <= status < 300 or 400 <= status < 500:
                sub.pending.popleft()  # delivered, or refused for good
            else:
                await anyio.sleep(0.05)

    async def _control(self, request: Request) -> Response:
        """Out-of-band control for drivers in another process (benchmarks, demos): not O2G.

        ``POST /_sim/generate?n=N`` generates and publishes; ``POST /_sim/prepare?n=N`` generates
        without publishing and answers the events as NDJSON (``&bad=0.1``: that share is bad, half
        of it deviating from the guide, half unroutable: its key field left out);
        ``POST /_sim/release`` publishes them;
        ``POST /_sim/pause`` / ``resume`` stop and restart writing on the chunk channels;
        ``POST /_sim/rate?rate=R`` sets the generated traffic to R events/s (0 stops it) and answers
        how many events were published so far; ``POST /_sim/stats`` answers that and how many
        events wait in subscription queues (not yet written to a channel).
        """
        action, n = request.path_params["action"], int(request.query_params.get("n", "1"))
        if action == "generate":
            return _json({"events": len(self.generate(n))})
        if action == "prepare":
            self._prepared = []
            while len(self._prepared) < n:
                self._prepared.extend(self.traffic.tick())
            bad = float(request.query_params.get("bad", "0"))
            for i, event in enumerate(self._prepared):
                roll = self._deviate_rng.random()
                if roll < bad / 2:
                    self._prepared[i] = deviate(event, self._deviate_rng, GUIDE)[0]
                elif roll < bad:
                    self._prepared[i] = {
                        k: v for k, v in event.items() if k == "eventName" or k not in GUIDE.routing
                    }
            return Response(b"".join(orjson.dumps(e) + b"\n" for e in self._prepared))
        if action in ("pause", "resume"):
            self.silence(action == "pause")
            return _json({"silent": self._silent})
        if action == "rate":
            self.rate = float(request.query_params.get("rate", "0"))
            if self.rate > 0:
                self._start_traffic()
            return _json({"rate": self.rate, "published": self.published})
        if action == "stats":
            queued = sum(len(sub.pending) for sub in self._all_subs())
            return _json({"published": self.published, "queued": queued})
        if action == "release":
            released, self._prepared = self._prepared, []
            return _json({"events": len(released), "matched": self.publish(*released)})
        return Response(status_code=404)

    async def _logins(self, request: Request) -> Response:
        return self._guarded(request) or _json({"loginNames": list(self.agents)})

    async def _agent_state(self, request: Request) -> Response:
        if failed := self._guarded(request):
            return failed
        state = self.agents.get(request.query_params.get("loginName", ""))
        return _json(state) if state else _error(404, "NOT_FOUND")

    async def _agent_snapshot(self, request: Request) -> Response:
        if failed := self._guarded(request):
            return failed
        self.publish(*(self.traffic.agent_event(login) for login in self.agents))
        return Response(status_code=204)

    async def _telephony_state(self, request: Request) -> Response:
        if failed := self._guarded(request):
            return failed
        login = request.query_params.get("loginName", "")
        if login not in self.agents:
            return _error(400, "NOT_FOUND")
        return _json(self.traffic.telephony_event(login)["state"])

    async def _telephony_snapshot(self, request: Request) -> Response:
        if failed := self._guarded(request):
            return failed
        login = request.query_params.get("loginName")
        if login is not None and login not in self.agents:
            return _error(400, "NOT_FOUND")
        users = [login] if login is not None else list(self.agents)
        self.publish(*(self.traffic.telephony_event(user) for user in users))
        return Response(status_code=204)

    async def _pbxs(self, request: Request) -> Response:
        return self._guarded(request) or _json({"nodeIds": self.nodes})

    async def _pilot_list(self, request: Request) -> Response:
        if failed := self._guarded(request):
            return failed
        node = request.path_params["node"]
        if node not in self.nodes:
            return _error(404, "NOT_FOUND")
        pilots = [pilot for number, pilot in self.pilots.items() if self.pilot_nodes[number] == node]
        return _json({"pilotList": pilots})

    async def _pilot_monitoring(self, request: Request) -> Response:
        node = request.path_params.get("node")
        if node is None and self.legacy:
            return _tomcat_404()  # /acd/pilotmonitoring/{pilotNumber} is "since version 2.7.2"
        if failed := self._guarded(request):
            return failed
        session = self._session_of(request)
        assert session is not None
        pilot = request.path_params["pilot"]
        if pilot not in self.pilots or node not in (None, self.pilot_nodes[pilot]):
            return _error(404, "NOT_FOUND")
        if request.method == "POST":
            session.pilots.add(pilot)
        else:
            session.pilots.discard(pilot)
        return Response(status_code=204)

    async def _rti_context(self, request: Request) -> Response:
        if failed := self._guarded(request):
            return failed
        self.rti_context = (
            None if request.method == "DELETE" else orjson.loads(await request.body() or b"null")
        )
        return Response(status_code=204)

    async def _rti_snapshot(self, request: Request) -> Response:
        if failed := self._guarded(request):
            return failed
        if self.rti_context is not None:
            self.publish(*self.traffic.rti_snapshot())
        return Response(status_code=204)

    def _guarded(self, request: Request) -> Response | None:
        if failed := self._fault(request):
            return failed
        return None if self._session_of(request) else _error(403, "INVALID_SESSION")

    def _all_subs(self) -> list[_Sub]:
        return [sub for session in self.sessions.values() for sub in session.subs.values()]

    def _drop_session(self, token: str) -> None:
        session = self.sessions.pop(token, None)
        if session is not None:
            for sub in session.subs.values():
                _close(sub)


serve_app = serving
"""Serve an ASGI app on loopback, yielding its base URL (the shared :func:`streamd.sim.server.serving`)."""


def _close(sub: _Sub) -> None:
    sub.closed = True
    sub.pending.clear()
    sub.wake.set()


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _tomcat_404() -> Response:
    return Response(TOMCAT_404, status_code=404, media_type="text/html;charset=utf-8")


class _Channel(StreamingResponse):
    """A chunk channel's response: it tells its subscription when it is read and when no longer."""

    def __init__(self, sub: _Sub, channel: int, body: AsyncIterator[bytes]) -> None:
        super().__init__(body, media_type="application/json")
        self.sub, self.channel = sub, channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.sub.reader, self.sub.unread_since = self.channel, None
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.sub.reader == self.channel:
                self.sub.reader, self.sub.unread_since = None, time.monotonic()


def _error(status: int, kind: str) -> Response:
    code, can_retry, message = _ERRORS.get(kind, _ERRORS["SERVER_PROBLEM"])
    body = {"httpStatus": status, "code": code, "helpMessage": message, "type": kind, "canRetry": can_retry}
    return _json(body, status)


class _RequestLog:
    """ASGI middleware appending every answered request to ``sim.requests``."""

    def __init__(self, app: ASGIApp, sim: O2GSimulator) -> None:
        self.app, self.sim = app, sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.sim.requests.append(LoggedRequest(scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, logged)


DEMO_PACKAGES = ["telephony", "agent", "pilot"]
"""The packages the simulator generates traffic for."""


@contextlib.asynccontextmanager
async def demo_source(
    agents: int, *, rate: float = 20.0, name: str = "o2g-sim"
) -> AsyncIterator[dict[str, Any]]:
    """Start a simulator and yield the ``sources:`` entry (a dict) that streams from it.

    This is the ``streamd demo`` hook (``DemoSimulator``): ``async with demo_source(20) as cfg``.
    """
    async with O2GSimulator(agents=agents, rate=rate, seed=None) as sim:
        yield {
            "kind": "o2g",
            "name": name,
            "url": sim.url,
            "username": sim.username,
            "password": sim.password,
            "packages": DEMO_PACKAGES,
            "ids": ["*"],
            "delivery": "chunk",
        }


async def serve_forever(
    *, host: str = "127.0.0.1", port: int = 0, agents: int = 20, rate: float = 5.0, **kwargs: Any
) -> None:
    """Run a simulator until cancelled (``python -m streamd.sim.o2g --port 8091``)."""
    await O2GSimulator(host=host, port=port, agents=agents, rate=rate, **kwargs).serve_forever()


def main() -> None:
    """Command line entry: ``python -m streamd.sim.o2g [--port N] [--agents N] [--rate EV_PER_S]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--events-per-chunk", type=int, default=512)
    parser.add_argument("--stamp", default=None, help="add this field (time.time_ns() when queued) to events")
    parser.add_argument("--deviate", type=float, default=0.0, help="share of events deviating from the guide")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(
            lambda: serve_forever(
                host=args.host,
                port=args.port,
                agents=args.agents,
                rate=args.rate,
                events_per_chunk=args.events_per_chunk,
                stamp=args.stamp,
                deviate=args.deviate,
            )
        )


if __name__ == "__main__":
    main()

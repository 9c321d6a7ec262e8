"""The Alvaria simulator's routes, as seed 003 documents them (see the package rules).

Rules:

1. Token at ``/tokenservice/oauth2/access_token`` (client credentials, HTTP Basic or form fields,
   scope ``reportingapi``); the queries under ``/via/v2/organizations/{orgId}/reporting``; the
   scope lists the guide points at (provisioning teams and workTypes, campaign lists) under the
   organisation root.
2. A scripted fault (:mod:`.faults`) answers before anything else. Then what the real API
   requires: a valid, unexpired bearer token (401 otherwise; presence answers 401 without a
   body), the ``x-api-key`` (403 otherwise), the scope parameters (400), a known scope (404).
3. Handlers read the :class:`~.world.AlvariaWorld` only (moving it on by the clock first when
   ``auto_advance``); the request log is the shared middleware around this app.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from streamd.sim.alvaria.faults import ANY, where
from streamd.sim.alvaria.guide import (
    LISTS_PATH,
    PRESENCE_PATH,
    QUERIES,
    QUERY_PATH,
    SCOPE_PARAMS,
    TEAMS_PATH,
    TOKEN_PATH,
    WORK_TYPES_PATH,
)

if TYPE_CHECKING:
    from streamd.sim.alvaria.simulator import AlvariaSimulator


@dataclass(slots=True)
class Token:
    """One issued access token."""

    expires_at: float
    revoked: bool = False


@dataclass(slots=True)
class Tokens:
    """Every token the simulator issued."""

    issued: dict[str, Token] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))


def build_app(sim: AlvariaSimulator) -> Starlette:
    """The routes of ``sim`` (without the request log)."""
    routes = AlvariaRoutes(sim)
    return Starlette(
        routes=[
            Route(TOKEN_PATH, routes.token, methods=["POST"]),
            Route(QUERY_PATH, routes.query, methods=["GET"]),
            Route(PRESENCE_PATH, routes.presence, methods=["GET"]),
            Route(TEAMS_PATH, routes.scope_list, methods=["GET"], name="teams"),
            Route(WORK_TYPES_PATH, routes.scope_list, methods=["GET"], name="workTypes"),
            Route(LISTS_PATH, routes.scope_list, methods=["GET"], name="lists"),
        ]
    )


class AlvariaRoutes:
    """The handlers (rules 2-3)."""

    def __init__(self, sim: AlvariaSimulator) -> None:
        self.sim = sim
        self.world = sim.world

    async def token(self, request: Request) -> Response:
        """``POST /tokenservice/oauth2/access_token`` (client credentials)."""
        with self._track("token"):
            sim = self.sim
            fault = sim.faults.take("token", ANY)
            if fault is not None:
                return await fault.respond()
            if sim.token_latency:
                await anyio.sleep(sim.token_latency)
            form = dict(parse_qsl((await request.body()).decode(errors="replace")))  # no python-multipart
            client_id, secret = _credentials(request, form)
            if form.get("grant_type") != "client_credentials":
                return _json(400, {"error": "unsupported_grant_type"})
            if sim.client_refused or client_id != sim.client_id or secret != sim.client_secret:
                return _json(401, {"error": "invalid_client"})
            if "reportingapi" not in str(form.get("scope", "")).split():
                return _json(400, {"error": "invalid_scope"})
            token = f"tok-{next(sim.tokens.counter)}"
            sim.tokens.issued[token] = Token(sim.clock() + sim.token_ttl)
            body = {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": sim.token_ttl,
                "scope": "reportingapi",
            }
            return _json(200, body)

    async def query(self, request: Request) -> Response:
        """``GET .../reporting/queries/{query}/data`` for one scope."""
        query = request.path_params["query"]
        with self._track(query):
            return await self._query(request, query)

    async def _query(self, request: Request, query: str) -> Response:
        if query not in QUERIES or query == "presence":
            return _json(404, {"error": "Not Found"})
        scope = request.query_params.get(SCOPE_PARAMS.get(query, ""))
        denied = await self._gate(request, query, scope)
        if denied is not None:
            return denied
        world, now = self.world, self.sim.clock()
        if not scope:
            return _json(400, {"error": "Bad Request"})
        if query == "listActivity":
            if scope not in world.lists:
                return _json(404, {"error": "No ListActivity exists for the provided entity Id"})
            (row,) = self.sim.deviating(query, scope, [world.list_row(scope)])
            return _json(200, row)
        known = world.work_type_ids if query == "channelActivity" else world.team_ids
        if scope not in known:
            return _json(404, {"error": "Not Found"})
        if query == "teamActivity":
            rows = world.team_rows(scope)
        elif query == "userActivity":
            rows = world.user_rows(scope, now)
        else:
            rows = world.channel_rows(scope, now)
        rows = self.sim.deviating(query, scope, rows)
        return _json(200, {"kind": "via#queryDataList", "totalItems": len(rows), "rows": rows})

    async def presence(self, request: Request) -> Response:
        """``GET .../reporting/presence/users/data?state=LoggedOn`` (org-wide or per worktype)."""
        with self._track("presence"):
            work_type = request.query_params.get("workTypeId")
            denied = await self._gate(request, "presence", work_type)
            if denied is not None:
                return denied
            if request.query_params.get("state") != "LoggedOn":
                return _json(400, {"error": "Bad Request"})
            users = self.sim.deviating("presence", work_type, self.world.presence_users(work_type))
            return _json(200, {"kind": "via#presenceDataList", "users": users, "totalItems": len(users)})

    async def scope_list(self, request: Request) -> Response:
        """The provisioning teams / workTypes and the campaign lists: every item in one page."""
        name = str(request.scope["route"].name)
        with self._track(name):
            denied = await self._gate(request, name, None)
            if denied is not None:
                return denied
            world = self.world
            if name == "teams":
                items, field_name = world.teams(), "teams"
            elif name == "workTypes":
                items, field_name = world.work_types(), "workTypes"
            else:
                items, field_name = world.campaign_lists(), "contactLists"
            return _json(200, {"kind": f"via#{field_name}", "totalItems": len(items), field_name: items})

    @contextmanager
    def _track(self, query: str) -> Iterator[None]:
        in_flight = self.sim.in_flight
        in_flight[query] = in_flight.get(query, 0) + 1
        self.sim.max_in_flight[query] = max(self.sim.max_in_flight.get(query, 0), in_flight[query])
        try:
            yield
        finally:
            in_flight[query] -= 1

    async def _gate(self, request: Request, query: str, scope: str | None) -> Response | None:
        """Faults, then token and api-key checks; None lets the request through."""
        sim = self.sim
        keys = (where(query, scope), query, ANY) if scope is not None else (query, ANY)
        fault = sim.faults.take(*keys)
        if fault is not None:
            return await fault.respond()
        auth = request.headers.get("authorization", "")
        token = sim.tokens.issued.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        if token is None or token.revoked or sim.clock() >= token.expires_at:
            return _json(401, None if query == "presence" else {"error": "Unauthorized"})  # presence: "None"
        if request.headers.get("x-api-key") != sim.api_key:
            return _json(403, {"message": "Forbidden"})
        if sim.latency:
            await anyio.sleep(sim.latency)
        if sim.auto_advance:
            self.world.step(sim.clock())
        return None


def _json(status: int, body: Any) -> Response:
    content = b"" if body is None else orjson.dumps(body)
    return Response(content, status_code=status, media_type="application/json")


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

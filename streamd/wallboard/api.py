"""Feed API and page on the shared HTTP port: ``/api/v1/state``, ``/api/v1/stream``, ``/wallboard``.

Rules:

1. ``GET /api/v1/state``: a JSON snapshot of the hub, filtered by ``source``, ``queue`` and
   ``state`` (repeated or comma-separated). ``GET /api/v1/stream``: Server-Sent Events
   (:mod:`streamd.wallboard.sse`; ``Last-Event-ID`` or ``?last_event_id=`` resumes).
   ``GET /api/v1/wallboard``: the page's display settings (thresholds, views, stale markers,
   paging: :class:`~streamd.wallboard.config.DisplaySettings`). All are described by the OpenAPI
   3.1 document at ``/api/v1/openapi.json``, generated from the models
   (:mod:`streamd.wallboard.openapi`).
2. With ``http.auth_token`` set, the API and the page need the token: ``Authorization: Bearer``,
   or ``?access_token=`` (EventSource cannot send headers) or ``?token=`` (the page URL). It is
   compared in constant time and never logged; the page is served with ``Referrer-Policy:
   no-referrer``. Static assets (``/wallboard/static/*``, ``/favicon.ico``) hold no data and are
   public.
3. CORS: ``http.cors_origins`` applies to ``/api/v1/*`` (GET only).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from streamd.publish.encoding import dumps
from streamd.wallboard.config import DisplaySettings
from streamd.wallboard.hub import Filter, StateHub, encode_snapshot
from streamd.wallboard.openapi import openapi_document
from streamd.wallboard.sse import Turns, open_stream

STATIC = Path(__file__).parent / "static"


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content)


def authorized(request: Request, token: str | None) -> bool:
    """Whether ``request`` carries ``token`` (always true when no token is configured)."""
    if not token:
        return True
    expected = token.encode()
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    offered = [credentials.strip()] if scheme.lower() == "bearer" else []
    offered += [request.query_params.get("access_token", ""), request.query_params.get("token", "")]
    return any(o and hmac.compare_digest(o.encode(), expected) for o in offered)


def _unauthorized() -> Response:
    return _JSON(
        {"error": "a bearer token is required (Authorization header or access_token parameter)"},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="streamd"'},
    )


def build_routes(
    hub: StateHub,
    *,
    token: str | None = None,
    cors_origins: Sequence[str] = (),
    heartbeat: float = 10.0,
    settings: DisplaySettings | None = None,
) -> list[BaseRoute]:
    """The feed API and wallboard routes, to add to the daemon's HTTP app (``settings``: the
    page's display settings, the defaults when ``None``)."""
    settings_json = dumps((settings or DisplaySettings()).model_dump(mode="json"))
    turns = Turns()  # every stream's snapshot writes share the loop's turns

    async def state(request: Request) -> Response:
        if not authorized(request, token):
            return _unauthorized()
        flt = Filter.parse(request.query_params.multi_items())
        body = await encode_snapshot(hub.freeze(flt))  # in slices: the loop keeps running
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        if not authorized(request, token):
            return _unauthorized()
        flt = Filter.parse(request.query_params.multi_items())
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        return open_stream(hub, flt, last, heartbeat, turns)

    async def wallboard_settings(request: Request) -> Response:
        if not authorized(request, token):
            return _unauthorized()
        return Response(settings_json, media_type="application/json", headers={"Cache-Control": "no-cache"})

    icon = (STATIC / "favicon.svg").read_bytes()

    async def favicon(_: Request) -> Response:
        return Response(icon, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    async def openapi(request: Request) -> Response:
        if not authorized(request, token):
            return _unauthorized()
        return _JSON(openapi_document(auth=bool(token)))

    page_html = (STATIC / "index.html").read_bytes()

    async def page(request: Request) -> Response:
        if not authorized(request, token):
            return HTMLResponse(
                "<!doctype html><title>streamd wallboard</title><h1>401: token required</h1>"
                "<p>Open this page as <code>/wallboard?token=YOUR_TOKEN</code>.</p>",
                status_code=401,
                headers={"Referrer-Policy": "no-referrer"},
            )
        return HTMLResponse(
            page_html, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
        )

    middleware = (
        [
            Middleware(
                CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET"], allow_headers=["*"]
            )
        ]
        if cors_origins
        else []
    )
    api = [
        Route("/state", state, methods=["GET"]),
        Route("/stream", stream, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/wallboard", wallboard_settings, methods=["GET"]),
    ]
    return [
        Mount("/api/v1", routes=api, middleware=middleware),
        Route("/wallboard", page, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Mount("/wallboard/static", app=StaticFiles(directory=STATIC), name="wallboard-static"),
    ]

"""Feed API and page on the shared HTTP port: ``/api/v1/state``, ``/api/v1/stream``, ``/wallboard``.

Rules:

1. ``GET /api/v1/state``: a JSON snapshot of the hub, filtered by ``source``, ``queue`` and
   ``state`` (repeated or comma-separated). ``GET /api/v1/stream``: Server-Sent Events — a
   ``snapshot`` event first, then one ``delta`` event per change, each with id
   ``{epoch}.{seq}``. A client resuming with ``Last-Event-ID`` (or ``?last_event_id=``, for
   clients that reconnect by themselves) gets exactly the deltas it missed while they are in the
   replay buffer, else a fresh snapshot. A ``ping`` event every ``heartbeat`` keeps proxies open
   and lets the page notice a dead connection.
   Both are described by the OpenAPI 3.1 document at ``/api/v1/openapi.json``.
2. Each stream reads from its own bounded buffer (see :mod:`streamd.wallboard.hub`): a client that
   falls behind is dropped and its stream ends; it reconnects and resumes. A closed connection
   ends the stream at once; so does the daemon stopping (the hub is closed first).
3. With ``http.auth_token`` set, the API and the page need the token: ``Authorization: Bearer``,
   or ``?access_token=`` (EventSource cannot send headers) or ``?token=`` (the page URL). It is
   compared in constant time and never logged; the page is served with ``Referrer-Policy:
   no-referrer``. Static assets (``/wallboard/static/*``) hold no data and are public.
4. CORS: ``http.cors_origins`` applies to ``/api/v1/*`` (GET only).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from streamd.publish.encoding import dumps
from streamd.wallboard.hub import Filter, StateHub, Subscription

STATIC = Path(__file__).parent / "static"
SSE_RETRY_MS = 1000


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


def sse(event: str | None, data: bytes, event_id: str | None = None) -> bytes:
    """One Server-Sent Event (``data`` is single-line JSON)."""
    head = b""
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


class EventStream(Response):
    """An SSE response fed by a hub subscription; ends when the client leaves or is dropped."""

    media_type = "text/event-stream"

    def __init__(self, first: list[bytes], sub: Subscription, epoch: str, heartbeat: float) -> None:
        # Not Response.__init__: it would declare a Content-Length for an endless body.
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        self.first, self.sub, self.epoch, self.heartbeat = first, sub, epoch, heartbeat
        self.ping = sse("ping", dumps({"heartbeat": heartbeat}))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            finished = False
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                await self._stream(send)
                finished = True
                tg.cancel_scope.cancel()
            if finished:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            pass
        finally:
            self.sub.release()

    async def _stream(self, send: Send) -> None:
        first = b"".join([*self.first, self.ping])
        await send({"type": "http.response.body", "body": first, "more_body": True})
        receive = self.sub.receive
        while True:
            item: tuple[int, bytes] | None = None
            with anyio.move_on_after(self.heartbeat):  # only the wait: a write is never cut short
                try:
                    item = await receive.receive()
                except anyio.EndOfStream:
                    return  # dropped (too slow) or the daemon is stopping: the client reconnects
            chunk = self.ping if item is None else sse("delta", item[1], f"{self.epoch}.{item[0]}")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

    @staticmethod
    async def _watch_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return


def build_routes(
    hub: StateHub, *, token: str | None = None, cors_origins: Sequence[str] = (), heartbeat: float = 10.0
) -> list[BaseRoute]:
    """The feed API and wallboard routes, to add to the daemon's HTTP app."""

    async def state(request: Request) -> Response:
        if not authorized(request, token):
            return _unauthorized()
        flt = Filter.parse(request.query_params.multi_items())
        return _JSON(hub.snapshot(flt), headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        if not authorized(request, token):
            return _unauthorized()
        flt = Filter.parse(request.query_params.multi_items())
        last = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
        # No await between reading the state and subscribing: nothing can slip in between.
        missed = hub.since(last)
        first = [f"retry: {SSE_RETRY_MS}\n".encode()]
        if missed is None:
            snap = hub.snapshot(flt)
            first.append(sse("snapshot", dumps(snap), snap["id"]))
        else:
            for change in missed:
                payload = change.for_filter(flt)
                if payload is not None:
                    first.append(sse("delta", payload, f"{hub.epoch}.{change.seq}"))
            first.append(sse("resumed", dumps({"id": hub.event_id}), hub.event_id))
        return EventStream(first, hub.subscribe(flt), hub.epoch, heartbeat)

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
    ]
    return [
        Mount("/api/v1", routes=api, middleware=middleware),
        Route("/wallboard", page, methods=["GET"]),
        Mount("/wallboard/static", app=StaticFiles(directory=STATIC), name="wallboard-static"),
    ]


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(*, auth: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the feed API."""
    filters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": f"{what} (repeat the parameter or separate values by commas).",
            "schema": {"type": "array", "items": {"type": "string"}},
            "style": "form",
            "explode": True,
        }
        for name, what in (
            ("source", "Only these source names"),
            ("queue", "Only agents in / metrics of these queue ids"),
            ("state", "Only agents in these canonical states (metrics are not filtered by state)"),
        )
    ]
    nullable_str = {"type": ["string", "null"]}
    time = {"type": ["string", "null"], "format": "date-time"}
    error = {"description": "Missing or wrong bearer token.", "content": {"application/json": {}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "streamd live state",
            "version": "1",
            "description": "Current canonical agent and queue state from every source, and its live feed.",
        },
        "paths": {
            "/api/v1/state": {
                "get": {
                    "operationId": "getState",
                    "summary": "Snapshot of the current agent and queue state",
                    "parameters": filters,
                    "responses": {
                        "200": {
                            "description": "The snapshot.",
                            "content": {"application/json": {"schema": _schema_ref("Snapshot")}},
                        },
                        "401": error,
                    },
                }
            },
            "/api/v1/stream": {
                "get": {
                    "operationId": "streamState",
                    "summary": "Server-Sent Events: a snapshot, then deltas",
                    "description": (
                        "Events: `snapshot` (data: Snapshot) first, or `resumed` after replayed deltas when "
                        "`Last-Event-ID` is still in the replay buffer; then `delta` (data: Delta) per change. "
                        "Every event id is `{epoch}.{seq}`. A client that falls behind is disconnected and "
                        "should reconnect with its last id."
                    ),
                    "parameters": [
                        *filters,
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "description": "Resume after this event id.",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "last_event_id",
                            "in": "query",
                            "required": False,
                            "description": "Same as the Last-Event-ID header.",
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "An endless event stream.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        "401": error,
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "AgentState": {
                    "type": "object",
                    "required": ["vendor", "source", "agent_id", "state"],
                    "properties": {
                        "vendor": {"type": "string"},
                        "source": {"type": "string"},
                        "agent_id": {"type": "string"},
                        "state": {
                            "type": "string",
                            "enum": [
                                "available",
                                "busy",
                                "after_call_work",
                                "not_ready",
                                "logged_out",
                                "unknown",
                            ],
                        },
                        "agent_name": nullable_str,
                        "vendor_state": nullable_str,
                        "reason_code": nullable_str,
                        "since": time,
                        "queue_ids": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "QueueMetric": {
                    "type": "object",
                    "required": ["vendor", "source", "queue_id", "metric", "value"],
                    "properties": {
                        "vendor": {"type": "string"},
                        "source": {"type": "string"},
                        "queue_id": {"type": "string"},
                        "metric": {"type": "string"},
                        "value": {"type": ["number", "string", "boolean", "null"]},
                        "unit": nullable_str,
                        "queue_name": nullable_str,
                        "as_of": time,
                    },
                },
                "Snapshot": {
                    "type": "object",
                    "required": ["id", "seq", "now", "agents", "metrics"],
                    "properties": {
                        "id": {"type": "string", "description": "Event id this snapshot is current as of."},
                        "seq": {"type": "integer"},
                        "now": {"type": "string", "format": "date-time", "description": "Server time."},
                        "agents": {"type": "array", "items": _schema_ref("AgentState")},
                        "metrics": {"type": "array", "items": _schema_ref("QueueMetric")},
                    },
                },
                "Delta": {
                    "type": "object",
                    "required": ["seq", "kind", "key", "value"],
                    "properties": {
                        "seq": {"type": "integer"},
                        "kind": {"type": "string", "enum": ["agent", "metric"]},
                        "key": {
                            "type": "string",
                            "description": "{source}:{agent_id} or {source}:{queue_id}:{metric}",
                        },
                        "value": {
                            "description": "The new value; null when the entry is gone (or left the filter).",
                            "oneOf": [
                                _schema_ref("AgentState"),
                                _schema_ref("QueueMetric"),
                                {"type": "null"},
                            ],
                        },
                    },
                },
            }
        },
    }
    if auth:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "query": {"type": "apiKey", "in": "query", "name": "access_token"},
        }
        doc["security"] = [{"bearer": []}, {"query": []}]
    return doc

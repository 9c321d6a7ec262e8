"""The ASGI application on streamd's one HTTP port.

Routes: ``/livez`` (the event loop answers), ``/readyz`` (every component's state and reason, and
its jobs'; 503 while not ready by the ``readiness`` setting, see
:meth:`~streamd.telemetry.Health.ready`, and while draining), ``/metrics``
(Prometheus text format), ``POST /webhooks/{vendor}/{source}`` (dispatched through
:class:`Webhooks`), plus whatever extra routes the wallboard adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from streamd.sources.base import WebhookHandler
from streamd.telemetry import REGISTRY, Component, Health, count_error


class Webhooks:
    """The :class:`~streamd.sources.base.WebhookRegistry` behind ``/webhooks/{vendor}/{source}``."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], WebhookHandler] = {}

    def register(self, vendor: str, source: str, handler: WebhookHandler) -> None:
        """Install a handler."""
        self._handlers[(vendor, source)] = handler

    def unregister(self, vendor: str, source: str) -> None:
        """Remove a handler."""
        self._handlers.pop((vendor, source), None)

    async def dispatch(self, request: Request) -> Response:
        """Route a webhook POST to its source, 404 when none is registered."""
        vendor, source = request.path_params["vendor"], request.path_params["source"]
        handler = self._handlers.get((vendor, source))
        if handler is None:
            count_error("webhook", "webhook", "no_route")  # path parts are not bounded: no labels
            return JSONResponse({"error": f"no webhook source {vendor}/{source}"}, status_code=404)
        return await handler(request)


def build_app(health: Health, webhooks: Webhooks, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """Assemble the application."""

    async def livez(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        body = {
            "ready": health.ready(),
            "draining": health.draining,
            "readiness": health.readiness,
            "components": {name: _component(c) for name, c in health.components.items()},
        }
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route("/livez", livez),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/webhooks/{vendor}/{source}", webhooks.dispatch, methods=["POST"]),
        *extra_routes,
    ]
    return Starlette(routes=routes)


def _component(c: Component) -> dict[str, Any]:
    """One component in ``/readyz``: kind, state, reason, and its jobs when it has several."""
    out: dict[str, Any] = {"kind": c.kind, "state": c.state.value, "detail": c.detail}
    if c.jobs:
        out["jobs"] = {name: {"state": j.state.value, "detail": j.detail} for name, j in c.jobs.items()}
    return out

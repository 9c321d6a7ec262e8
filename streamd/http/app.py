"""The ASGI application on streamd's one HTTP port.

Routes: ``/livez`` (the event loop answers), ``/readyz`` (every component's state and reason, and
its jobs'; 503 while not ready by the ``readiness`` setting, see
:meth:`~streamd.telemetry.Health.ready`, and while draining), ``/metrics``
(Prometheus text format), ``GET``/``POST /webhooks/{vendor}/{source}`` (dispatched through
:class:`Webhooks`, each source's handler decides which methods it takes; 503 once its source has
stopped), plus whatever extra routes the wallboard adds.

``/livez``, ``/readyz`` and ``/metrics`` need no token by design: they carry states, reasons and
counts, never secrets or agent names. ``http.auth_token`` protects the wallboard's page and feed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from streamd.sources.base import WebhookHandler
from streamd.telemetry import REGISTRY, Component, Health, count_error

RETRY_AFTER = 5
"""Seconds a webhook POST refused during the shutdown is told to wait (``Retry-After``)."""


class Forwarder(Protocol):
    """Where a POST for a source that does not run here goes (a cluster, see
    :mod:`streamd.cluster.webhooks`)."""

    async def forward(self, vendor: str, source: str, request: Request) -> Response | None:
        """The answer of the source's owner; None when the source is not one it knows."""


class Webhooks:
    """The :class:`~streamd.sources.base.WebhookRegistry` behind ``/webhooks/{vendor}/{source}``.

    Rules:

    1. A POST goes to the handler registered for its route; a route no source ever registered
       answers 404 (a wrong URL: nothing to retry).
    2. A route whose source has stopped (unregistered: the daemon is shutting down) answers 503 with
       ``Retry-After``, never 404: O2G treats a 4xx as final and drops the events, a 503 it resends.
    3. With several replicas (``forwarder`` set), a POST whose source does not run here goes to the
       forwarder first, which answers with the owner's answer (docs/architecture.md "Several
       replicas"); :meth:`advertised` lists the credentials of the handlers that have some, for
       the owner to publish.
    """

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], WebhookHandler] = {}
        self._known: set[tuple[str, str]] = set()  # every route registered once (rule 2)
        self.forwarder: Forwarder | None = None

    def register(self, vendor: str, source: str, handler: WebhookHandler) -> None:
        """Install a handler."""
        self._handlers[(vendor, source)] = handler
        self._known.add((vendor, source))

    def unregister(self, vendor: str, source: str) -> None:
        """Remove a handler: its route answers 503 from now on (rule 2)."""
        self._handlers.pop((vendor, source), None)

    def advertised(self) -> dict[tuple[str, str], tuple[frozenset[str], int | None]]:
        """``(credentials, largest body)`` of each registered handler that says (rule 3): a handler
        that is a bound method of an object with ``credentials()`` and perhaps ``max_body`` (the O2G
        receiver)."""
        found: dict[tuple[str, str], tuple[frozenset[str], int | None]] = {}
        for route, handler in list(self._handlers.items()):
            owner = getattr(handler, "__self__", None)
            credentials = getattr(owner, "credentials", None)
            if callable(credentials):
                max_body = getattr(owner, "max_body", None)
                found[route] = (frozenset(credentials()), max_body if isinstance(max_body, int) else None)
        return found

    async def dispatch(self, request: Request) -> Response:
        """Route a webhook POST to its source: 404 when none ever registered, 503 once it stopped,
        the owner's answer when it runs on another replica (rule 3)."""
        vendor, source = request.path_params["vendor"], request.path_params["source"]
        handler = self._handlers.get((vendor, source))
        if handler is not None:
            return await handler(request)
        if self.forwarder is not None:
            answer = await self.forwarder.forward(vendor, source, request)
            if answer is not None:
                return answer
        if (vendor, source) in self._known:
            count_error(source, "webhook", "shutting_down")  # a configured source name: bounded
            return JSONResponse(
                {"error": f"webhook source {vendor}/{source} has stopped (streamd is shutting down): retry"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        count_error("webhook", "webhook", "no_route")  # path parts are not bounded: no labels
        return JSONResponse({"error": f"no webhook source {vendor}/{source}"}, status_code=404)


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
        Route("/webhooks/{vendor}/{source}", webhooks.dispatch, methods=["GET", "POST"]),  # handler decides
        *extra_routes,
    ]
    return Starlette(routes=routes)


def _component(c: Component) -> dict[str, Any]:
    """One component in ``/readyz``: kind, state, reason, and its jobs when it has several."""
    out: dict[str, Any] = {"kind": c.kind, "state": c.state.value, "detail": c.detail}
    if c.jobs:
        out["jobs"] = {name: {"state": j.state.value, "detail": j.detail} for name, j in c.jobs.items()}
    return out

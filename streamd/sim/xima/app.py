"""The Xima simulator's routes, as the guide documents them (seed 000 §2.0, §3.1, §4.0-4.2; seed 001).

Rules:

1. ``GET /rest/api/v1/realtime/metrics``, ``GET .../realtime/metrics/values?id=A,B``,
   ``GET /rest/api/v1/agents/mapping``, ``POST /rest/api/v1/historic-data/{key}`` and the
   websocket (:mod:`.socket`); Bearer auth everywhere (401 otherwise), after any scripted fault.
2. Every value key starts uninitialized: its first ``init_requests`` requests list it under
   ``initializing`` (HTTP ``initializing_status``: 206 as the breakdown says, or 400 as the
   error table says); later requests return it under ``results``.
3. A values request naming a rejected metric answers its status (403/404), an unknown one 404.
4. Every request is logged by the shared :class:`~streamd.sim.script.RequestLog`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from streamd.sim.script import RequestLog
from streamd.sim.xima.deviations import Deviator
from streamd.sim.xima.faults import XimaFaults
from streamd.sim.xima.socket import SocketHub
from streamd.sim.xima.world import XimaWorld


class XimaApp:
    """The REST routes over one world (module rules)."""

    def __init__(
        self,
        world: XimaWorld,
        faults: XimaFaults,
        deviator: Deviator,
        hub: SocketHub,
        *,
        key: Callable[[], str],
        init_requests: int,
        initializing_status: int,
        reports: set[str],
    ) -> None:
        self.world, self.faults, self.deviator, self.hub = world, faults, deviator, hub
        self._key = key
        self.init_requests = init_requests
        self.initializing_status = initializing_status
        self.reports = reports
        self.historic_calls: list[tuple[str, str, str]] = []
        """``(report key, timeframe start, timeframe end)`` of every report run, in order."""
        self.historic_bodies: list[dict[str, Any]] = []
        """The request body of every report run, in order."""

    def asgi(self) -> RequestLog:
        """The ASGI app (REST and websocket routes), wrapped in the request log."""
        return RequestLog(
            Starlette(
                routes=[
                    Route("/rest/api/v1/realtime/metrics", self._metrics),
                    Route("/rest/api/v1/realtime/metrics/values", self._values),
                    Route("/rest/api/v1/agents/mapping", self._mapping),
                    Route("/rest/api/v1/historic-data/{key}", self._historic, methods=["POST"]),
                    WebSocketRoute("/rest/api/v1/realtime-metric-subscription", self.hub.subscription),
                ]
            )
        )

    async def _gate(self, request: Request, *where: str) -> Response | None:
        fault = self.faults.take(*where)
        if fault is not None:
            return await fault.respond()
        if request.headers.get("authorization") != f"Bearer {self._key()}":
            return Response("The authorization header wasn't valid.", 401)
        return None

    async def _metrics(self, request: Request) -> Response:
        denied = await self._gate(request, "metrics")
        if denied is not None:
            return denied
        body = [
            {
                "metricId": m.metric_id,
                "metricName": m.name,
                "categoryType": m.category_type,
                "categorySelection": [k[1] for k in self.world.keys_of(m.metric_id) if k[1] is not None],
            }
            for m in self.world.metrics.values()
        ]
        return JSONResponse(body)

    async def _values(self, request: Request) -> Response:
        denied = await self._gate(request, "values")
        if denied is not None:
            return denied
        ids = [i for raw in request.query_params.getlist("id") for i in raw.split(",") if i]
        if not ids:
            return Response("missing id", 400)
        for metric_id in ids:
            status = self.faults.rejected.get(metric_id) or (
                404 if metric_id not in self.world.metrics else None
            )
            if status is not None:
                return Response(f"metric {metric_id} rejected", status)
        results, initializing = [], []
        for metric_id in dict.fromkeys(ids):
            for key in self.world.keys_of(metric_id):
                if self.world.ready(key, self.init_requests):
                    value = self.world.rest_value(key, self.faults.rest_lag)
                    results.append(self.deviator.entry("values", key, self.world.entry(key, value)))
                else:
                    initializing.append(self.world.entry(key, {})["key"])
        status = self.initializing_status if initializing else 200
        return JSONResponse({"results": results, "initializing": initializing}, status)

    async def _mapping(self, request: Request) -> Response:
        denied = await self._gate(request, "mapping")
        if denied is not None:
            return denied
        return JSONResponse(self.world.mapping())

    async def _historic(self, request: Request) -> Response:
        key = request.path_params["key"]
        denied = await self._gate(request, f"historic:{key}", "historic")
        if denied is not None:
            return denied
        if key not in self.reports:
            return Response("report not found", 404)
        try:
            body = orjson.loads(await request.body())
            frame = next(p["value"] for p in body["parameters"] if p["valueType"] == "REPORT_TIMEFRAME")
            start, end = str(frame["start"]), str(frame["end"])
        except (orjson.JSONDecodeError, KeyError, TypeError, StopIteration):
            return Response("Malformed JSON request body", 400)
        self.historic_calls.append((key, start, end))
        self.historic_bodies.append(body)
        report: dict[str, Any] = self.world.report(key, start, end, len(self.historic_calls))
        if self.faults.take_missing_rows():
            del report["rows"]
        self.deviator.rows(key, start, report)
        return JSONResponse(report)

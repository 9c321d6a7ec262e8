"""Xima REST adapter: the only Xima module that sees httpx.

Rules:

1. Every call runs inside :func:`~streamd.sources.http.httpx_errors`; callers only see streamd errors.
2. Values requests (seed 000 L737-803, L947-953): 200, 206 and 400 are all answers when the body is
   the documented ``{results, initializing}`` object; a 400 without it is a request error
   (``FatalError``); 401 is an :class:`~streamd.errors.AuthError` naming the metric ids; 403/404 raise
   :class:`MetricsRejected` carrying the ids, so the caller can bisect the list.
3. The REST ``id`` argument is one comma-separated list (000 L747-749), not repeated parameters.
4. Methods return parsed JSON (``object``); turning it into events is :mod:`.normalize`'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from streamd.errors import AuthError, FatalError, VendorProtocolError
from streamd.jsonwire import loads
from streamd.sources.http import check_status, httpx_errors
from streamd.sources.xima.bodies import is_values_body

METRICS_PATH = "/rest/api/v1/realtime/metrics"
VALUES_PATH = "/rest/api/v1/realtime/metrics/values"
MAPPING_PATH = "/rest/api/v1/agents/mapping"
HISTORIC_PATH = "/rest/api/v1/historic-data/{key}"
SUBSCRIPTION_PATH = "/rest/api/v1/realtime-metric-subscription"


class MetricsRejected(FatalError):
    """403/404 for a values request: some of ``ids`` are not assigned to the user or do not exist."""

    def __init__(self, message: str, status: int, ids: Sequence[str]) -> None:
        super().__init__(message)
        self.status = status
        self.ids = tuple(ids)


@dataclass(slots=True)
class XimaClient:
    """Thin typed wrapper over one ``httpx.AsyncClient`` (base URL and Bearer auth already set)."""

    http: httpx.AsyncClient
    source: str

    async def list_metrics(self) -> object:
        """``GET /rest/api/v1/realtime/metrics``: the API-enabled metric descriptors."""
        return await self._json("GET", METRICS_PATH, "list metrics")

    async def agent_mapping(self) -> object:
        """``GET /rest/api/v1/agents/mapping``: ``{alias: "Name (ext)"}``."""
        return await self._json("GET", MAPPING_PATH, "agent mapping")

    async def run_report(self, key: str, body: dict[str, Any], *, timeout: float | None = None) -> object:  # noqa: ASYNC109
        """``POST /rest/api/v1/historic-data/{key}`` with a JSON body; the report as JSON."""
        path = HISTORIC_PATH.format(key=quote(key, safe=""))
        return await self._json("POST", path, f"historic report {key}", body=body, timeout=timeout)

    async def metric_values(self, ids: Sequence[str]) -> dict[str, Any]:
        """``GET /rest/api/v1/realtime/metrics/values?id=A,B``: the ``{results, initializing}`` body.

        Raises:
            AuthError: 401 (the key was rejected), naming the ids.
            MetricsRejected: 403 or 404 for this list of ids.
            FatalError: 400 without an initializing body, or another 4xx.
            TransientError: transport errors, 408, 5xx.
        """
        query = ",".join(quote(i, safe="") for i in ids)
        what = f"xima {self.source}: GET values for metrics {', '.join(ids)}"
        with httpx_errors():
            response = await self.http.get(f"{VALUES_PATH}?id={query}")
        status = response.status_code
        if status in (200, 206, 400):
            body = _loads(response)
            if is_values_body(body):
                assert isinstance(body, dict)
                return body
            if status == 400:
                raise FatalError(f"{what}: HTTP 400 without an initializing body: {response.text[:200]}")
            raise VendorProtocolError(f"{what}: HTTP {status} body is not a values object")
        if status == 401:
            raise AuthError(f"{what}: HTTP 401, the authentication key was rejected")
        if status in (403, 404):
            reason = "not assigned to the service user" if status == 403 else "do not exist"
            raise MetricsRejected(f"{what}: HTTP {status}, metrics {reason}", status, ids)
        check_status(response, what)
        raise VendorProtocolError(f"{what}: unexpected HTTP {status}")

    async def _json(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: object = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> object:
        line = f"xima {self.source}: {what}"
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["content"] = orjson.dumps(body)
            kwargs["headers"] = {"content-type": "application/json"}
        if timeout is not None:
            kwargs["timeout"] = timeout
        with httpx_errors():
            response = await self.http.request(method, path, **kwargs)
        check_status(response, line)
        return _loads(response, line)


def _loads(response: httpx.Response, what: str | None = None) -> object:
    try:
        return loads(response.content)
    except orjson.JSONDecodeError as exc:
        if what is None:
            return None
        raise VendorProtocolError(f"{what}: HTTP {response.status_code} body is not JSON") from exc

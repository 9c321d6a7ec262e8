"""A small fake of the Confluent Schema Registry REST calls streamd and its consumers use.

Written from Confluent's API reference (docs.confluent.io, "Schema Registry API Reference"):

- ``POST /subjects/{subject}``: is this schema registered under the subject? 200
  ``{subject, id, version, schema, schemaType}``; 404 ``error_code`` 40401 (no such subject) or
  40403 (schema not found).
- ``POST /compatibility/subjects/{subject}/versions/latest``: 200 ``{"is_compatible": bool}``;
  404 40401 when the subject has no version.
- ``POST /subjects/{subject}/versions``: register, 200 ``{"id"}`` (the same schema gets the same
  id under any subject); 409 40901 when incompatible.
- ``GET /schemas/ids/{id}``: 200 ``{"schema", "schemaType"}`` (what deserializers fetch); 404 40403.

Compatibility is decided by the test (``incompatible``: subjects whose latest version refuses any
new schema), not computed. Errors are ``{"error_code", "message"}``, as the real server answers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from streamd.sim.server import serving

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class FakeSchemaRegistry:
    """The registry's state; ``app`` serves it, ``calls`` lists ``(method, path)`` in order."""

    user_info: str | None = None
    """``user:password`` required as basic auth (None: no authentication)."""
    incompatible: set[str] = field(default_factory=set)
    schemas: list[tuple[str, str]] = field(default_factory=list)
    """Registered schemas: index + 1 is the id; ``(schema text, schemaType)``."""
    subjects: dict[str, list[int]] = field(default_factory=dict)
    """Subject -> schema ids of its versions, oldest first."""
    calls: list[tuple[str, str]] = field(default_factory=list)
    unavailable: int = 0
    """Answer this many next requests 503 (the registry is down), then serve again."""

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/subjects/{subject}", self._lookup, methods=["POST"]),
                Route("/subjects/{subject}/versions", self._register, methods=["POST"]),
                Route(
                    "/compatibility/subjects/{subject}/versions/{version}", self._compatible, methods=["POST"]
                ),
                Route("/schemas/ids/{id:int}", self._by_id, methods=["GET"]),
            ]
        )

    def schema_of(self, subject: str) -> dict[str, Any]:
        """The latest schema registered under ``subject``, parsed."""
        text, _ = self.schemas[self.subjects[subject][-1] - 1]
        parsed: dict[str, Any] = json.loads(text)
        return parsed

    def add(self, subject: str, schema: str, schema_type: str = "JSON") -> int:
        """Register ``schema`` under ``subject`` (as an earlier deployment would have); its id."""
        key = (schema, schema_type)
        if key not in self.schemas:
            self.schemas.append(key)
        schema_id = self.schemas.index(key) + 1
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    # -- handlers -----------------------------------------------------------------------------

    def _error(self, status: int, code: int, message: str) -> Response:
        return JSONResponse({"error_code": code, "message": message}, status, media_type=CONTENT_TYPE)

    def _ok(self, body: dict[str, Any]) -> Response:
        return JSONResponse(body, media_type=CONTENT_TYPE)

    def _refused(self, request: Request) -> Response | None:
        self.calls.append((request.method, request.url.path))
        if self.unavailable:
            self.unavailable -= 1
            return self._error(503, 50003, "Error while forwarding the request to the primary")
        if self.user_info is None:
            return None
        header = request.headers.get("authorization", "")
        expected = "Basic " + base64.b64encode(self.user_info.encode()).decode()
        if header != expected:
            return self._error(401, 40101, "Unauthorized")
        return None

    async def _body(self, request: Request) -> tuple[str, str] | Response:
        try:
            body = json.loads(await request.body())
            schema, schema_type = body["schema"], body.get("schemaType", "AVRO")
            json.loads(schema)
        except (ValueError, KeyError, TypeError):
            return self._error(422, 42201, "Invalid schema")
        return schema, schema_type

    async def _accepted(self, request: Request) -> tuple[str, tuple[str, str]] | Response:
        """The subject and the (schema, type) of a request the registry takes, or its refusal."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        return request.path_params["subject"], body

    async def _lookup(self, request: Request) -> Response:
        accepted = await self._accepted(request)
        if isinstance(accepted, Response):
            return accepted
        subject, body = accepted
        if subject not in self.subjects:
            return self._error(404, 40401, f"Subject '{subject}' not found.")
        for version, schema_id in enumerate(self.subjects[subject], 1):
            if self.schemas[schema_id - 1] == body:
                return self._ok(
                    {
                        "subject": subject,
                        "id": schema_id,
                        "version": version,
                        "schema": body[0],
                        "schemaType": body[1],
                    }
                )
        return self._error(404, 40403, "Schema not found")

    async def _compatible(self, request: Request) -> Response:
        accepted = await self._accepted(request)
        if isinstance(accepted, Response):
            return accepted
        subject, _schema = accepted
        if subject not in self.subjects:
            return self._error(404, 40401, f"Subject '{subject}' not found.")
        return self._ok({"is_compatible": subject not in self.incompatible})

    async def _register(self, request: Request) -> Response:
        accepted = await self._accepted(request)
        if isinstance(accepted, Response):
            return accepted
        subject, body = accepted
        if subject in self.incompatible:
            return self._error(409, 40901, "Schema being registered is incompatible with an earlier schema")
        return self._ok({"id": self.add(subject, *body)})

    async def _by_id(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        schema_id = request.path_params["id"]
        if not 0 < schema_id <= len(self.schemas):
            return self._error(404, 40403, "Schema not found")
        schema, schema_type = self.schemas[schema_id - 1]
        return self._ok({"schema": schema, "schemaType": schema_type})


@asynccontextmanager
async def serving_registry(registry: FakeSchemaRegistry) -> AsyncIterator[str]:
    """Serve ``registry`` on loopback while the block runs; yields its base URL."""
    async with serving(registry.app) as url:
        yield url

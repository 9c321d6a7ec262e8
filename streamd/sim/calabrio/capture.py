"""The simulator's real-time data capture endpoint (002 L4642-4704; see the package rules).

Rules:

1. A request is taken as a whole or refused as a whole (400 naming each invalid record).
2. ``capture_format`` limits the content type (another one: 415); ``multipart/form-data`` carries
   the records' JSON text in the form field ``capture_field`` (the guide names none).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from streamd.sim.calabrio.responses import error_response, json_response

if TYPE_CHECKING:
    from streamd.sim.calabrio.simulator import CalabrioSimulator

GIS_CODES = frozenset({1, 2, 3, 4, 5, 6, 10})
ReadJson = Callable[..., Awaitable[Any]]
"""The app's JSON body reader (``keep_lists=True``: an array is kept)."""


async def capture(sim: CalabrioSimulator, request: Request, read_json: ReadJson) -> Response:
    """Answer one capture request (rules 1, 2)."""
    body, refusal = await _capture_body(sim, request, read_json)
    if refusal is not None:
        return refusal
    shape = "array" if isinstance(body, list) else "object"
    if sim.capture_body not in ("any", shape):
        sim.rejected.extend(body if isinstance(body, list) else [body])
        return error_response(
            400, f"Invalid request body: expected a JSON {sim.capture_body}, got a JSON {shape}"
        )
    records = body if isinstance(body, list) else [body]
    problems = [(i, why) for i, rec in enumerate(records) if (why := _invalid(sim, rec)) is not None]
    if problems:
        sim.rejected.extend(records[i] for i, _ in problems)
        errors = [{"index": i, "reason": why} for i, why in problems]
        return json_response({"errorMessage": "Invalid agent state", "errors": errors}, 400)
    sim.captured.extend(records)
    return Response(status_code=200)


async def _capture_body(
    sim: CalabrioSimulator, request: Request, read_json: ReadJson
) -> tuple[Any, Response | None]:
    """The records of a capture request in the content type ``capture_format`` allows: JSON,
    or ``multipart/form-data`` with the records' JSON text in the form field ``capture_field``
    (the guide declares multipart, 002 L4659, and names no field). A content type that is not
    allowed is refused with 415, a form without the field or with unreadable JSON with 400."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    shape = "multipart" if kind == "multipart/form-data" else "json" if kind == "application/json" else kind
    allowed = sim.capture_format
    if allowed != "any" and shape != allowed:
        wanted = "multipart/form-data" if allowed == "multipart" else "application/json"
        return None, error_response(415, f"Unsupported Media Type: expected {wanted}, got {kind or 'none'}")
    if shape != "multipart":
        return await read_json(request, keep_lists=True), None
    text = form_fields(request.headers["content-type"], await request.body()).get(sim.capture_field)
    if text is None:
        return None, error_response(400, f"multipart/form-data body has no field {sim.capture_field!r}")
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None, error_response(400, f"field {sim.capture_field!r} is not JSON")
    sim.bodies.append((request.url.path, body))
    return body, None


def _invalid(sim: CalabrioSimulator, record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not an object"
    acd, code, ts, reason = (
        record.get(k) for k in ("acdAgentId", "gisStateIdentifier", "timestamp", "reasonCode")
    )
    if not isinstance(acd, str) or not acd:
        return "acdAgentId is required"
    if acd in sim.reject_acd_ids:
        return f"unknown acdAgentId {acd}"
    if code not in GIS_CODES or isinstance(code, bool):
        return "gisStateIdentifier must be 1-6 or 10"
    if not isinstance(ts, int) or isinstance(ts, bool):
        return "timestamp must be epoch ms"
    if isinstance(reason, int) and not 1 <= reason <= 65535:
        return "reasonCode must be 1-65535 or text"
    return None


def form_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a ``multipart/form-data`` body (read with the standard library's MIME
    parser, so the simulator needs no form library); a body it cannot read has none."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition") if isinstance(part, Message) else None
        payload = part.get_payload(decode=True) if isinstance(part, Message) else None
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload.decode("utf-8", "replace")
    return fields

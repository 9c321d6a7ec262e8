"""How the simulator answers: JSON, and Calabrio's error document."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from streamd.sim.calabrio.faults import error_body


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(status: int, message: str) -> Response:
    """An error answer with Calabrio's error document."""
    return Response(error_body(message), status_code=status, media_type="application/json")

"""What a test scripts to go wrong on the Calabrio simulator (on :class:`streamd.sim.script.FaultScript`).

Rules:

1. Faults are keyed by request path (exact); a fault scripted without a path answers any
   request (key :data:`ANY`). A request takes the oldest fault for its path, else for any path.
2. A refusal carries Calabrio's error body (``errorMessage``, ``requestId``) and an optional
   ``Retry-After``; a garbled answer is a 200 whose body cannot be read (:data:`GARBLED`).
"""

from __future__ import annotations

import uuid

import orjson

from streamd.sim.script import Fault

ANY = "*"
"""The key of a fault scripted without a path."""

GARBLED: dict[str, tuple[bytes, str]] = {
    "not_json": (b'[{"agentId": 101, "realTimeActivities": [{"agentState": "TA', "application/json"),
    "not_array": (b'{"errorMessage": "The service is busy, try again later"}', "application/json"),
    "login_page": (
        b"<!DOCTYPE html><html><head><title>Calabrio ONE</title></head><body>"
        b'<form action="/login" method="post"><input name="username"></form></body></html>',
        "text/html;charset=UTF-8",
    ),
}
"""The bodies :func:`garbled` answers 200 with: a truncated JSON array (a proxy that cut the
answer), an object where an array is documented, an HTML login page (an SSO proxy in front of
the tenant)."""


def error_body(message: str) -> bytes:
    """Calabrio's error document."""
    return orjson.dumps({"errorMessage": message, "requestId": str(uuid.uuid4())})


def refused(status: int, retry_after: str | None = None) -> Fault:
    """An error answer with ``status`` (and ``Retry-After``)."""
    headers = {"Retry-After": retry_after} if retry_after else {}
    return Fault(status, error_body("scripted fault"), headers=headers)


def garbled(kind: str) -> Fault:
    """A 200 whose body cannot be read.

    Args:
        kind: a key of :data:`GARBLED`: ``not_json``, ``not_array`` or ``login_page``.

    Raises:
        ValueError: ``kind`` is not one of them.
    """
    if kind not in GARBLED:
        raise ValueError(f"unknown garble {kind!r}; one of {sorted(GARBLED)}")
    body, media_type = GARBLED[kind]
    return Fault(200, body, media_type)

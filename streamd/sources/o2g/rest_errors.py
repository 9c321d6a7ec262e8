"""O2G REST error classification, sans-IO: an error response -> the streamd error tree.

Rules:

1. :func:`error_from_response` is the one place that turns an O2G error response
   (``RestErrorInfo``) into the streamd error tree; ``canRetry`` alone cannot drive it (spec
   o2g.md §7.4: it is ``true`` for INVALID_SESSION, which needs a new login).
"""

from __future__ import annotations

from typing import Final

import orjson
from pydantic import ValidationError

from streamd.errors import AuthError, BackOff, FatalError, StreamdError, TransientError

from .models_common import RestErrorInfo


class SessionExpired(TransientError):
    """The O2G session is gone (INVALID_SESSION, 401, 403 without a body): log in again.

    The network half catches it, authenticates anew, creates a session, resubscribes and takes
    snapshots; :mod:`streamd.retry` treats it as an ordinary transient error otherwise.
    """


class O2GRequestError(FatalError):
    """O2G rejected one request (NOT_FOUND, BAD_PARAMETER, NOT_EXPECTED, 404, other 4xx).

    Retrying the same request cannot help. Per-item callers (e.g. a snapshot looping over
    logins) may catch it and skip the item; ``info`` holds the parsed body if any.
    """

    def __init__(self, message: str, *, status: int, info: RestErrorInfo | None) -> None:
        super().__init__(message)
        self.status = status
        self.info = info

    @property
    def final(self) -> bool:
        """O2G said so: a ``RestErrorInfo`` with ``canRetry: false`` (a bare 404 from Tomcat is not)."""
        return self.info is not None and self.info.canRetry is False


# error type -> code (004 L311-320); the code is used when ``type`` is missing.
ERROR_CODES: Final = {
    1000: "NOT_READY",
    1001: "INVALID_SESSION",
    1002: "NOT_ALLOWED",
    1003: "NOT_FOUND",
    1004: "NOT_EXPECTED",
    1005: "NOT_SUPPORTED",
    1006: "BAD_PARAMETER",
    1007: "SERVER_PROBLEM",
}
SERVER_PROBLEM_BACKOFF: Final = 300.0
"""Seconds to wait after SERVER_PROBLEM: the installer has to act, so retry slowly (§7.4)."""
UNDOCUMENTED_429_BACKOFF: Final = 5.0


def parse_rest_error(body: bytes) -> RestErrorInfo | None:
    """Parse a ``RestErrorInfo`` body; None when the body is empty or not such an object."""
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    try:
        return RestErrorInfo.model_validate(obj)
    except ValidationError:
        return None


def error_from_response(
    status: int, body: bytes, *, what: str = "O2G request", login: bool = False
) -> StreamdError:
    """Classify a non-2xx O2G response into the streamd error tree.

    The ``RestErrorInfo`` type (or code) decides first, the HTTP status second:

    =================================  ==========================================
    INVALID_SESSION (1001)             :class:`SessionExpired` (log in again)
    NOT_READY (1000)                   :class:`TransientError`
    NOT_ALLOWED (1002)                 :class:`AuthError` (rights / licence / credentials)
    NOT_SUPPORTED (1005)               :class:`FatalError`
    SERVER_PROBLEM (1007)              :class:`BackOff` (300 s: the installer must act)
    NOT_FOUND / NOT_EXPECTED /         :class:`O2GRequestError` (fatal for that request)
    BAD_PARAMETER (1003/1004/1006)
    other type, ``canRetry=false``     :class:`FatalError`
    401, 403 (no usable type)          :class:`SessionExpired`; :class:`AuthError` if ``login``
    429                                :class:`BackOff` (undocumented by O2G)
    408, 5xx                           :class:`TransientError`
    other 4xx                          :class:`O2GRequestError`
    =================================  ==========================================

    Args:
        status: the HTTP status code (non-2xx).
        body: the response body (may be empty).
        what: a short description for the error line, e.g. ``"POST /subscriptions"``.
        login: the request was the authentication itself: 401/403 mean bad credentials.

    Returns:
        The exception to raise (not raised here).
    """
    info = parse_rest_error(body)
    kind = _error_type(info)
    line = _error_line(what, status, info, body)
    if login and (status in (401, 403) or kind == "NOT_ALLOWED"):
        return AuthError(f"{line} (check the O2G login and password)")
    if kind == "INVALID_SESSION":
        return SessionExpired(line)
    if kind == "NOT_READY":
        return TransientError(line)
    if kind == "NOT_ALLOWED":
        return AuthError(line)
    if kind == "NOT_SUPPORTED":
        return FatalError(line)
    if kind == "SERVER_PROBLEM":
        return BackOff(line, SERVER_PROBLEM_BACKOFF)
    if kind in ("NOT_FOUND", "NOT_EXPECTED", "BAD_PARAMETER"):
        return O2GRequestError(line, status=status, info=info)
    if kind is not None and info is not None and info.canRetry is False:
        return FatalError(line)
    return _from_status(status, line, info)


def _from_status(status: int, line: str, info: RestErrorInfo | None) -> StreamdError:
    if status in (401, 403):
        return SessionExpired(line)
    if status == 429:
        return BackOff(line, UNDOCUMENTED_429_BACKOFF)
    if status == 408 or status >= 500:
        return TransientError(line)
    return O2GRequestError(line, status=status, info=info)


def _error_type(info: RestErrorInfo | None) -> str | None:
    if info is None:
        return None
    if info.type:
        return info.type.upper()
    return ERROR_CODES.get(info.code) if info.code is not None else None


def _error_line(what: str, status: int, info: RestErrorInfo | None, body: bytes) -> str:
    if info is None:
        text = body[:200].decode("utf-8", "replace").strip()
        return f"{what}: HTTP {status}" + (f" {text}" if text else "")
    parts = [p for p in (info.type, str(info.code) if info.code is not None else None) if p]
    detail = " ".join(parts)
    message = info.helpMessage or info.innerMessage or ""
    return f"{what}: HTTP {status} {detail}: {message}".rstrip(": ")

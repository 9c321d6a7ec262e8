"""Shared HTTP plumbing for vendor clients: error mapping and status classification.

Rules:

1. Every vendor call runs inside :func:`httpx_errors`, so source logic never sees httpx errors.
2. :func:`check_status` is the one mapping from an HTTP status to the streamd error tree;
   vendors with special bodies (Xima 400 "initializing", O2G RestErrorInfo) look at the
   response first and call it for everything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from streamd.errors import AuthError, BackOff, FatalError, TransientError, map_errors
from streamd.retry import parse_retry_after

_HTTPX_MAP: dict[type[BaseException], type[TransientError]] = {
    httpx.TimeoutException: TransientError,
    httpx.TransportError: TransientError,
    httpx.StreamError: TransientError,
    httpx.DecodingError: TransientError,
}


@contextmanager
def httpx_errors() -> Iterator[None]:
    """Translate httpx transport errors into :class:`TransientError`."""
    with map_errors(_HTTPX_MAP):
        yield


def check_status(response: httpx.Response, what: str, *, default_backoff: float = 5.0) -> None:
    """Raise the streamd error a non-2xx response stands for; return on 2xx.

    Args:
        response: the vendor's response (its body need not be read for 2xx).
        what: a short description for the error line, e.g. ``"xima GET /metrics"``.
        default_backoff: seconds to wait after a 429 without a usable ``Retry-After``.

    Raises:
        AuthError: 401 or 403.
        BackOff: 429 (honouring ``Retry-After``), or 503 with ``Retry-After``.
        TransientError: 408, 5xx.
        FatalError: any other 4xx.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    line = f"{what}: HTTP {status}{_snippet(response)}"
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status in (401, 403):
        raise AuthError(line)
    if status == 429:
        raise BackOff(line, retry_after if retry_after is not None else default_backoff)
    if status == 503 and retry_after is not None:
        raise BackOff(line, retry_after)
    if status == 408 or status >= 500:
        raise TransientError(line)
    raise FatalError(line)


def _snippet(response: httpx.Response) -> str:
    try:
        text = response.text.strip()
    except httpx.ResponseNotRead:
        return ""
    return f" {text[:200]}" if text else ""

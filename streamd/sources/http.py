"""Shared HTTP plumbing for vendor clients: error mapping and status classification.

Rules:

1. Every vendor call runs inside :func:`httpx_errors`, so source logic never sees httpx errors.
2. :func:`check_status` is the one mapping from an HTTP status to the streamd error tree;
   vendors with special bodies (Xima 400 "initializing", O2G RestErrorInfo) look at the
   response first and call it for everything else.
3. TLS is configured the same way for every vendor client (:class:`TlsSettings` fields in its
   config, :func:`tls_verify` for httpx): a CA bundle, or verification off with one warning at
   start. A certificate that does not verify is a :class:`FatalError` naming the cause (the
   component goes ``failed`` and is retried on the slow schedule), never an endless retry.
4. Tracing (:mod:`streamd.tracing`, off by default): :func:`trace_vendor_requests` wraps
   ``httpx.AsyncClient.send`` process-wide, so every vendor client is traced without code of its
   own: one CLIENT span per request (method, URL without its query, status), and the span
   context of the last answered request is kept for the task that made it and for the task that
   started that one (a source fetching pages or scopes in child tasks emits from their parent):
   :func:`last_vendor_request` in the emitting task gives the newest, and its publish span
   becomes that request's child.
"""

from __future__ import annotations

import itertools
import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import Field

from streamd.config_types import StrictModel
from streamd.errors import AuthError, BackOff, FatalError, TransientError, map_errors
from streamd.retry import parse_retry_after

log = logging.getLogger("streamd.sources")


class TlsSettings(StrictModel):
    """TLS fields of a vendor client's config (mixed into each source/sink config)."""

    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate (keep it on).")
    ca_file: Path | None = Field(
        default=None, description="CA bundle (PEM) to verify the server's certificate with."
    )


def tls_verify(settings: TlsSettings, what: str) -> ssl.SSLContext | bool:
    """httpx's ``verify=`` for ``settings``; logs one warning when verification is off.

    Raises:
        FatalError: the CA bundle cannot be read.
    """
    if not settings.verify_tls:
        log.warning(
            "%s: TLS certificate verification is OFF (verify_tls: false): anyone on the path can read and change the traffic",
            what,
        )
        return False
    if settings.ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise FatalError(f"{what}: cannot use ca_file {settings.ca_file}: {exc}") from None


class CertificateError(FatalError):
    """The server's TLS certificate did not verify: retrying will not change it."""


_HTTPX_MAP: dict[type[BaseException], type[TransientError]] = {
    httpx.TimeoutException: TransientError,
    httpx.TransportError: TransientError,
    httpx.StreamError: TransientError,
    httpx.DecodingError: TransientError,
}


@contextmanager
def httpx_errors() -> Iterator[None]:
    """Translate httpx transport errors into :class:`TransientError`, and a certificate that
    does not verify into :class:`CertificateError` (fatal: rule 3)."""
    try:
        with map_errors(_HTTPX_MAP):
            yield
    except TransientError as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise CertificateError(f"TLS certificate not trusted: {cause.verify_message or cause}") from exc
        raise


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


_LAST_REQUEST: ContextVar[tuple[int, Any] | None] = ContextVar("streamd_last_vendor_request", default=None)
_BY_PARENT: dict[int, tuple[int, Any]] = {}  # task id -> (sequence, SpanContext) of a child's request
_sequence = itertools.count()


def last_vendor_request() -> Any:
    """The OpenTelemetry ``SpanContext`` of the newest vendor request answered in this task or in
    a task it started (rule 4), or None (tracing off, or no request yet)."""
    own = _LAST_REQUEST.get()
    child = _BY_PARENT.pop(anyio.get_current_task().id, None)
    newest = max((own, child), key=lambda x: -1 if x is None else x[0])
    return None if newest is None else newest[1]


def _answered(span_context: Any) -> None:
    entry = (next(_sequence), span_context)
    _LAST_REQUEST.set(entry)
    parent = anyio.get_current_task().parent_id
    if parent is not None:
        if len(_BY_PARENT) >= 10_000:  # tasks that never emit: bounded, not kept forever
            _BY_PARENT.clear()
        _BY_PARENT[parent] = entry


def trace_vendor_requests(tracer: Any) -> Callable[[], None]:
    """Trace every ``httpx.AsyncClient`` request with ``tracer`` (an OpenTelemetry ``Tracer``);
    returns the function that undoes it (rule 4)."""
    from opentelemetry.trace import SpanKind, Status, StatusCode

    original = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        url = request.url
        attributes = {
            "http.request.method": request.method,
            "url.full": str(url.copy_with(query=None, fragment=None)),
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
        }
        with tracer.start_as_current_span(
            request.method, kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            response = await original(self, request, **kwargs)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status_code}"))
            _answered(span.get_span_context())
            return response

    setattr(httpx.AsyncClient, "send", send)  # noqa: B010 (mypy refuses assigning a method)

    def undo() -> None:
        setattr(httpx.AsyncClient, "send", original)  # noqa: B010

    return undo

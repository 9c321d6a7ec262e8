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
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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

"""TLS settings shared by every vendor client: verification off warns, a bad CA file is fatal,
a certificate that does not verify is fatal with its cause (never retried for ever)."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import httpx
import pytest

from streamd.errors import FatalError, TransientError
from streamd.sources.http import CertificateError, TlsSettings, httpx_errors, tls_verify


def test_verification_off_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert tls_verify(TlsSettings(verify_tls=False), "xima cr1") is False
    assert [r.getMessage() for r in caplog.records] == [
        "xima cr1: TLS certificate verification is OFF (verify_tls: false): anyone on the path can read and change the traffic"
    ]


def test_a_ca_file_gives_a_context_and_an_unreadable_one_is_fatal(tmp_path: Path) -> None:
    assert tls_verify(TlsSettings(), "x") is True
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(FatalError, match=f"x: cannot use ca_file {bad}"):
        tls_verify(TlsSettings(ca_file=bad), "x")
    with pytest.raises(FatalError, match="cannot use ca_file"):
        tls_verify(TlsSettings(ca_file=tmp_path / "missing.pem"), "x")


def _untrusted() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    with httpx_errors():
        try:
            raise cause
        except ssl.SSLError as exc:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from exc


def _refused() -> None:
    with httpx_errors():
        raise httpx.ConnectError("connection refused")


def test_an_untrusted_certificate_is_fatal_with_its_cause() -> None:
    with pytest.raises(CertificateError, match="TLS certificate not trusted: self-signed certificate"):
        _untrusted()
    with pytest.raises(TransientError):  # any other transport error stays transient
        _refused()

"""retry.py: backoff, classify and Retry-After parsing (the loop is tested in test_supervisor.py)."""

from __future__ import annotations

import itertools

import pytest

from streamd.errors import (
    AuthError,
    BackOff,
    FatalError,
    NormalizationError,
    PublishError,
    TransientError,
    VendorProtocolError,
)
from streamd.retry import Fatal, Retry, Wait, backoff, classify, parse_retry_after


def test_backoff_full_jitter_grows_to_cap() -> None:
    delays = list(itertools.islice(backoff(initial=1, factor=2, cap=5, rng=lambda: 1.0), 6))
    assert delays == [1, 2, 4, 5, 5, 5]
    assert list(itertools.islice(backoff(rng=lambda: 0.0), 3)) == [0, 0, 0]


@pytest.mark.parametrize(
    ("exc", "decision"),
    [
        (TransientError("x"), Retry()),
        (VendorProtocolError("x"), Retry()),
        (OSError("reset"), Retry()),
        (TimeoutError(), Retry()),
        (BackOff("429", 7.5), Wait(7.5)),
        (BackOff("429", -1), Wait(0.0)),
        (AuthError("401"), Fatal()),
        (FatalError("400"), Fatal()),
        (NormalizationError("x"), Fatal()),
        (PublishError("spool full"), Retry()),
        (ValueError("bug"), Fatal()),
    ],
)
def test_classify(exc: BaseException, decision: object) -> None:
    assert classify(exc) == decision


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:50 GMT", now=lambda: now) == 30.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:00 GMT", now=lambda: now) == 0.0

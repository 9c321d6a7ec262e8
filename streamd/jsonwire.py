"""Decoding vendor JSON without losing precision.

Rules:

1. :func:`loads` is ``orjson.loads`` (fast, strict UTF-8) except for one thing orjson does
   silently: an integer beyond 64 bits becomes a float (``123456789012345678901234567890`` ->
   ``1.2345678901234568e+29``). When the input holds a run of 19 or more digits, it is decoded
   again with the standard library, and every integer that does not fit in 64 bits is kept
   *exactly*, as the string of its digits (orjson cannot encode such an int, and a consumer's
   JSON parser would round a bare number too). The tolerant reader lists it as a deviation where
   the vendor's document says "number".
2. :func:`may_hold_big_ints` lets a streaming decoder test a whole chunk once and skip the check
   per event (the hot path pays one scan per chunk).
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

__all__ = ["loads", "may_hold_big_ints"]

_DIGITS: Final = bytes(48 <= c <= 57 for c in range(256))
"""``bytes.translate`` table: an ASCII digit (what ``\\d`` matches in bytes) -> 1, anything else -> 0."""
_LONG_RUN: Final = b"\x01" * 19
_MIN, _MAX = -(2**63), 2**64 - 1


def may_hold_big_ints(raw: bytes | bytearray | memoryview) -> bool:
    """Whether ``raw`` has a run of 19+ ASCII digits (every integer beyond 64 bits has one).

    ``bytes.translate`` then a substring search: ~10x faster than a regular expression on a
    4 MB answer (the scan was a fifth of an Alvaria poll cycle).
    """
    data = raw if isinstance(raw, bytes | bytearray) else bytes(raw)
    return _LONG_RUN in data.translate(_DIGITS)


def loads(raw: bytes | bytearray | memoryview | str, *, check: bool = True) -> Any:
    """``orjson.loads(raw)``, keeping integers beyond 64 bits exact (as strings); ``check=False``
    skips the scan for callers that know ``raw`` has no 19-digit run.

    Raises:
        orjson.JSONDecodeError: ``raw`` is not JSON (also a ``ValueError``).
    """
    obj = orjson.loads(raw)
    if not check:
        return obj
    data = raw.encode() if isinstance(raw, str) else raw
    if not may_hold_big_ints(data):
        return obj
    return json.loads(bytes(data), parse_int=_exact_int)


def _exact_int(digits: str) -> int | str:
    value = int(digits)
    return value if _MIN <= value <= _MAX else digits

"""Building blocks shared by every config model (the core ones and each vendor's).

Rules:

1. Every model forbids unknown fields, so a typo is an error naming the field, not a silent default.
2. Durations are written ``"500ms"``, ``"5s"``, ``"15m"``, ``"1h"`` or as a number of seconds, and
   are floats (seconds) in code.
3. Secrets are :data:`Secret` (a non-empty :class:`pydantic.SecretStr`): never in logs, reprs or
   error messages, and never empty: an ``${env:...}`` that is unset or empty would otherwise turn
   a protection (``auth_token``, ``webhook_secret``) off without a word.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PlainSerializer,
    SecretStr,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

_DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$"
_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")  # "-5s" parses, to be refused as -5 is
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Parse ``"500ms"``, ``"5s"``, ``"15m"``, ``"1h"``, ``"1d"`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '5s'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(f"invalid duration {value!r}: use e.g. '500ms', '5s', '15m', '1h' or a number")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


_NUMBER_KEYWORDS = ("type", "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")


class _DurationJsonSchema:
    """A duration's JSON Schema accepts what :func:`parse_duration` accepts (rule 2).

    Input (validation) schema: ``anyOf`` a non-negative number, keeping the field's own bounds
    (``gt=0`` becomes ``exclusiveMinimum``), or a string like ``"5s"``. Output (serialization):
    a number of seconds.
    """

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        number = handler(schema)
        if handler.mode == "serialization":
            return number
        bounds = {k: v for k, v in number.items() if k in _NUMBER_KEYWORDS}
        if "minimum" not in bounds and "exclusiveMinimum" not in bounds:
            bounds["minimum"] = 0
        annotations = {k: v for k, v in number.items() if k not in _NUMBER_KEYWORDS}
        text = {"type": "string", "pattern": _DURATION_PATTERN}
        return {**annotations, "anyOf": [bounds, text]}


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    _DurationJsonSchema(),
    PlainSerializer(lambda v: v, return_type=float),
    Field(json_schema_extra={"examples": ["500ms", "5s", "15m", 30]}),
]


def host_port(value: str, *, what: str = "host:port") -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8080`` for IPv6); a clear ``ValueError`` otherwise."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"expected {what}, got {value!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range (0-65535) in {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            raise ValueError(f"expected an IPv6 address between the brackets in {value!r}")
    elif ":" in host or any(c.isspace() for c in host):
        raise ValueError(f"expected {what} (an IPv6 host goes in brackets: [::]:8080), got {value!r}")
    return host, port


def _check_url(value: str) -> str:
    from urllib.parse import urlsplit

    if any(c.isspace() for c in value):
        raise ValueError(f"a URL cannot contain spaces: {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:
        raise ValueError(f"the port in {value!r} is not a number between 0 and 65535") from None
    return value


HttpUrl = Annotated[str, AfterValidator(_check_url), Field(json_schema_extra={"format": "uri"})]
"""An http(s) URL with a host and no spaces (kept as the string the user wrote)."""


def _not_empty(secret: SecretStr) -> SecretStr:
    if not secret.get_secret_value().strip():
        raise ValueError("is empty: set a value (an ${env:...} or ${file:...} that is empty resolves to '')")
    return secret


Secret = Annotated[SecretStr, AfterValidator(_not_empty)]
"""A secret that must not be empty (rule 3)."""


class StrictModel(BaseModel):
    """Base of every config model: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


SourceName = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
        description="Unique name of this source; used in keys, ce_source, metrics and URLs.",
    ),
]

"""The one small exception tree of streamd.

::

    StreamdError
    ├── ConfigError              the configuration file is invalid (exit 2)
    ├── SourceError              something went wrong talking to a vendor
    │   ├── TransientError       retry with backoff (timeouts, 5xx, connection resets)
    │   ├── BackOff              retry after a server-given delay (429 + Retry-After)
    │   ├── VendorProtocolError  *their* bytes were bad (malformed stream, oversize event)
    │   └── FatalError           retrying cannot help; the daemon stops with one clear line
    │       └── AuthError        bad credentials / forbidden
    ├── NormalizationError       a vendor payload could not be turned into an event
    └── PublishError             Kafka did not acknowledge an event

Rules:

1. Adapters translate library exceptions (httpx, websockets, aiokafka) at their boundary with
   :func:`map_errors`; source logic never catches library exceptions itself.
2. Nothing here is swallowed silently: every caught error is counted and logged by telemetry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager


class StreamdError(Exception):
    """Base class of every error streamd raises on purpose."""


class ConfigError(StreamdError):
    """The configuration is invalid; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SourceError(StreamdError):
    """Base class of errors raised while talking to a vendor."""


class TransientError(SourceError):
    """A failure that is expected to go away: retry with exponential backoff."""


class BackOff(SourceError):
    """The vendor asked us to wait ``delay`` seconds before the next request."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class VendorProtocolError(SourceError):
    """The vendor sent bytes that break the protocol (retryable: reconnect)."""


class FatalError(SourceError):
    """Retrying cannot help (bad configuration on the vendor side, bad request)."""


class AuthError(FatalError):
    """Credentials were rejected or the account lacks a permission."""


class NormalizationError(StreamdError):
    """A payload could not be normalized; ``error_type`` is a bounded metric label."""

    def __init__(self, message: str, error_type: str = "invalid_payload") -> None:
        super().__init__(message)
        self.error_type = error_type


class PublishError(StreamdError):
    """Kafka did not acknowledge an event within the delivery timeout."""


@contextmanager
def map_errors(mapping: Mapping[type[BaseException], type[StreamdError]]) -> Iterator[None]:
    """Translate library exceptions into the streamd tree (the most specific match wins).

    Args:
        mapping: library exception class -> streamd exception class.

    Raises:
        StreamdError: the mapped class, chained to the original exception.
    """
    try:
        yield
    except StreamdError:
        raise
    except Exception as exc:
        for cls in type(exc).__mro__:
            target = mapping.get(cls)
            if target is not None:
                raise target(f"{type(exc).__name__}: {exc}") from exc
        raise

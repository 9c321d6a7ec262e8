"""O2G wire protocol, sans-IO: the chunk-channel event decoder and REST error classification.

The decoder and keepalive tests live in :mod:`.wire`, the REST error mapping in
:mod:`.rest_errors`; this module re-exports both (the names other modules and tests import).

Rules:

1. Nothing here does I/O, holds a clock or logs (the rules of each half are in its module).
"""

from __future__ import annotations

from .models_common import RestErrorInfo
from .rest_errors import (
    ERROR_CODES,
    SERVER_PROBLEM_BACKOFF,
    UNDOCUMENTED_429_BACKOFF,
    O2GRequestError,
    SessionExpired,
    error_from_response,
    parse_rest_error,
)
from .wire import (
    DEFAULT_MAX_EVENT_SIZE,
    KEEPALIVE_EVENT,
    MalformedEvent,
    O2GEventDecoder,
    StreamLimitError,
    is_channel_information,
    is_keepalive,
)

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "ERROR_CODES",
    "KEEPALIVE_EVENT",
    "SERVER_PROBLEM_BACKOFF",
    "UNDOCUMENTED_429_BACKOFF",
    "MalformedEvent",
    "O2GEventDecoder",
    "O2GRequestError",
    "RestErrorInfo",
    "SessionExpired",
    "StreamLimitError",
    "error_from_response",
    "is_channel_information",
    "is_keepalive",
    "parse_rest_error",
]

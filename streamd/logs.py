"""Logging: one JSON object per line by default, ``--log-format text`` for humans.

Rules: one line per state transition, not per retry (see :mod:`streamd.telemetry`); secrets never
reach a log line because config secrets are :class:`pydantic.SecretStr` everywhere. Libraries that
log every retry themselves (aiokafka, uvicorn's protocol errors) go through a
:class:`RepeatFilter`; while streamd itself retries a start-up step, the library's lines are
:func:`folded` into streamd's own line about that step.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class RepeatFilter(logging.Filter):
    """One line per logger and message per ``window`` for libraries that repeat themselves.

    During a Kafka outage aiokafka logs every failed connect, metadata refresh and produce
    request (3,510 ERROR lines in 46 s were seen) while streamd already reports the outage as one
    state transition of its ``kafka`` component; a flood of malformed requests makes uvicorn log
    one warning each.

    Rules:

    1. Only records of loggers named ``prefixes`` or below them are considered; others pass.
    2. Records are alike when logger, level and message (formatted, every run of digits masked:
       node ids, ports and counts vary between repeats) are the same.
    3. The first record of its kind passes; the alike ones within ``window`` seconds after it are
       dropped and counted; the first one after the window passes again, carrying the count as
       ``suppressed`` (a field of the JSON line, ``[N alike suppressed]`` in text), and opens a
       new window. A long outage thus logs each distinct message once a minute at most.
    4. At most ``max_kinds`` kinds are remembered; when full, those whose window is over are
       forgotten, then the longest unrepeated.
    """

    def __init__(
        self,
        prefixes: tuple[str, ...] = ("aiokafka", "kafka", "uvicorn.error"),
        window: float = 60.0,
        *,
        max_kinds: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window = window
        self.max_kinds = max_kinds
        self._clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # kind -> [window start, dropped]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat within its window (rule 3)."""
        name = record.name
        if not any(name == p or name.startswith(p + ".") for p in self.prefixes):
            return True
        kind = (name, record.levelno, _DIGITS.sub("N", record.getMessage()))
        now = self._clock()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return False
            if seen is not None and seen[1]:
                record.suppressed = int(seen[1])
            if seen is None and len(self._seen) >= self.max_kinds:
                self._forget(now)
            self._seen.pop(kind, None)  # (re)inserted last: the dict is oldest first
            self._seen[kind] = [now, 0]
        return True

    def _forget(self, now: float) -> None:
        for kind in [k for k, (start, _) in self._seen.items() if now - start >= self.window]:
            del self._seen[kind]
        while len(self._seen) >= self.max_kinds:
            del self._seen[next(iter(self._seen))]


_DIGITS = re.compile(r"\d+")


class Folded(logging.Handler):
    """What the libraries logged within a :func:`folded` block: how many lines, and the last one."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.count = 0
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Count the record and keep its message (never raises: it is logging)."""
        self.count += 1
        try:
            self.last = record.getMessage()
        except Exception:  # a library's bad format arguments: counted, not kept
            self.last = str(record.msg)

    def summary(self, library: str) -> str:
        """``aiokafka logged 3 lines, the last: ...`` ('' when it logged none)."""
        if not self.count:
            return ""
        lines = "1 line" if self.count == 1 else f"{self.count} lines"
        return f"{library} logged {lines}, the last: {self.last}"


@contextmanager
def folded(*loggers: str) -> Iterator[Folded]:
    """Within the block, what ``loggers`` (and the loggers below them) log is counted, not written.

    For a start-up step streamd retries itself (:func:`streamd.runtime.retry_until`): the step's
    own outcome is the one line (issue: aiokafka logged an ERROR per attempt while Kafka was
    unreachable at start), and it can quote the library's last line from the returned
    :class:`Folded`.

    Rules:

    1. Records of those loggers stop at them (``propagate`` is off within the block): no handler
       above them (the console, pytest's capture) sees them; their level still applies.
    2. On exit every logger is restored as it was, whatever the block raised.
    """
    sink = Folded()
    saved: list[tuple[logging.Logger, bool]] = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(sink)
        logger.propagate = False
    try:
        yield sink
    finally:
        for logger, propagate in saved:
            logger.removeHandler(sink)
            logger.propagate = propagate


class TextFormatter(logging.Formatter):
    """``time level logger: message``, plus ``[N alike suppressed]`` (see :class:`RepeatFilter`)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        text = super().format(record)
        suppressed = getattr(record, "suppressed", 0)
        return f"{text} [{suppressed} alike suppressed]" if suppressed else text


def setup_logging(fmt: str = "json", level: str = "INFO") -> None:
    """Configure the root logger once."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore", "websockets", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

"""O2G chunk-channel wire format, sans-IO: the event decoder and the keepalive tests.

Rules:

1. :class:`O2GEventDecoder` does no I/O, holds no clock and never logs. The chunk source is the
   pump: ``for item in decoder.feed(chunk): ...``; at end of stream it calls ``feed_eof()``.
2. Framing is not documented by the seed (spec o2g.md ambiguity 1), so the decoder accepts
   newline-delimited JSON *and* back-to-back objects, with whitespace, ``,``, ``[`` and ``]``
   skipped between objects, and bytes split at any boundary (inside multi-byte UTF-8, inside
   strings with escaped quotes or braces).
3. Hot path: a line that ends in ``\\n`` is handed to ``orjson.loads`` as a whole (NDJSON is what
   real O2G servers send; the whole lines of a chunk are split at once); only when that fails does
   a string-aware brace scanner find the object boundaries, jumping from ``{``/``}``/``"`` to the
   next with regexes, never a per-byte loop. A line cut by a read boundary is completed by the
   scanner, then the whole lines after it take the hot path again (reads rarely end at a line's
   end, so otherwise most lines would go the slow way): once a feed, so that a read full of
   malformed lines stays linear. An integer beyond 64 bits is kept exact wherever the read
   boundaries fall (the test for one covers a pending event's earlier bytes too).
4. A complete object that is not valid JSON does not kill the stream: ``feed`` returns a
   :class:`MalformedEvent` in its place (and for stray bytes between objects), so the caller can
   dead-letter it and go on. So does a *complete* event larger than ``max_event_size`` (whole
   line or scanned: its end is known, the stream goes on after it), as a ``MalformedEvent`` with
   ``error_type`` ``oversize_event`` and its first :data:`KEPT_BYTES`. Only an event still
   incomplete beyond ``max_event_size``, or as many stray bytes (no way to resync without
   buffering without bound), raises :class:`StreamLimitError`, carrying what the same ``feed``
   completed before it (``decoded``: the caller delivers those, then drops the decoder); and
   ``feed_eof`` raises :class:`VendorProtocolError` with a partial event.
5. :func:`error_from_response` is the one place that turns an O2G error response
   (``RestErrorInfo``) into the streamd error tree; ``canRetry`` alone cannot drive it (spec
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

import orjson

from streamd.errors import VendorProtocolError
from streamd.jsonwire import loads, may_hold_big_ints

DEFAULT_MAX_EVENT_SIZE: Final = 1_048_576
KEPT_BYTES: Final = 65_536
"""How much of an oversize event its ``MalformedEvent`` (and so its dead letter) keeps."""
KEEPALIVE_EVENT: Final = "OnChannelInformation"

# Between objects: anything that is not a separator (whitespace , [ ]).
_NON_SEPARATOR = re.compile(rb"[^ \t\r\n,\[\]]")
# Inside an object, outside strings: the next structural byte.
_STRUCTURAL = re.compile(rb'[{}"]')
# The rest of a JSON string body up to and including its closing quote (escapes honoured).
_STRING_TAIL = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN_BRACE = 0x7B


@dataclass(frozen=True, slots=True)
class MalformedEvent:
    """Bytes from the event stream that are not a JSON object: dead-letter them, keep reading.

    Attributes:
        raw: the offending bytes (a whole ``{...}`` span, or stray bytes between objects; the
            first :data:`KEPT_BYTES` of an oversize event).
        error: why they were rejected (bounded text, safe to log).
        error_type: ``malformed_json``, or ``oversize_event`` (larger than ``max_event_size``).
    """

    raw: bytes
    error: str
    error_type: str = "malformed_json"


class StreamLimitError(VendorProtocolError):
    """An event still incomplete beyond ``max_event_size``, or as many stray bytes: the stream
    cannot be resynced (rule 4).

    Attributes:
        decoded: what the same :meth:`O2GEventDecoder.feed` completed before it, in order: the
            vendor sent those and will not again; deliver them before ending the stream.
        raw: the first :data:`KEPT_BYTES` of the event (or stray bytes) that exceeded the limit,
            for its dead letter.
    """

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw
        self.decoded: list[dict[str, Any] | MalformedEvent] = []


def _kept(buf: bytes | bytearray, start: int, end: int) -> bytes:
    """``buf[start:end]``, at most its first :data:`KEPT_BYTES`, never cut inside a UTF-8
    character (a dead letter keeps valid text as text)."""
    cut = min(end, start + KEPT_BYTES)
    if cut < end:
        while cut > start and buf[cut] & 0xC0 == 0x80:  # a continuation byte: back to its start
            cut -= 1
    return bytes(buf[start:cut])


def _too_large(buf: bytes | bytearray, start: int, end: int, limit: int) -> MalformedEvent:
    """The :class:`MalformedEvent` of the complete event ``buf[start:end]``, over ``limit`` (rule 4)."""
    size = end - start
    kept = "" if size <= KEPT_BYTES else f"; its first {KEPT_BYTES} bytes kept"
    return MalformedEvent(
        _kept(buf, start, end),
        f"O2G event of {size} bytes exceeds max_event_size ({limit}){kept}",
        "oversize_event",
    )


class O2GEventDecoder:
    """Incremental decoder of the O2G chunk channel: bytes in, JSON objects out.

    Use one decoder per connection; after it raised, discard it (its buffer is not resynced).

    Args:
        max_event_size: the largest event (bytes) accepted; a larger one is a
            :class:`MalformedEvent` once complete, and raises :class:`StreamLimitError` while it
            is still incomplete beyond the limit (like h11's buffer limit and websockets'
            ``max_size``): with reads of 64 KiB, most events over the limit end the stream.
    """

    __slots__ = ("_buf", "_depth", "_exact", "_garbage", "_in_string", "_max", "_pos", "_start")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        if max_event_size <= 0:
            raise ValueError("max_event_size must be positive")
        self._max = max_event_size
        self._buf = bytearray()
        self._pos = 0  # next byte to examine
        self._start = -1  # offset of the pending object's "{", -1 between objects
        self._garbage = -1  # offset of pending stray bytes, -1 if none
        self._depth = 0
        self._in_string = False  # _pos is just after an opening quote
        self._exact = False  # the bytes fed last may hold an integer beyond 64 bits

    def feed(self, data: bytes) -> list[dict[str, Any] | MalformedEvent]:
        """Add bytes from the stream; return every object completed by them, in order.

        Args:
            data: the next bytes of the stream (any size, split anywhere).

        Returns:
            Decoded objects (``dict``) and :class:`MalformedEvent` markers, in stream order.

        Raises:
            StreamLimitError: a pending event (or stray bytes) grew beyond ``max_event_size``;
                ``decoded`` holds what this call completed before it.
        """
        out: list[dict[str, Any] | MalformedEvent] = []
        try:
            self._feed(data, out)
        except StreamLimitError as exc:
            exc.decoded = out
            raise
        return out

    def _feed(self, data: bytes, out: list[dict[str, Any] | MalformedEvent]) -> None:
        buf = self._buf
        fed = len(buf)  # where the new bytes begin
        seam = max(0, fed - 18)  # a digit run may straddle two chunks
        if 0 <= self._start < seam:  # a pending event's digit run may lie further back: from its start
            seam = self._start
        buf += data
        self._exact = may_hold_big_ints(memoryview(buf)[seam:])
        if self._start < 0 and self._garbage < 0:
            self._lines(out)
        while True:
            if self._start < 0 and not self._between_objects(out):
                break
            end = self._scan()
            if end < 0:
                break
            if end - self._start > self._max:  # as on the line paths: the limit holds on every path
                out.append(_too_large(buf, self._start, end, self._max))
            else:
                out.append(_decode(bytes(buf[self._start : end]), self._exact))
            # An NDJSON line cut by the read boundary ends here: back to whole lines for the rest
            # (once a feed: only the object begun before these bytes; and only after a one-line
            # object, so that pretty-printed objects are never re-split).
            after = end + 1 if buf.startswith(b"\r\n", end) else end
            lines = (
                self._start < fed and buf.startswith(b"\n", after) and buf.find(b"\n", self._start, end) < 0
            )
            self._start = -1
            self._pos = after if lines else end
            if lines:
                self._lines(out)
        self._compact()

    def feed_eof(self) -> None:
        """The stream ended.

        Raises:
            VendorProtocolError: an event (or stray bytes) was cut off by the end of the stream.
        """
        pending = self._start if self._start >= 0 else self._garbage
        if pending >= 0:
            size = len(self._buf) - pending
            snippet = bytes(self._buf[pending : pending + 80])
            raise VendorProtocolError(f"O2G event stream ended inside an event ({size} bytes): {snippet!r}")

    # -- internals -------------------------------------------------------------------------

    def _lines(self, out: list[dict[str, Any] | MalformedEvent]) -> None:
        """The NDJSON fast path of rule 3 for whole lines: one split, one ``loads`` per line.

        Lines that are one JSON object each are decoded here; at the first line that is not (or
        is not all there yet) :meth:`_between_objects` and the scanner take over, from its start.
        """
        buf = self._buf
        end = buf.rfind(b"\n")
        pos = self._pos
        if end < pos:
            return
        parse = loads if self._exact else orjson.loads  # = _loads_dict, one call less per line
        limit = self._max
        for line in buf[pos:end].split(b"\n"):
            if line:
                if line[0] != _OPEN_BRACE:
                    break
                try:
                    obj = parse(line)
                except orjson.JSONDecodeError:
                    break
                if type(obj) is not dict:
                    break
                if len(line) > limit and len(size := line.rstrip()) > limit:  # whitespace after it is no part
                    out.append(_too_large(size, 0, len(size), limit))
                else:
                    out.append(obj)
            pos += len(line) + 1
        self._pos = pos

    def _between_objects(self, out: list[dict[str, Any] | MalformedEvent]) -> bool:
        """Skip separators up to the next ``{``; try the NDJSON fast path. False = need bytes."""
        buf = self._buf
        while True:
            match = _NON_SEPARATOR.search(buf, self._pos)
            if match is None:
                self._pos = len(buf)
                self._check_garbage_size()
                return False
            i = match.start()
            if buf[i] != _OPEN_BRACE:
                if self._garbage < 0:
                    self._garbage = i
                brace = buf.find(b"{", i)
                if brace < 0:
                    self._pos = len(buf)
                    self._check_garbage_size()
                    return False
                i = brace
            if self._garbage >= 0:
                raw = bytes(buf[self._garbage : i]).strip()
                out.append(MalformedEvent(raw, "unexpected bytes between events"))
                self._garbage = -1
            newline = buf.find(b"\n", i)
            if newline >= 0:
                obj = _loads_dict(buf[i:newline], self._exact)
                if obj is not None:
                    if newline - i > self._max and (size := len(buf[i:newline].rstrip())) > self._max:
                        out.append(_too_large(buf, i, i + size, self._max))
                    else:
                        out.append(obj)
                    self._pos = newline + 1
                    continue
            self._start = i
            self._pos = i + 1
            self._depth = 1
            self._in_string = False
            return True

    def _scan(self) -> int:
        """Advance the brace scanner; return the end offset of the object, or -1 if incomplete."""
        buf = self._buf
        pos = self._pos
        depth = self._depth
        while True:
            if self._in_string:
                match = _STRING_TAIL.match(buf, pos)
                if match is None:
                    break
                pos = match.end()
                self._in_string = False
            found = _STRUCTURAL.search(buf, pos)
            if found is None:
                pos = len(buf)
                break
            pos = found.end()
            char = buf[found.start()]
            if char == 0x22:  # '"'
                self._in_string = True
            elif char == _OPEN_BRACE:
                depth += 1
            else:
                depth -= 1
                if depth == 0:
                    self._depth = 0
                    return pos
        self._pos = pos
        self._depth = depth
        if len(buf) - self._start > self._max:
            raise StreamLimitError(
                f"O2G event exceeds {self._max} bytes (still incomplete)", _kept(buf, self._start, len(buf))
            )
        return -1

    def _check_garbage_size(self) -> None:
        if self._garbage >= 0 and len(self._buf) - self._garbage > self._max:
            raise StreamLimitError(
                f"more than {self._max} stray bytes between O2G events",
                _kept(self._buf, self._garbage, len(self._buf)),
            )

    def _compact(self) -> None:
        """Drop consumed bytes so the buffer only holds the pending event (or stray bytes)."""
        keep = min(x for x in (self._start, self._garbage, self._pos) if x >= 0)
        if keep:
            del self._buf[:keep]
            self._pos -= keep
            if self._start >= 0:
                self._start -= keep
            if self._garbage >= 0:
                self._garbage -= keep


def _loads_dict(raw: bytes | bytearray, exact: bool) -> dict[str, Any] | None:
    try:
        obj = loads(raw, check=exact)
    except orjson.JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def _decode(raw: bytes, exact: bool) -> dict[str, Any] | MalformedEvent:
    try:
        obj = loads(raw, check=exact)
    except orjson.JSONDecodeError as exc:
        return MalformedEvent(raw, f"invalid JSON: {exc}")
    if type(obj) is not dict:  # pragma: no cover - a balanced {...} always decodes to a dict
        return MalformedEvent(raw, "not a JSON object")
    return obj


def is_keepalive(obj: dict[str, Any]) -> bool:
    """True for the chunk channel's keepalive ``{"eventName":"OnChannelInformation","text":"keepalive"}``.

    The seed gives exactly this body (004 L2122). Keepalives count as liveness, never as events.
    """
    return obj.get("eventName") == KEEPALIVE_EVENT and obj.get("text") == "keepalive"


def is_channel_information(obj: dict[str, Any]) -> bool:
    """True for any ``OnChannelInformation`` (keepalive or the "channel established" notice).

    ALE's SDKs treat the first non-keepalive ``OnChannelInformation`` after opening the channel
    as "channel established" (not in the seed). Neither kind is a business event.
    """
    return obj.get("eventName") == KEEPALIVE_EVENT

"""uvicorn's httptools protocol bounded by :mod:`streamd.http.limits` (its rules 1 to 4).

llhttp (httptools) parses a whole read at once and reports no offsets, and keeps no bound on a
request head: this class counts the bytes of the head being received itself.

Rules:

1. Connections: :func:`~streamd.http.limits.admitted` when a connection is made, as for h11.
2. The head timer is armed when a connection is accepted and when bytes of a further request's
   head arrive on a kept-alive connection, but only once every answer owed on the connection is
   sent (as h11's: a slow answer never lets a pipelined head's timer close the connection under
   it; the timer is then armed when the last answer completes); it is disarmed once a head is
   complete. When it fires while a head is still being received, the connection is closed
   without an answer and counted (``header_timeout``).
3. Head size: a read that arrives while a head is being received counts whole, except for what
   follows the head's end (a blank line) in it. A read that would take the count past
   ``max_header_bytes`` is answered 431 and the connection closed before llhttp sees it, so
   neither llhttp nor uvicorn holds more of an unfinished head than the bound. A head that begins
   inside a read, behind an earlier request (pipelining), counts from that read's last blank line:
   exact behind a request without a body; behind a body, that body's bytes in the same read count
   too (a pipelining client may be refused early, never late). A pipelined head that arrives whole
   inside one read is measured from what llhttp reports (request line, names and values, their
   separators: what the head holds but extra spaces) and refused 431 past the bound; the rest of
   that read is then ignored.
4. Content-Length with Transfer-Encoding: llhttp refuses such a request (400) unless told to read
   it by its Transfer-Encoding (``lenient_chunked_length``, what h11 does): it is, and the request
   gets the ``connection: close`` header and is answered with it, then the connection is closed.
   Any other Transfer-Encoding than chunked last is still refused by llhttp (400).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.flow_control import CLOSE_HEADER
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from streamd.http.limits import HEAD_END, TOO_LARGE, HeadTimed, is_smuggling_risk
from streamd.telemetry import count_error


class BoundedHttpTools(HeadTimed, HttpToolsProtocol):
    """uvicorn's httptools protocol plus the module's rules."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parser.set_dangerous_leniencies(lenient_chunked_length=True)  # rule 4
        self._in_head = True  # the next byte belongs to a request head
        self._head_bytes = 0  # bytes of the head being received, so far (rule 3)
        self._tail = b""  # its last bytes: a blank line may straddle two reads
        self._completed = False  # a request ended during the current read
        self._next = False  # and another began after it, not yet complete
        self._refused = False  # a head is refused (431): nothing more is parsed or started
        self._refuse_after = False  # the 431 waits for answers still owed

    def data_received(self, data: bytes) -> None:
        """Refuse a head past the bound before parsing (rule 3); parse; count and time the head."""
        if self._refused:
            return
        if self._in_head and self._head_bytes + len(data) > self._limits.max_header_bytes:
            end = HEAD_END.search(self._tail + data)
            if end is None or self._head_bytes + end.end() - len(self._tail) > self._limits.max_header_bytes:
                self._refuse()
                return
        was_in_head, self._completed, self._next = self._in_head, False, False
        super().data_received(data)
        if not self._in_head or self._refused or self.transport.is_closing():
            return
        if self._next:  # this head began behind an earlier request in this read
            begun = len(data) - max((m.end() for m in HEAD_END.finditer(data)), default=0)
            self._head_bytes, self._tail = begun, data[len(data) - min(begun, 3) :]
            if begun > self._limits.max_header_bytes:
                self._refuse()
                return
        elif self._completed:
            return  # a request ended with this read: nothing of the next one yet
        elif was_in_head:
            self._head_bytes += len(data)
            self._tail = (self._tail + data)[-3:]
        if self._head_bytes:
            self._arm()  # the first bytes of a further request (or more of this one's)

    def on_message_begin(self) -> None:
        """uvicorn's handling; notes a request that begins behind another in the same read."""
        super().on_message_begin()
        self._next = self._completed

    def on_headers_complete(self) -> None:
        """The head is complete: disarm; then uvicorn's handling, and rule 4."""
        self._in_head, self._head_bytes, self._tail = False, 0, b""
        self._disarm()
        if self._refused:
            return
        if self._next and self._reported_head() > self._limits.max_header_bytes:
            self._refuse()  # a whole pipelined head inside one read (rule 3)
            return
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before and is_smuggling_risk(self.headers):
            self.headers.append(CLOSE_HEADER)  # the application sees it; uvicorn echoes it
            self.cycle.keep_alive = False  # closed once answered; a pipelined request is never started

    def on_body(self, body: bytes) -> None:
        """uvicorn's handling, unless the connection was refused during this read."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The request ended: whatever follows is the next request's head."""
        if not self._refused:
            super().on_message_complete()
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        self._completed, self._next = True, False

    def _reported_head(self) -> int:
        """The head's size as llhttp reported it: request line, headers and their separators."""
        line = len(self.parser.get_method()) + len(self.url) + 12  # "M URL HTTP/1.1\r\n"
        return line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2

    def on_response_complete(self) -> None:
        """uvicorn's handling (the next pipelined request starts); the 431 once every request
        before the refused head is answered."""
        last = not self.pipeline
        super().on_response_complete()
        if last and self._refuse_after:
            self._too_large()
        elif self._in_head and self._head_bytes:
            self._arm()  # a further head began while this answer was owed (rule 2)

    def _refuse(self) -> None:
        """Refuse the head being received (431), after the answers still owed on this connection."""
        self._refused = True  # nothing more is parsed or started
        self._disarm()
        self.flow.pause_reading()
        if self.pipeline or (self.cycle is not None and not self.cycle.response_complete):
            self._refuse_after = True
        else:
            self._too_large()

    def _too_large(self) -> None:
        self._refuse_after = False
        count_error("http", "http", "header_too_large")
        if not self.transport.is_closing():
            self.transport.write(TOO_LARGE)
            self.transport.close()

    def _owed(self) -> bool:
        """An answer is still owed on this connection (being written, or a pipelined request)."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _may_arm(self) -> bool:
        return not self._owed()  # rule 2

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head or self._owed():
            return  # owed: armed again once the last answer is sent
        count_error("http", "http", "header_timeout")
        self.transport.close()

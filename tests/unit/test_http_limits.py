"""The bounds of streamd's HTTP port (:mod:`streamd.http.limits`), against a real uvicorn server on
loopback and raw TCP clients: connections, request head read time (slow-loris) and size, and
requests framed by both Content-Length and Transfer-Encoding. Every test runs against both HTTP/1.1
parsers (``parser``): httptools (what streamd uses where it is installed) and h11."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from streamd.config_core import HttpConfig
from streamd.http.limits import HTTPTOOLS, Limits, Parser, protocol
from streamd.http.server import serve
from streamd.telemetry import ERRORS

pytestmark = pytest.mark.anyio

PARSERS: list[Parser] = ["httptools", "h11"] if HTTPTOOLS else ["h11"]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> Parser:
    """The HTTP/1.1 parser the server under test uses."""
    chosen: Parser = request.param
    return chosen


BOUND = 10.0  # seconds any single wait below may take before the test fails


async def _echo(request: Request) -> Response:
    return PlainTextResponse(f"{len(await request.body())}\n")


async def _ok(_: Request) -> Response:
    return PlainTextResponse("ok\n")


HEAD_TIMEOUT = 0.1  # the head timeout of the tests that wait past it
PAST_IT = 3 * HEAD_TIMEOUT  # a wait (or a slow answer) well past it


async def _slow(_: Request) -> Response:
    await anyio.sleep(PAST_IT)
    return PlainTextResponse("slow\n")


APP = Starlette(routes=[Route("/echo", _echo, methods=["POST"]), Route("/livez", _ok), Route("/slow", _slow)])


class Port:
    """The server's port; :meth:`connect` opens raw connections, closed when the block ends."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: list[SocketStream] = []

    async def connect(self) -> SocketStream:
        stream = await anyio.connect_tcp("127.0.0.1", self.port)
        self.streams.append(stream)
        return stream


@asynccontextmanager
async def server(limits: Limits, parser: Parser) -> AsyncIterator[Port]:
    async with anyio.create_task_group() as tg:
        bound: int = await tg.start(
            lambda task_status: serve(
                APP, "127.0.0.1", 0, limits=limits, parser=parser, task_status=task_status
            )
        )
        port = Port(bound)
        try:
            yield port
        finally:
            for stream in port.streams:
                await stream.aclose()
            tg.cancel_scope.cancel()


async def read_all(stream: SocketStream) -> bytes:
    """Everything until the server closes the connection (fails after ``BOUND`` seconds)."""
    data = b""
    with anyio.fail_after(BOUND):
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return data


def errors(error_type: str) -> float:
    return ERRORS.labels("http", "http", error_type)._value.get()


async def test_defaults_come_from_the_http_config() -> None:
    assert Limits.of() == Limits(1000, 10.0, 16_384)
    config = HttpConfig(max_connections=5, header_timeout="2s", max_header_bytes=2048)  # type: ignore[arg-type]
    assert Limits.of(config) == Limits(5, 2.0, 2048)


async def test_idle_and_trickling_connections_are_closed_after_the_header_timeout(parser: Parser) -> None:
    before = errors("header_timeout")
    async with server(Limits(100, header_timeout=0.5, max_header_bytes=16_384), parser) as port:
        idle = await port.connect()  # says nothing at all
        trickling = await port.connect()  # a byte at a time, never done
        kept = await port.connect()  # one request, then trickles a second
        await kept.send(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
        with anyio.fail_after(BOUND):
            assert b"ok\n" in await kept.receive()
        closed: list[str] = []

        async def trickle(name: str, stream: SocketStream) -> None:
            head = b"GET /livez HTTP/1.1\r\nhost: x\r\n" + b"x-pad: " + b"a" * 100_000
            for byte in head:
                try:
                    await stream.send(bytes([byte]))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    break
                await anyio.sleep(0.02)
            closed.append(name)

        async def wait_closed(name: str, stream: SocketStream) -> None:
            assert await read_all(stream) == b""  # closed without an answer
            closed.append(name)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_closed, "idle", idle)
            tg.start_soon(trickle, "trickling", trickling)
            tg.start_soon(trickle, "kept", kept)
        assert sorted(closed) == ["idle", "kept", "trickling"]
        fresh = await port.connect()  # the server still answers
        await fresh.send(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert (await read_all(fresh)).startswith(b"HTTP/1.1 200")
    assert errors("header_timeout") - before == 3


async def test_connections_beyond_max_connections_are_refused_with_one_log_line_per_transition(
    caplog: pytest.LogCaptureFixture, parser: Parser
) -> None:
    caplog.set_level(logging.INFO, logger="streamd.http")
    before = errors("too_many_connections")
    async with server(Limits(3, header_timeout=60, max_header_bytes=16_384), parser) as port:
        held = [await port.connect() for _ in range(3)]
        refused = []
        for _ in range(4):
            extra = await port.connect()
            await extra.send(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n")
            refused.append(await read_all(extra))
        for answer in refused:
            assert answer.startswith(b"HTTP/1.1 503") or answer == b"", answer  # refused, maybe reset
        assert any(a.startswith(b"HTTP/1.1 503") for a in refused)
        for stream in held:
            await stream.aclose()

        async def answered() -> bool:
            stream = await port.connect()
            await stream.send(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            return (await read_all(stream)).startswith(b"HTTP/1.1 200")

        with anyio.fail_after(BOUND):
            while not await answered():  # the server may not have seen the closes yet
                await anyio.sleep(0.05)
    assert errors("too_many_connections") - before >= 4
    lines = [r.getMessage() for r in caplog.records if r.name == "streamd.http"]
    assert [m for m in lines if "refusing" in m] == [
        "http: 3 connections open (http.max_connections): refusing new ones"
    ]
    assert len([m for m in lines if "accepting new ones again" in m]) == 1, lines


async def test_a_request_with_content_length_and_transfer_encoding_closes_the_connection(
    parser: Parser,
) -> None:
    async with server(Limits.of(), parser) as port:
        stream = await port.connect()
        await stream.send(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n"
            b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n"  # pipelined: must not be answered
        )
        answer = await read_all(stream)  # the server closes after the first answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"connection: close" in head.lower()
    assert body == b"5\n"  # read by its Transfer-Encoding (as h11 does), not by the Content-Length


async def test_content_length_alone_keeps_the_connection_alive(parser: Parser) -> None:
    async with server(Limits.of(), parser) as port:
        stream = await port.connect()
        await stream.send(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
            b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        answer = await read_all(stream)
    assert answer.count(b"HTTP/1.1 200") == 2, answer


@pytest.mark.parametrize("packets", [1, 3], ids=["whole", "split"])
async def test_a_request_head_beyond_max_header_bytes_is_refused(packets: int, parser: Parser) -> None:
    head = b"GET /livez HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 8192 + b"\r\n\r\n"
    async with server(Limits(100, header_timeout=60, max_header_bytes=4096), parser) as port:
        stream = await port.connect()
        size = -(-len(head) // packets)
        try:
            for i in range(0, len(head), size):
                await stream.send(head[i : i + size])
                await anyio.sleep(0.05)  # separate reads on the server
        except (anyio.BrokenResourceError, OSError):
            pass  # refused before the rest was sent
        answer = await read_all(stream)
        assert answer.startswith(b"HTTP/1.1 431"), answer
        fits = await port.connect()
        await fits.send(
            b"GET /livez HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 2048 + b"\r\nconnection: close\r\n\r\n"
        )
        assert (await read_all(fits)).startswith(b"HTTP/1.1 200")


def test_httptools_serves_where_it_is_installed_and_h11_can_be_chosen() -> None:
    names = {parser: protocol(Limits.of(), parser).__mro__[1].__name__ for parser in PARSERS}
    assert names["h11"] == "_BoundedH11"
    if HTTPTOOLS:
        assert protocol(Limits.of()).__mro__[1].__name__ == "BoundedHttpTools"
        assert names["httptools"] == "BoundedHttpTools"


@pytest.mark.parametrize("posts", [1, 2])
async def test_a_kept_alive_connection_after_a_body_is_not_closed_by_the_header_timeout(
    posts: int, parser: Parser
) -> None:
    """The head timer runs only while a head is being received: after POSTs with their bodies (one
    read, pipelined when two), an idle kept-alive connection is left to the keep-alive timeout."""
    before = errors("header_timeout")
    async with server(Limits(100, header_timeout=HEAD_TIMEOUT, max_header_bytes=16_384), parser) as port:
        stream = await port.connect()
        await stream.send(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello" * posts)
        answers = b""
        with anyio.fail_after(BOUND):
            while answers.count(b"\r\n\r\n5\n") < posts:
                answers += await stream.receive()
        await anyio.sleep(PAST_IT)  # well past the head timeout, before the keep-alive timeout
        await stream.send(b"GET /livez HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert (await read_all(stream)).startswith(b"HTTP/1.1 200")
    assert errors("header_timeout") == before


async def test_a_slow_answer_is_sent_before_the_head_timer_of_a_pipelined_head_runs(parser: Parser) -> None:
    """Part of a further head arrives while the first request is still being answered (for longer
    than the head timeout): the answer is sent; the head timer runs from then on and closes the
    connection, the unfinished head never completed."""
    before = errors("header_timeout")
    async with server(Limits(100, header_timeout=HEAD_TIMEOUT, max_header_bytes=16_384), parser) as port:
        stream = await port.connect()
        await stream.send(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\nGET /livez HTTP/1.1\r\nhost: x\r\n")
        data = await read_all(stream)
    assert data.startswith(b"HTTP/1.1 200"), data
    assert data.endswith(b"slow\n"), data
    assert errors("header_timeout") == before + 1


@pytest.mark.parametrize("body", [b"", b"hello"], ids=["behind-get", "behind-post"])
async def test_a_pipelined_request_head_beyond_max_header_bytes_is_refused(
    body: bytes, parser: Parser
) -> None:
    """A head pipelined behind another request in the same read, arriving whole or in parts."""
    first = (
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body) + body
        if body
        else b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    big = b"GET /livez HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 8192 + b"\r\n\r\n"
    async with server(Limits(100, header_timeout=60, max_header_bytes=4096), parser) as port:
        whole = await port.connect()
        await whole.send(first + big)
        answer = await read_all(whole)
        assert answer.count(b"HTTP/1.1 200") == 1, answer
        assert b"HTTP/1.1 431" in answer, answer
        parts = await port.connect()
        try:
            await parts.send(first + big[:2000])
            await anyio.sleep(0.05)  # separate reads on the server
            await parts.send(big[2000:])
        except (anyio.BrokenResourceError, OSError):
            pass  # refused before the rest was sent
        answer = await read_all(parts)
        assert answer.count(b"HTTP/1.1 200") == 1, answer
        assert b"HTTP/1.1 431" in answer, answer


async def test_pipelined_requests_that_fit_are_answered_in_order(parser: Parser) -> None:
    head = b"GET /livez HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 3000 + b"\r\n\r\n"
    async with server(Limits(100, header_timeout=60, max_header_bytes=4096), parser) as port:
        stream = await port.connect()
        await stream.send(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello"
            + head
            + head[:1500]  # the third head arrives in two reads
        )
        await anyio.sleep(0.05)
        await stream.send(head[1500:-4] + b"\r\nconnection: close\r\n\r\n")
        answer = await read_all(stream)
    assert answer.count(b"HTTP/1.1 200") == 3, answer
    assert answer.index(b"\r\n\r\n5\n") < answer.index(b"ok\n")


@pytest.mark.parametrize("split", [0, 2000, -3, -1], ids=["whole", "middle", "in-blank-line", "last-byte"])
@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-bound", "one-byte-over"])
async def test_a_head_of_exactly_max_header_bytes_is_read_and_one_byte_more_is_refused(
    split: int, extra: int, parser: Parser
) -> None:
    """The bound counts the request line, the headers and the blank line that ends them, whatever
    the reads they arrive in (a blank line straddling two reads included), not the body that
    follows them in the same read."""
    start = b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 100\r\nx-pad: "
    head = start + b"a" * (4096 - len(start) - 4 + extra) + b"\r\n\r\n"
    assert len(head) == 4096 + extra
    request = head + b"b" * 100
    async with server(Limits(100, header_timeout=60, max_header_bytes=4096), parser) as port:
        stream = await port.connect()
        cut = split % len(head)  # where the head is cut in two reads (0: one read)
        if cut:
            await stream.send(request[:cut])
            await anyio.sleep(0.05)  # separate reads on the server
        with contextlib.suppress(anyio.BrokenResourceError, OSError):  # refused before the rest was sent
            await stream.send(request[cut:])
        answer = await read_all(stream)
    assert answer.startswith(b"HTTP/1.1 431" if extra else b"HTTP/1.1 200"), answer
    assert extra or answer.endswith(b"\r\n\r\n100\n")

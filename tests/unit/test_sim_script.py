"""The simulators' shared fault script and request log (streamd.sim.script)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from streamd.sim.script import Fault, FaultScript, RequestLog, contains
from streamd.sim.server import serving


def test_take_uses_up_times_and_tries_keys_most_specific_first() -> None:
    script = FaultScript()
    script.add("agents", Fault(503), times=2)
    script.add("agents@team1", Fault(429))
    assert script.take("agents@team1", "agents") == Fault(429)
    assert script.take("agents@team1", "agents") == Fault(503)
    assert script.take("agents") == Fault(503)
    assert script.take("agents") is None
    assert script.pending() == 0


def test_an_outage_lasts_until_cleared_and_contains_matches_fragments() -> None:
    script = FaultScript(contains)
    script.add("/subscriptions", Fault(500), times=None)
    for _ in range(5):
        assert script.take("/api/rest/1.0/subscriptions/abc") == Fault(500)
    assert script.take("/api/rest/1.0/sessions") is None
    script.clear("/subscriptions")
    assert script.take("/api/rest/1.0/subscriptions/abc") is None


def test_times_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="times must be at least 1"):
        FaultScript().add("x", Fault(), times=0)


@pytest.mark.anyio
async def test_request_log_records_http_and_websocket_answers_in_order() -> None:
    script = FaultScript()
    script.add("hello", Fault(418, b'{"no":1}', headers={"Retry-After": "2"}))
    ticks = iter(range(100))

    async def hello(request: Request) -> Response:
        fault = script.take("hello")
        if fault is not None:
            return await fault.respond()
        return Response("hi")

    async def ws(socket: WebSocket) -> None:
        if socket.query_params.get("refuse"):
            await socket.close(code=1008)
            return
        await socket.accept()
        await socket.send_text("x")
        await socket.close()

    log = RequestLog(
        Starlette(routes=[Route("/hello", hello), WebSocketRoute("/ws", ws)]), clock=lambda: next(ticks)
    )
    async with serving(log) as url, httpx.AsyncClient() as client:
        first = await client.get(f"{url}/hello?a=1", headers={"Authorization": "Bearer t"})
        second = await client.get(f"{url}/hello")
        ws_url = url.replace("http", "ws")
        async with connect(f"{ws_url}/ws") as socket:
            assert await socket.recv() == "x"
        with pytest.raises(InvalidStatus):
            async with connect(f"{ws_url}/ws?refuse=1"):
                pass
    assert (first.status_code, first.headers["retry-after"], first.json()) == (418, "2", {"no": 1})
    assert second.text == "hi"
    assert [(r.at, r.method, r.path, r.status) for r in log.entries] == [
        (0, "GET", "/hello", 418),
        (1, "GET", "/hello", 200),
        (2, "WS", "/ws", 101),
        (3, "WS", "/ws", 403),
    ]
    assert log.entries[2].websocket
    assert log.entries[0].params == {"a": "1"}
    assert log.entries[0].headers["authorization"] == "Bearer t"
    assert log.to("/hel", "GET") == log.entries[:2]

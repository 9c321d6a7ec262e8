"""The Xima simulator's finished calls stay bounded: the world's record, the profiles' queue, the
requests logged (a simulator that runs for days, with or without WebService profiles)."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import streamd.sim.xima.simulator as simulator
from streamd.sim.server import serving
from streamd.sim.xima import WebServiceProfile, XimaSimulator, XimaWorld
from streamd.sim.xima.webservice import WebServicePusher

pytestmark = pytest.mark.anyio


def test_the_world_keeps_the_last_finished_calls_and_numbers_them_all() -> None:
    world = XimaWorld(agents=10, calls_kept=3)
    while world.finished_calls < 10:
        world.step()
    assert len(world.calls) == 3
    last = world.finished_calls
    assert [c["callId"] for c in world.calls] == [str(100_000 + n) for n in range(last - 2, last + 1)]


async def test_without_a_profile_no_finished_call_is_queued() -> None:
    async with XimaSimulator(agents=10) as sim:
        while sim.world.finished_calls < 20:
            sim.step()  # no await in between: nothing could have drained a queue
        assert sim.calls_waiting == 0
        assert sim.calls_not_sent == 0


async def test_the_profiles_queue_is_bounded_and_counts_what_it_could_not_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(simulator, "OUTBOX_SIZE", 3)
    profile = WebServiceProfile("http://127.0.0.1:9/calls")  # nothing listens: never mind, never reached
    async with XimaSimulator(agents=10, profiles=[profile]) as sim:
        while sim.world.finished_calls < 10:
            sim.step()  # the pushing task cannot run meanwhile: the queue fills
        assert sim.calls_waiting == 3
        assert sim.calls_not_sent == sim.world.finished_calls - 3


async def test_the_pusher_logs_the_last_requests_only() -> None:
    async def ok(request: Request) -> Response:
        return Response(status_code=200)

    app = Starlette(routes=[Route("/calls", ok, methods=["GET", "POST"])])
    pusher = WebServicePusher(kept=2)
    async with serving(app) as url:
        pusher.profiles.append(WebServiceProfile(f"{url}/calls", method="GET"))
        try:
            for n in range(5):
                await pusher.send({"callId": str(n)})
        finally:
            await pusher.aclose()
    assert [(s.call_id, s.status) for s in pusher.sent] == [("3", 200), ("4", 200)]

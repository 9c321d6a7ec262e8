"""A Calabrio ONE simulator: a real HTTP server on 127.0.0.1 for tests and ``streamd demo``.

Modules: :mod:`.world` (the tenant's agents, activities, adherence and sessions, no HTTP),
:mod:`.wfm` (teams, service queues, schedules), :mod:`.app` (the routes), :mod:`.capture` (the
real-time data capture route), :mod:`.responses`, :mod:`.faults` (what tests script to go
wrong, on :mod:`streamd.sim.script`), :mod:`.simulator` (the facade tests use);
``python -m streamd.sim.calabrio --help``.

What it serves (paths as in spec/calabrio.md, seed 002):

- ``POST /api/rest/authorize`` (JSON ``username`` or ``userId`` + ``password``) -> ``sessionId``
  and the ``hazelcast.sessionId`` cookie; ``GET`` (who am I) and ``DELETE`` (logout) too.
  Every other route answers 401 without a live session cookie.
- ``POST /api/rest/scheduling/realTime/activity/detail?fromTime=&toTime=`` (body ``agentIds``):
  activities with ``fromTime <= timestamp < toTime`` plus, per agent with one, the state that
  began before ``fromTime`` and was left inside the window (002 L4590-4603). An activity becomes
  visible at its ``visible_at`` (late capture), which may be after its ``timestamp``.
- ``GET /api/rest/scheduling/adherence/agent?date=&pageSize=&pageNumber=`` (pageSize <= 200).
- ``GET /api/rest/scheduling/agent``: the agent reference list. As the guide says (002 L671-686),
  only ``fullDetail=true`` returns every field (``acdId``, ``services``, teams...); without it a
  row holds the basic detail only: the id, first and last name and employee number.
- ``GET /api/rest/org/common/team/permission/{permission}`` (the teams in scope, 002
  L4496-4530: ``id``, ``name``, ``groupId``) and ``GET /api/rest/scheduling/service`` (the
  service queues, 002 L5100-5140: ``id``, ``number``, ``name``...): the teams and queues the
  agents belong to.
- ``GET|POST /api/rest/scheduling/schedule/activity/detail?fromDate=&toDate=`` (body
  ``agentIds``): Schedule Details (002 L4902-4999), every activity with any part in the dates
  (``tenant_zone``) whole, times as text as in the seed; :meth:`~CalabrioSimulator.set_schedule`.
  Adherence figures may be set per date (:meth:`~CalabrioSimulator.set_adherence` ``date=``).
- ``GET /api/rest/monitoring/contacts/lite``: the contacts of the past 15 minutes
  (``{"contacts": {"total", "totalWithAudio", "totalWithVideo"}}``, ``total`` as text as in the
  seed's example, 002 L2340-2350); :meth:`~CalabrioSimulator.set_contacts` scripts them.
- ``POST /api/rest/scheduling/gis/realTimeAgentState``: the real-time data capture endpoint.
  It records accepted records in :attr:`CalabrioSimulator.captured`; a request containing an
  invalid or scripted-to-reject record is refused as a whole with 400 (nothing recorded).
  ``capture_body`` makes it take only one body shape (the seed leaves the shape undocumented,
  002 L4686-4690): ``"array"`` refuses a single object, ``"object"`` an array, with 400.
  ``capture_format`` makes it take only one content type (``json``, or ``multipart``: the
  guide's declared ``multipart/form-data``, 002 L4659, with the records' JSON text in the form
  field ``capture_field``); another content type is refused with 415.

Scripting: :meth:`~CalabrioSimulator.add_activity` (``visible_at`` after ``timestamp``: an
activity captured late), :meth:`~CalabrioSimulator.expire_sessions`, ``expire_after`` (a session
dies after N API calls), :meth:`~CalabrioSimulator.fail_next` (status + optional
``Retry-After`` on the next matching requests), :meth:`~CalabrioSimulator.garble_next` (a 200
whose body cannot be read: not JSON, not an array, an HTML login page), ``ignore_page_number``
(adherence pages ignore ``pageNumber``: every page is the first), ``reject_acd_ids``,
``capture_body``. :attr:`~CalabrioSimulator.requests` is the shared request log
(:class:`streamd.sim.script.RequestLog`), :attr:`~CalabrioSimulator.bodies` the request bodies.
With ``auto=True`` agents change state on their own (the demo).

Deviations (tolerant reading): ``deviate`` (a share, 0.0-1.0) makes that share of the
activities, of the agents' activity rows (their fields besides the activities), of the adherence
rows and of the agent reference rows deviate from the document the way real servers do
(:mod:`streamd.sim.deviate`: a number as text, an unknown field at any depth, text where an
object was documented, an ``agentState`` outside the documented list), never so that the input
cannot be routed (see :data:`~.world.ACTIVITY_GUIDE`). Whether and how an input deviates depends
only on ``seed`` and the input's identity, so a re-read serves the same deviation;
``deviated_activities`` and ``deviated_adherence`` record what was served deviating,
``deviated`` every changed path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from streamd.sim.calabrio.app import SESSION_COOKIE
from streamd.sim.calabrio.faults import GARBLED
from streamd.sim.calabrio.simulator import CalabrioSimulator
from streamd.sim.calabrio.wfm import SimScheduled
from streamd.sim.calabrio.world import STATES, SimActivity, SimAgent, wall_ms

__all__ = [
    "GARBLED",
    "SESSION_COOKIE",
    "STATES",
    "CalabrioSimulator",
    "SimActivity",
    "SimAgent",
    "SimScheduled",
    "demo_source",
    "rtdc_sink_config",
    "serve_forever",
    "wall_ms",
]


async def serve_forever(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    agents: int = 20,
    username: str = "api@example.com",
    password: str = "secret",
    max_late_ms: int = 3_000,
    deviate: float = 0.0,
    on_ready: Callable[[CalabrioSimulator], None] | None = None,
) -> None:
    """Run a self-changing simulator until cancelled (``streamd demo``, ``python -m``);
    ``deviate`` is the share of its traffic that deviates from the document (package docstring)."""
    async with CalabrioSimulator(
        agents=agents,
        username=username,
        password=password,
        auto=True,
        max_late_ms=max_late_ms,
        deviate=deviate,
        host=host,
        port=port,
    ) as sim:
        if on_ready is not None:
            on_ready(sim)
        await anyio.sleep_forever()


@contextlib.asynccontextmanager
async def demo_source(agents: int, name: str = "wfm", deviate: float = 0.0) -> AsyncIterator[dict[str, Any]]:
    """``streamd demo``: a self-changing simulator and the ``kind: calabrio`` source config for it.

    The activities arrive up to 3 s late (so the overlap has work to do), adherence is on;
    ``deviate`` is the share of its traffic that deviates from the document (package docstring).
    """
    async with CalabrioSimulator(agents=agents, auto=True, max_late_ms=3_000, deviate=deviate) as sim:
        yield {
            "kind": "calabrio",
            "name": name,
            "url": sim.url,
            "username": sim.username,
            "password": sim.password,
            "interval": "5s",
            "timeout": "4s",
            "overlap": "30s",
            "adherence": True,
            "adherence_interval": "30s",
        }


def rtdc_sink_config(source: dict[str, Any], from_: str) -> dict[str, Any]:
    """The ``kind: calabrio-rtdc`` sink config that feeds ``from_``'s agent states into the same simulator.

    The demo's PBX and WFM simulators do not share their agents, so agents are sent with their
    own ids (``map_by_acd_id: false``) instead of being dead-lettered as unknown to Calabrio.
    """
    return {
        "kind": "calabrio-rtdc",
        "from": from_,
        "url": source["url"],
        "username": source["username"],
        "password": source["password"],
        "flush_interval": "1s",
        "map_by_acd_id": False,
    }

"""A simulated ALE OmniPCX Open Gateway: a real HTTP server (starlette + uvicorn) on 127.0.0.1.

Rules:

1. It speaks the protocol streamd's client speaks, as 004 documents it: discovery ``GET
   /api/rest``, Basic login setting ``AlcUserId``, sessions with a TTL and keepalive, subscriptions
   (selectors matched per package and id), the HTTP chunk channel ``POST /OTEvents?subscriptionId=``
   (NDJSON events, ``OnChannelInformation`` keepalives when idle), webhook POSTs carrying the
   subscription id as the Cookie header, and the REST state the snapshot reads.
2. Events are queued per subscription and leave the queue only once written to a channel (or
   acknowledged 2xx by a webhook), so a client that reconnects to the same subscription loses
   nothing; a deleted or expired subscription loses its queue, as O2G's does (004 L2313-2314),
   and so does a chunk subscription whose channel stayed closed for ``reopen_window`` seconds
   (one minute: 004 L2142, L2145).
3. Selectors match as the guide says: ``"*"`` stands for every *user* (004 L2107), so it matches
   no ``pilot``/``rsi`` event, whose ids are pilot / RSI numbers (004 L2102-2103); pilot events
   exist only for pilots a live session monitors (``POST /acd/pilotmonitoring/{pilot}``, or the
   pre-2.7.2 ``/{nodeId}/{pilot}`` form, 004 L14349-14469); ``OnServerStart`` goes only to a
   webhook subscription that names it (004 L8950). Pilots are spread over ``nodes`` PBX nodes.
4. Faults are scripted through methods (:mod:`.faults`: :meth:`O2GSimulator.fail_next`
   (``error="tomcat"``: an HTML 404), :meth:`cut_next_event` (after some whole events),
   :meth:`end_next_channels` (empty channels), :meth:`close_channels`,
   :meth:`drop_subscriptions`, :meth:`expire_sessions`, :meth:`silence`, :meth:`set_down`,
   :meth:`set_deploying` (Tomcat's 404 while the webapp deploys after a restart),
   :meth:`post_early` (a webhook POST before the subscription's answer), ``legacy=True`` (a
   server older than 2.7.2), a wrong :attr:`password`); every request is in :attr:`requests`
   (the shared :class:`~streamd.sim.script.RequestLog`). ``scheme="https"`` makes the URLs it
   returns fit a TLS front.
5. Telephony state (004 L4516-4592): ``GET /telephony/state?loginName=`` answers a user's
   ``TelephonicState``; ``POST /telephony/state/snapshot`` (all users without ``loginName``, one
   with it) is acknowledged 204 and its answers, one ``OnTelephonyState`` per user, are queued
   like any event. Calls begin and end unseen with ``sim.traffic.hold_call`` / ``drop_call``.
6. System events (004 L8926-8954) are published by :meth:`cti_link`, :meth:`pbx_loaded`,
   :meth:`license_expiration` and :meth:`server_start`; only subscriptions naming the ``system``
   package (or the event) get them (``OnServerStart``: only a webhook subscription, rule 3).
7. The system service (:mod:`.system`): ``GET /system/status`` (``startDate``, HA ``primary``),
   ``GET /system/licenses?lic=``; :meth:`restart` (a new ``startDate``, sessions lost) and
   :meth:`switch_primary` (an HA switchover, sessions lost).
8. ``deviate=0.1`` makes that share of the published events deviate from the guide the way real
   servers do (:mod:`streamd.sim.deviate`: a missing field, a number as a string, an unknown
   field...), never in their routing fields; :attr:`deviated` lists the changed paths.
9. The directory reads (:mod:`.directory`): ``GET /users/{loginName}`` (name, ``companyPhone``),
   ``GET /acd/agent/config`` (processing groups), ``GET /acd/agent/withdrawReasons`` (labels,
   set in ``sim.directory``).

Use ``async with O2GSimulator(agents=20, rate=50) as sim: ... sim.url``; ``rate=0`` (the default)
generates nothing by itself: tests call :meth:`publish` or :meth:`generate`. From a shell:
``python -m streamd.sim.o2g --port 8091`` (``--help`` lists the options).

Modules: :mod:`.guide` (what 004 says), :mod:`.world` (state, no HTTP), :mod:`.faults`,
:mod:`.app` (the routes), :mod:`.channel` (chunk channels and webhook POSTs), :mod:`.system`,
:mod:`.directory`, :mod:`.control` (``/_sim``), :mod:`.simulator` (the server).
"""

from __future__ import annotations

from streamd.sim.o2g.channel import EARLY_WAIT
from streamd.sim.o2g.guide import GUIDE, GUIDE_PACKAGES, KEEPALIVE, PACKAGE_EVENTS, SERVER_START, TOMCAT_404
from streamd.sim.o2g.simulator import DEMO_PACKAGES, O2GSimulator, demo_source, serve_forever
from streamd.sim.o2g.system import O2GSystem
from streamd.sim.script import LoggedRequest
from streamd.sim.server import serving

serve_app = serving
"""Serve an ASGI app on loopback, yielding its base URL (the shared :func:`streamd.sim.server.serving`)."""

__all__ = [
    "DEMO_PACKAGES",
    "EARLY_WAIT",
    "GUIDE",
    "GUIDE_PACKAGES",
    "KEEPALIVE",
    "PACKAGE_EVENTS",
    "SERVER_START",
    "TOMCAT_404",
    "LoggedRequest",
    "O2GSimulator",
    "O2GSystem",
    "demo_source",
    "serve_app",
    "serve_forever",
]

"""A Xima / Avaya Call Reporting simulator: a real REST + websocket server on 127.0.0.1.

Modules: ``world`` (the contact centre: values, reports, finished calls; no HTTP), ``app`` (the
REST routes), ``socket`` (the websocket subscription), ``faults`` (what tests script to go
wrong, on the shared :mod:`streamd.sim.script`), ``deviations`` (served traffic that deviates
from the document), ``webservice`` (the call-finished pushes), ``simulator`` (composition and
lifecycle), ``__main__`` (``python -m streamd.sim.xima --help``).

Rules:

1. It speaks the documented API (seed 000 §2.0, §3.1, §4.0-4.2, the subscription in "5.0"; seed 001):
   ``GET /rest/api/v1/realtime/metrics``, ``GET .../realtime/metrics/values?id=A,B``,
   ``GET /rest/api/v1/agents/mapping``, ``POST /rest/api/v1/historic-data/{key}`` and the websocket
   ``/rest/api/v1/realtime-metric-subscription?id=A&id=B&auth_token=KEY``; Bearer auth everywhere.
2. Every value key starts uninitialized: its first ``init_requests`` requests list it under
   ``initializing`` (HTTP ``initializing_status``: 206 as the breakdown says, or 400 as the error
   table says); later requests return it under ``results``.
3. Data is deterministic (``seed``) and changes only in :meth:`XimaSimulator.step` (tests call it;
   ``tick`` seconds runs it in the background for the demo). Every value type appears. With
   ``group_state_metrics`` each group also has an AGENT ``{group} Agent State`` metric listing
   that group's agents (an agent-group metric).
4. Faults are scripted, never random (:mod:`.faults`): ``sim.faults`` is the shared fault script
   keyed by endpoint plus ``rejected``, ``websocket_enabled``, ``rest_lag``,
   ``reports_without_rows`` and ``plan_websocket``; ``sim.world.drop_category`` removes a
   category value from its metric; ``sim.log`` (the shared request log) holds every request.
5. ``deviate`` (a share, 0..1) makes that share of the served value entries, websocket messages
   and report rows deviate from the document the way real servers do (:mod:`.deviations`);
   ``sim.served`` lists them with the JSON paths a tolerant reader must report.
6. WebService Integration (seed 000 L1030-1062): each finished call is sent to every configured
   :class:`WebServiceProfile` (method, URL parameters from the call data, custom headers) in
   the order the calls finished (:mod:`.webservice`).
7. The simulator imports nothing from the product but ``streamd.tolerant.json_path`` and the
   shared simulator modules: a wrong field name in the product shows up as a failing test.
"""

from streamd.sim.script import Fault, LoggedRequest
from streamd.sim.xima.deviations import EXTRA_FIELD, Served
from streamd.sim.xima.faults import WsPlan, XimaFaults
from streamd.sim.xima.simulator import XimaSimulator, demo_source, serve_forever
from streamd.sim.xima.webservice import CALL_FIELDS, Sent, WebServiceProfile
from streamd.sim.xima.world import METRICS, TZ, Key, SimMetric, XimaWorld

__all__ = [
    "CALL_FIELDS",
    "EXTRA_FIELD",
    "METRICS",
    "TZ",
    "Fault",
    "Key",
    "LoggedRequest",
    "Sent",
    "Served",
    "SimMetric",
    "WebServiceProfile",
    "WsPlan",
    "XimaFaults",
    "XimaSimulator",
    "XimaWorld",
    "demo_source",
    "serve_forever",
]

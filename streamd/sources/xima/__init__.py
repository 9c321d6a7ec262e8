"""Xima / Avaya Call Reporting source: realtime metrics (poll or websocket), historic report export and
call-finished pushes.

Modules: ``config`` (pydantic config, ``build``), ``auth`` (static Bearer ``httpx.Auth``),
``client`` (REST adapter: the only place that sees httpx errors), ``models`` (typed payloads,
``EVENT_MODELS``), ``normalize`` and ``bodies`` (pure tolerant reading of entries and of whole
answers), ``metric_events`` (pure event building), ``canonical`` (pure canonical mapping),
``state`` (pure change detection), ``realtime`` (poll spec), ``websocket`` (subscription session:
the only place that sees websockets errors), ``historic`` (report export poll spec), ``periods``
(pure period arithmetic), ``calls`` (pure reading of call-finished pushes), ``webhook`` (their
receiver on ``/webhooks/xima/{name}``), ``source`` (composition).
"""

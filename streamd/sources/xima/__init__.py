"""Xima / Avaya Call Reporting source: realtime metrics (poll or websocket) and historic report export.

Modules: ``config`` (pydantic config, ``build``), ``auth`` (static Bearer ``httpx.Auth``),
``client`` (HTTP/websocket adapter: the only place that sees httpx/websockets errors),
``models`` (typed payloads, ``EVENT_MODELS``), ``normalize`` (pure), ``realtime`` (poll spec),
``websocket`` (subscription session), ``historic`` (report export poll spec), ``source`` (composition).
"""

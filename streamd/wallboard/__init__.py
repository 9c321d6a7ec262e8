"""Live state and wallboard: the canonical state hub, its feed API and the wallboard page.

Modules: :mod:`~streamd.wallboard.hub` (state, sequence numbers, subscribers) with
:mod:`~streamd.wallboard.model` (keys, values, filters), :mod:`~streamd.wallboard.fanout` (changes
to subscribers), :mod:`~streamd.wallboard.snapshot` (frozen snapshots, sliced encoding) and
:mod:`~streamd.wallboard.sources` (per-source freshness),
:mod:`~streamd.wallboard.consumer` (fed from the compacted canonical topics),
:mod:`~streamd.wallboard.api` (``/api/v1/state``, ``/api/v1/wallboard``, ``/api/v1/openapi.json``,
``/wallboard``), :mod:`~streamd.wallboard.config` (the ``wallboard:`` section: thresholds, stale
markers, paging, views),
:mod:`~streamd.wallboard.sse` (``/api/v1/stream``), :mod:`~streamd.wallboard.openapi` (the
generated OpenAPI document), :mod:`~streamd.wallboard.plugin` (wires them into ``run_daemon``).
"""

"""Calabrio ONE: real-time agent states and adherence polled with a session cookie (spec/calabrio.md).

Modules: :mod:`.config` (``kind: calabrio``), :mod:`.auth` (session cookie ``httpx.Auth``),
:mod:`.models` (typed responses, ``EVENT_MODELS``), :mod:`.window` (pure sliding-window and
dedupe arithmetic), :mod:`.normalize` (pure mapping to events), :mod:`.source` (the runtime).
"""

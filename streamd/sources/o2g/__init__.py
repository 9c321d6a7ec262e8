"""ALE OmniPCX Open Gateway (O2G) source.

Sans-IO half: :mod:`.protocol` (re-exports :mod:`.wire`, the chunk-stream decoder and keepalive
test, and :mod:`.rest_errors`, the REST error classification), :mod:`.models` (a typed model for
every catalogued event), :mod:`.normalize` (vendor dict -> :class:`streamd.events.Event` list,
snapshots) and :mod:`.mapping` (O2G states -> canonical ``AgentState`` / ``QueueMetric``). The
network half (:mod:`.client` the REST session, built on :mod:`.rest` the HTTP core and
:mod:`.login` login, session and keepalive; :mod:`.acd` agent, pilot and RTI reads and pilot
monitoring; :mod:`.chunk` the chunk channel's reopens, :mod:`.channel` one open channel's pump;
:mod:`.enrich` the enriching emitter, built on :mod:`.directory` the directory reads and
:mod:`.learning` what events teach it; :mod:`.webhook` the receiver, :mod:`.source` the wiring,
:mod:`.session` the session and its subscription, :mod:`.snapshots` the snapshot reads,
:mod:`.status` the status watch, :mod:`.continuity` system events on top of
:mod:`streamd.sources.continuity`) drives them; none of them does I/O.
"""

"""ALE OmniPCX Open Gateway (O2G) source.

Sans-IO half: :mod:`.protocol` (chunk-stream decoder, keepalive test, REST error
classification), :mod:`.models` (a typed model for every catalogued event), :mod:`.normalize`
(vendor dict -> :class:`streamd.events.Event` list, snapshots) and :mod:`.mapping` (O2G states
-> canonical ``AgentState`` / ``QueueMetric``). The network half (:mod:`.client` the REST session,
:mod:`.acd` agent, pilot and RTI reads and pilot monitoring, :mod:`.chunk` the chunk channel,
:mod:`.webhook` the receiver, :mod:`.source` the wiring, :mod:`.session` the session and its
subscription, :mod:`.snapshots` the snapshot reads, :mod:`.status` the status watch,
:mod:`.continuity` system events on top of :mod:`streamd.sources.continuity`) drives them; none
of them does I/O.
"""

"""ALE OmniPCX Open Gateway (O2G) source.

Sans-IO half: :mod:`.protocol` (chunk-stream decoder, keepalive test, REST error
classification), :mod:`.models` (a typed model for every catalogued event), :mod:`.normalize`
(vendor dict -> :class:`streamd.events.Event` list, snapshots) and :mod:`.mapping` (O2G states
-> canonical ``AgentState`` / ``QueueMetric``). The network half (client, session, chunk
channel, webhook) drives them; none of them does I/O.
"""

"""Several replicas sharing the sources and sinks through a Kafka consumer group: the assignment
logic (:mod:`.assign`, pure), the membership (:mod:`.member`) and the cursors that move with a source
(:mod:`.state`). See docs/architecture.md "Several replicas"."""

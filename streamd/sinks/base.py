"""The sink interface: what a sink gets from the daemon and what it offers it.

Rules:

1. A sink is the mirror of a source: a config model (``kind``, ``name``, ``build(deps)``) and a
   runtime object with ``name``, ``component`` and ``run(emit, *, task_status)``, which runs its
   *session* ``async def session(emit, connected)`` under the supervisor (``deps.jobs``). The
   session reads streamd's topics and pushes to a vendor until it fails: it raises, and never
   retries itself (:mod:`streamd.runtime`).
2. A sink publishes through the pipeline like a source, with the ``emit`` it is handed (its
   dead letters reach Kafka or the spool like every other event).
3. It reads Kafka with :class:`streamd.publish.consume.TopicReader` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskStatus

    from streamd.config_core import KafkaConfig
    from streamd.runtime import Jobs
    from streamd.sources.base import Emit
    from streamd.telemetry import Component


class SinkDeps(Protocol):
    """What ``SinkConfig.build`` needs from the daemon."""

    @property
    def jobs(self) -> Jobs:
        """This sink's handle on the supervisor (its health is ``jobs.component``)."""

    @property
    def kafka(self) -> KafkaConfig:
        """The Kafka section, with the resolved bootstrap servers (never "embedded")."""


@dataclass(frozen=True, slots=True)
class SinkContext:
    """The plain :class:`SinkDeps`."""

    jobs: Jobs
    kafka: KafkaConfig


class Sink(Protocol):
    """A runtime sink (rule 1)."""

    name: str
    component: Component

    async def session(self, emit: Emit, connected: Callable[[], None]) -> None:
        """Run one session until it fails; call ``connected()`` once it is healthy."""

    async def run(self, emit: Emit, *, task_status: TaskStatus[None]) -> None:
        """Run the session under the supervisor until cancelled."""

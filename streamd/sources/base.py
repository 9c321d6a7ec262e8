"""The source interface.

Rules (docs/architecture.md "Sources"):

1. A source is one coroutine, ``async def run(self, emit, *, task_status)``, that runs until
   cancelled. Cancellation *is* stop; there is no start/stop API.
2. It signals readiness (subscribed, connected, first poll done) with ``task_status.started()``,
   which its :class:`~streamd.runtime.Jobs` does once every job called ``connected()`` or failed.
3. It pushes events with ``await emit(events)`` (returns once every event is acknowledged by
   Kafka or safely spooled: pollers move their cursor only after it) or
   ``await emit.push(events)`` (returns once queued; for push sources that cannot replay anyway).
4. It contains no retry loop: it opens what its jobs share (an HTTP client, an auth), then runs
   one *session* function per job with ``await deps.jobs.run(Job(...), ...)``; the supervisor
   retries each job, and a job that fails for good is ``failed`` alone (the others go on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from anyio.abc import TaskStatus

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from streamd.events import Event
    from streamd.runtime import Jobs
    from streamd.telemetry import Component


class Emit(Protocol):
    """How a source hands events to the pipeline."""

    async def __call__(self, events: Sequence[Event]) -> None:
        """Publish and wait until every event is acknowledged by Kafka or spooled durably."""

    async def push(self, events: Sequence[Event]) -> None:
        """Queue for publishing; blocks while the bounded queue is full (backpressure).

        The pipeline lets the events go once they are encoded (:mod:`streamd.publish.emit` rule
        6); a hot push path should not keep them meanwhile either. The O2G chunk pusher creates
        the coroutine, drops its own references, then awaits it, and O2G's wrapping emitters
        return the wrapped push's coroutine from a plain ``def`` instead of awaiting it. (Kept
        alive, a push's events are what the cyclic collector re-scans at every pass while the
        push waits for the write-ahead: most of its cost under load.) Other callers, such as
        the Xima websocket, keep their list: correct, only later freed.
        """


class CursorStore(Protocol):
    """Durable small key/value state for poll cursors (kept in the spool database)."""

    def load(self, source: str, name: str) -> str | None:
        """The saved cursor, or None when there is none yet."""

    def save(self, source: str, name: str, value: str) -> None:
        """Persist a cursor (call only after the events before it were acknowledged)."""


WebhookHandler = Callable[["Request"], Awaitable["Response"]]


class WebhookRegistry(Protocol):
    """Routes ``POST /webhooks/{vendor}/{source}`` on the shared HTTP port to a source.

    With several replicas a POST may reach a replica that does not run the source: it is forwarded
    to the owner, after checking its Cookie against the digests of the credentials the owner
    advertised. A handler that is a bound method of an object with ``credentials() ->
    frozenset[str]`` (the O2G receiver: live subscription ids and session token) is advertised so
    (docs/architecture.md "Several replicas").
    """

    def register(self, vendor: str, source: str, handler: WebhookHandler) -> None:
        """Install ``handler`` for that vendor and source name."""

    def unregister(self, vendor: str, source: str) -> None:
        """Remove the handler (the route then answers 404)."""


@dataclass(frozen=True, slots=True)
class SourceDeps:
    """What the application hands to ``SourceConfig.build``."""

    jobs: Jobs
    cursors: CursorStore
    webhooks: WebhookRegistry

    @property
    def component(self) -> Component:
        """This source's health (what its jobs report to)."""
        return self.jobs.component


class Source(Protocol):
    """A runtime source (built from its config by ``build(deps)``)."""

    name: str

    async def run(self, emit: Emit, *, task_status: TaskStatus[None]) -> None:
        """Run until cancelled; call ``task_status.started()`` once ready."""

"""What tests script to go wrong on the simulated O2G (package rule 4 of :mod:`streamd.sim.o2g`).

Rules:

1. Answers to requests go through the shared :class:`~streamd.sim.script.FaultScript`, keyed by a
   path fragment (:func:`~streamd.sim.script.contains`): :meth:`O2GFaults.fail_next` scripts an
   O2G error (a ``RestErrorInfo`` body) or, with ``error="tomcat"``, Tomcat's HTML 404.
2. A server that is down answers 503 ``NOT_READY`` to everything; one that is deploying answers
   Tomcat's 404 to everything; both come before any scripted fault.
3. Channel faults (an empty channel, a cut mid-event, silence) are flags the chunk channel reads
   (:mod:`.channel`).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from streamd.sim.o2g.guide import TOMCAT_404, error, error_body, tomcat_404
from streamd.sim.o2g.world import O2GWorld
from streamd.sim.script import Fault, FaultScript, contains


class O2GFaults(O2GWorld):
    """The world, plus what a test scripts to go wrong in it."""

    def __init__(self, **world: Any) -> None:
        super().__init__(**world)
        self.script = FaultScript(contains)
        self.down = False
        self.deploying = False
        self.refuse_subscriptions: str | None = None  # a message: every subscription is REFUSED
        self.cut_next: int | None = None  # whole events written before the cut, when armed
        self.empty_next = 0
        self.silent = False
        self.early: list[dict[str, Any]] = []

    def fail_next(self, path: str, status: int = 503, count: int = 1, error: str = "NOT_READY") -> None:
        """Answer the next ``count`` requests whose path contains ``path`` with ``status``
        (``error="tomcat"``: Tomcat's HTML 404, whatever ``status``)."""
        if error == "tomcat":
            fault = Fault(404, TOMCAT_404, media_type="text/html;charset=utf-8")
        else:
            fault = Fault(status, error_body(status, error))
        self.script.add(path, fault, times=count)

    def clear_faults(self) -> None:
        """Forget the faults :meth:`fail_next` scripted and did not use yet."""
        self.script.clear()

    async def fault(self, path: str) -> Response | None:
        """The answer a request for ``path`` gets instead of its own, if any (rules 1-2)."""
        if self.down:
            return error(503, "NOT_READY")
        if self.deploying:
            return tomcat_404()
        scripted = self.script.take(path)
        return None if scripted is None else await scripted.respond()

    def end_next_channels(self, count: int = 1) -> None:
        """The next ``count`` chunk channels close at once, without writing a byte."""
        self.empty_next += count

    def cut_next_event(self, after: int = 0) -> None:
        """Abort the next chunk channel that writes: ``after`` whole events, then half of the next."""
        self.cut_next = after

    def silence(self, on: bool = True) -> None:
        """Stop (or resume) writing anything, keepalives included, on every chunk channel."""
        self.silent = on
        if not on:
            for sub in self.all_subs():
                sub.wake.set()

    def set_down(self, down: bool = True) -> None:
        """Take the server down (every request 503, channels closed, sessions lost) or up again."""
        self.down = down
        if down:
            self.expire_sessions()

    def set_deploying(self, deploying: bool = True) -> None:
        """Restart O2G: sessions lost, and until called with False Tomcat answers every request
        with its HTML 404 (no ``RestErrorInfo``): the webapp is still deploying."""
        self.deploying = deploying
        if deploying:
            self.expire_sessions()

    def post_early(self, *events: dict[str, Any]) -> None:
        """POST ``events`` to the next webhook subscription *before* answering its creation: O2G
        delivers as soon as the subscription exists (the answer waits up to
        :data:`~streamd.sim.o2g.channel.EARLY_WAIT` s for the first POST's answer)."""
        self.early.extend(events)

    def close_channels(self) -> None:
        """Close every open chunk channel cleanly (the subscriptions stay)."""
        for sub in self.all_subs():
            sub.channel += 1
            sub.wake.set()

"""What a webhook receiver answers once it handed what it received to the pipeline.

Rules:

1. A push is answered 2xx only once its events are durable (README "Guarantees"): ``await
   emit(events)`` within the receiver's deadline. A missed deadline, Kafka and the spool refusing
   (``PublishError``) and an emitter already closed by the shutdown are expected answers, not bugs:
   the sender gets a 503 and sends again.
2. One log line per transition: the first refusal of a kind at WARNING, repeats at DEBUG, and one
   INFO line when pushes are accepted again. ``publish_failed`` is logged by the pipeline (spool
   full), so never here above DEBUG. Every refusal is counted (``errors_total{stage="webhook"}``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from streamd.errors import PublishError
from streamd.events import Event
from streamd.sources.base import Emit
from streamd.telemetry import count_error


class Durability:
    """Makes a receiver's events durable within a deadline and logs its refusals by transition."""

    def __init__(self, source: str, who: str, pushes: str, log: logging.Logger, *, hint: str = "") -> None:
        """``who`` starts each line (``"o2g pbx1"``), ``pushes`` names what is answered (``"webhook
        POSTs"``), ``hint`` follows the 503 in the warning (``" (O2G resends them)"``)."""
        self.source, self.who, self.pushes, self.log, self.hint = source, who, pushes, log, hint
        self.refusing: str | None = None  # the kind of the refusal last logged at WARNING

    async def __call__(
        self, emit: Emit, events: Sequence[Event], deadline: float, what: str = "events"
    ) -> str | None:
        """``await emit(events)`` within ``deadline`` seconds; None once durable, else the counted
        error type (``what`` names the events in the log line)."""
        try:
            # anyio.fail_after without its two generator context managers (hot: one per POST)
            with anyio.CancelScope(deadline=anyio.current_time() + deadline) as scope:
                await emit(events)
            if scope.cancelled_caught:
                raise TimeoutError
        except TimeoutError:
            error_type, why = "deadline", f"not durable within {deadline:.1f}s"
        except PublishError as exc:
            error_type, why = "publish_failed", f"not durable: {exc}"
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            error_type, why = "shutting_down", "not accepted: streamd is shutting down"
        else:
            if self.refusing is not None:
                self.log.info("%s: %s accepted again", self.who, self.pushes)
                self.refusing = None
            return None
        count_error(self.source, "webhook", error_type, len(events))
        if error_type == "publish_failed" or error_type == self.refusing:
            self.log.debug("%s: %s %s: answered 503", self.who, what, why)
        else:
            self.log.warning("%s: answering %s 503%s: %s %s", self.who, self.pushes, self.hint, what, why)
            self.refusing = error_type
        return error_type

"""The ``calabrio-rtdc`` sink's delivery: HTTP batches, rejection handling, dead letters.

Rules: see :mod:`streamd.sinks.calabrio_rtdc` (rules 2, 3 and 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from streamd.errors import FatalError
from streamd.events import AgentState, DeadLetter, Event
from streamd.sinks.calabrio_rtdc.directory import AgentDirectory
from streamd.sinks.calabrio_rtdc.mapping import RtdcMapping, RtdcRecord, batches, to_record
from streamd.sources.http import check_status, httpx_errors
from streamd.telemetry import count_error

if TYPE_CHECKING:
    from streamd.sinks.calabrio_rtdc.config import CalabrioRtdcSinkConfig
    from streamd.sources.base import Emit

REJECTED = (400, 422)


class SystematicRejection(FatalError):
    """Calabrio rejected ``reject_limit`` records in a row and accepted none (rule 7): a setting
    is wrong, so the sink fails with Calabrio's answer instead of dead-lettering everything."""


@dataclass(slots=True)
class Rejections:
    """The rejection streak (rule 7); the sink keeps one across its sessions, so a retried
    session that is rejected again fails at once instead of dead-lettering another streak."""

    in_a_row: int = 0
    """Records rejected since Calabrio last accepted one (counted over whole deliveries)."""
    last: str = ""
    """Calabrio's answer to the last rejected record (status and the start of the body)."""


@dataclass(slots=True)
class DeliveryReport:
    """What one :meth:`RtdcDelivery.deliver` call did."""

    sent: int = 0
    rejected: int = 0
    skipped: int = 0
    unmapped: int = 0
    """States of agents without a Calabrio acdAgentId (dead-lettered, rule 9)."""


class RtdcDelivery:
    """Sends canonical states to the capture endpoint (rule 1's middle layer).

    Args:
        cfg: the sink config.
        client: an httpx client whose base URL is the tenant and whose auth is :class:`CalabrioAuth`.
        emit: where rejected records go as dead letters (awaited until durable).
        rejections: the rejection streak to continue (the sink's); default: a new one.
    """

    def __init__(
        self,
        cfg: CalabrioRtdcSinkConfig,
        client: httpx.AsyncClient,
        emit: Emit,
        rejections: Rejections | None = None,
        directory: AgentDirectory | None = None,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.emit = emit
        self.mapping = RtdcMapping.of(cfg)
        self.target = (cfg.capture_url.rstrip("/") + cfg.path) if cfg.capture_url else cfg.path
        self.rejections = rejections if rejections is not None else Rejections()
        self.directory = directory if directory is not None else AgentDirectory(cfg)

    async def deliver(self, states: Sequence[tuple[AgentState, int]]) -> DeliveryReport:
        """Map, batch and send; rejected records are dead-lettered, retryable failures raised.

        Args:
            states: canonical states with the fallback timestamp (ms) of each.

        Raises:
            TransientError, BackOff, AuthError: the batch could not be delivered; nothing was
            dead-lettered for it, so the caller must not commit it.
            SystematicRejection: Calabrio accepted none of these records and, with those rejected
            before them, ``reject_limit`` in a row (rule 7); nothing was dead-lettered for them.
        """
        report = DeliveryReport()
        records: list[RtdcRecord] = []
        letters: list[Event] = []
        mapping = self.mapping.with_acd_ids(await self.directory.refresh(self.client))
        if any(mapping.unmapped(state.agent_id) is not None for state, _ in states):  # a hire since?
            mapping = self.mapping.with_acd_ids(await self.directory.reread(self.client))
        for state, fallback in states:
            if (why := mapping.unmapped(state.agent_id)) is not None:  # rule 9
                report.unmapped += 1
                letters.append(self._unmapped(state, why))
                continue
            record = to_record(state, mapping, fallback_ms=fallback)
            if record is None:
                report.skipped += 1
                count_error(self.cfg.name, "processing", "unmapped_state")
            else:
                records.append(record)
        size = self.cfg.batch_size if self.cfg.body == "array" else 1
        for chunk in batches(records, size):
            await self._send(chunk, report, letters)
        streak = self.rejections
        streak.in_a_row = 0 if report.sent else streak.in_a_row + report.rejected
        if streak.in_a_row >= self.cfg.reject_limit:
            raise SystematicRejection(
                f"{self.cfg.name}: Calabrio rejected the last {streak.in_a_row} records and accepted "
                f"none (last answer: {streak.last}); a systematic rejection: check body "
                f"({self.cfg.body}), content_type ({self.cfg.content_type}), path ({self.target}) and the agent ids (agent_map). The records "
                "are sent again on the next attempt."
            )
        if letters:
            await self.emit(letters)
        return report

    def _unmapped(self, state: AgentState, why: str) -> Event:
        count_error(self.cfg.name, "sink", "unmapped_agent")
        error = f"agent {state.agent_id} of source {state.source} has no Calabrio acdAgentId: {why}"
        letter = DeadLetter.of(
            source=self.cfg.name,
            stage="sink",
            error_type="unmapped_agent",
            error=error,
            raw=orjson.dumps(state).decode(),
        )
        return letter.to_event()

    async def _send(self, chunk: Sequence[RtdcRecord], report: DeliveryReport, letters: list[Event]) -> None:
        payload: Any = [r.wire() for r in chunk] if self.cfg.body == "array" else chunk[0].wire()
        with httpx_errors():
            if self.cfg.content_type == "multipart":  # rule 2
                part = (None, orjson.dumps(payload), "application/json")
                response = await self.client.post(self.target, files={self.cfg.form_field: part})
            else:
                response = await self.client.post(self.target, json=payload)
        if response.status_code == 415:
            raise FatalError(
                f"{self.cfg.name}: Calabrio refused the content type ({self.cfg.content_type}): HTTP 415 "
                f"{response.text[:200]}; set content_type to what the tenant takes"
            )
        if response.status_code not in REJECTED:
            check_status(response, f"calabrio POST {self.cfg.path}")
            report.sent += len(chunk)
            return
        if len(chunk) > 1:  # isolate the rejected records (rule 3)
            half = len(chunk) // 2
            await self._send(chunk[:half], report, letters)
            await self._send(chunk[half:], report, letters)
            return
        report.rejected += 1
        count_error(self.cfg.name, "sink", "rejected")
        self.rejections.last = f"HTTP {response.status_code} {response.text[:200]}".strip()
        error = f"calabrio rejected the record: {self.rejections.last}"
        raw = orjson.dumps(chunk[0].wire()).decode()
        letter = DeadLetter.of(
            source=self.cfg.name, stage="sink", error_type="rejected", error=error, raw=raw
        )
        letters.append(letter.to_event())

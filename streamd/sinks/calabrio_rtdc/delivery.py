"""The ``calabrio-rtdc`` sink's delivery: HTTP batches, rejection handling, dead letters.

Rules: see :mod:`streamd.sinks.calabrio_rtdc` (rules 2 and 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from streamd.events import AgentState, DeadLetter
from streamd.sinks.calabrio_rtdc.mapping import RtdcMapping, RtdcRecord, batches, to_record
from streamd.sources.http import check_status, httpx_errors
from streamd.telemetry import count_error

if TYPE_CHECKING:
    from streamd.sinks.calabrio_rtdc.config import CalabrioRtdcSinkConfig
    from streamd.sources.base import Emit

REJECTED = (400, 422)


@dataclass(slots=True)
class DeliveryReport:
    """What one :meth:`RtdcDelivery.deliver` call did."""

    sent: int = 0
    rejected: int = 0
    skipped: int = 0


class RtdcDelivery:
    """Sends canonical states to the capture endpoint (rule 1's middle layer).

    Args:
        cfg: the sink config.
        client: an httpx client whose base URL is the tenant and whose auth is :class:`CalabrioAuth`.
        emit: where rejected records go as dead letters (awaited until durable).
    """

    def __init__(self, cfg: CalabrioRtdcSinkConfig, client: httpx.AsyncClient, emit: Emit) -> None:
        self.cfg = cfg
        self.client = client
        self.emit = emit
        self.mapping = RtdcMapping.of(cfg)
        self.target = (cfg.capture_url.rstrip("/") + cfg.path) if cfg.capture_url else cfg.path

    async def deliver(self, states: Sequence[tuple[AgentState, int]]) -> DeliveryReport:
        """Map, batch and send; rejected records are dead-lettered, retryable failures raised.

        Args:
            states: canonical states with the fallback timestamp (ms) of each.

        Raises:
            TransientError, BackOff, AuthError: the batch could not be delivered; nothing was
            dead-lettered for it, so the caller must not commit it.
        """
        report = DeliveryReport()
        records: list[RtdcRecord] = []
        for state, fallback in states:
            record = to_record(state, self.mapping, fallback_ms=fallback)
            if record is None:
                report.skipped += 1
                count_error(self.cfg.name, "processing", "unmapped_state")
            else:
                records.append(record)
        size = self.cfg.batch_size if self.cfg.body == "array" else 1
        for chunk in batches(records, size):
            await self._send(chunk, report)
        return report

    async def _send(self, chunk: Sequence[RtdcRecord], report: DeliveryReport) -> None:
        payload: Any = [r.wire() for r in chunk] if self.cfg.body == "array" else chunk[0].wire()
        with httpx_errors():
            response = await self.client.post(self.target, json=payload)
        if response.status_code not in REJECTED:
            check_status(response, f"calabrio POST {self.cfg.path}")
            report.sent += len(chunk)
            return
        if len(chunk) > 1:  # isolate the rejected records (rule 3)
            half = len(chunk) // 2
            await self._send(chunk[:half], report)
            await self._send(chunk[half:], report)
            return
        report.rejected += 1
        count_error(self.cfg.name, "sink", "rejected")
        error = f"calabrio rejected the record: HTTP {response.status_code} {response.text[:200]}"
        raw = orjson.dumps(chunk[0].wire()).decode()
        letter = DeadLetter.of(
            source=self.cfg.name, stage="sink", error_type="rejected", error=error, raw=raw
        )
        await self.emit([letter.to_event()])

"""Calabrio contact monitoring (``GET /api/rest/monitoring/contacts/lite``, 002 L2313-2353): a gauge
of the contacts of the past 15 minutes and a ``streamd.source.Status`` when recording stops.

Rules:

1. Optional (``contact_monitoring``): a job of its own with its own Calabrio session, polled every
   ``contact_monitoring_interval``; the API needs the Administer Tenant permission, so a 403
   fails this job alone.
2. The answer is ``{"contacts": {"total", "totalWithAudio", "totalWithVideo"}}``; the seed's
   example prints ``total`` as text: a count may be a number or a numeric string. A missing or
   unusable ``total`` / ``totalWithAudio`` makes the answer unreadable (the cycle fails and is
   retried, :class:`~.wire.UnreadableAnswer`); ``totalWithVideo`` is optional.
3. The counts are the gauge ``streamd_calabrio_contacts{source,recording}`` (``recording`` is
   ``all``, ``audio`` or ``video``); ``streamd_calabrio_recording{source}`` is 1 while recording
   works and 0 while it is stopped.
4. Recording is *stopped* when at least ``recording_min_contacts`` contacts were created in the
   past 15 minutes and none of them has audio; it works again as soon as one has. A stop is
   published as ``streamd.source.Status`` (scope ``recording``, status ``stale``, the counts in
   the reason) on ``{prefix}source-status``; the end of a stop as status ``live``. The first poll
   after a (re)start publishes only a stop (a consumer that saw one before the restart learns
   the end from the next ``live``). What was published last moves only after ``emit`` returned.
5. Parsing and the stop decision are pure (:func:`parse_contacts`, :func:`recording_status`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import orjson
from prometheus_client import Gauge

from streamd.events import SourceStatus
from streamd.jsonwire import loads
from streamd.sources.calabrio.wire import UnreadableAnswer
from streamd.sources.http import check_status, httpx_errors
from streamd.sources.poller import PollResult
from streamd.telemetry import REGISTRY

CONTACTS: Final = Gauge(
    "streamd_calabrio_contacts",
    "Contacts Calabrio created in the past 15 minutes (contact monitoring): all, with audio, with video.",
    ["source", "recording"],
    registry=REGISTRY,
)
RECORDING: Final = Gauge(
    "streamd_calabrio_recording",
    "1 while Calabrio records (contacts of the past 15 minutes have audio), 0 while recording is stopped.",
    ["source"],
    registry=REGISTRY,
)
SCOPE: Final = "recording"


@dataclass(frozen=True, slots=True)
class ContactCounts:
    """The contacts of the past 15 minutes."""

    total: int
    with_audio: int
    with_video: int | None = None


def parse_contacts(body: bytes) -> ContactCounts:
    """Decode a contact monitoring answer (rule 2).

    Raises:
        UnreadableAnswer: not a JSON object with ``contacts.total`` and ``contacts.totalWithAudio``
            as counts; the message names what is wrong.
    """
    what = "calabrio contact monitoring"
    try:
        data = loads(body)
    except orjson.JSONDecodeError as exc:
        raise UnreadableAnswer(f"{what}: the answer is not JSON ({exc}): {body[:120]!r}") from None
    contacts = data.get("contacts") if isinstance(data, dict) else None
    if not isinstance(contacts, dict):
        raise UnreadableAnswer(f"{what}: the answer has no 'contacts' object: {body[:120]!r}")
    total, audio = _count(contacts, "total"), _count(contacts, "totalWithAudio")
    if total is None or audio is None:
        missing = "total" if total is None else "totalWithAudio"
        raise UnreadableAnswer(f"{what}: contacts.{missing} is missing or not a count: {body[:120]!r}")
    return ContactCounts(total, audio, _count(contacts, "totalWithVideo"))


def _count(obj: Mapping[str, Any], name: str) -> int | None:
    value = obj.get(name)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def recording_status(counts: ContactCounts, min_contacts: int) -> str:
    """``stale`` when recording is stopped (rule 4), else ``live``."""
    return "stale" if counts.total >= min_contacts and counts.with_audio == 0 else "live"


def status_reason(counts: ContactCounts, status: str) -> str:
    """The reason of a recording status event."""
    if status == "stale":
        return (
            f"recording stopped: {counts.total} contacts in the past 15 minutes, none with an audio recording"
        )
    return (
        f"recording again: {counts.with_audio} of {counts.total} contacts in the past 15 minutes have audio"
    )


class ContactsSpec:
    """:class:`PollSpec` of the contact monitoring job; the cursor is the last published status."""

    name = "contacts"

    def __init__(
        self,
        source: str,
        client: httpx.AsyncClient,
        path: str,
        min_contacts: int,
        now_ms: Callable[[], int],
    ) -> None:
        self.source, self.client, self.path = source, client, path
        self.min_contacts, self.now_ms = min_contacts, now_ms

    def load_cursor(self, saved: str | None) -> str | None:
        """In memory: None = nothing known since the start."""
        return None

    def dump_cursor(self, cursor: str | None) -> str | None:
        """Never persisted."""
        return None

    async def fetch(self, cursor: str | None) -> PollResult[str | None]:
        """Read the counts, set the gauges, publish a status on a change (rule 4)."""
        with httpx_errors():
            response = await self.client.get(self.path)
        check_status(response, f"calabrio GET {self.path}")
        counts = parse_contacts(response.content)
        CONTACTS.labels(self.source, "all").set(counts.total)
        CONTACTS.labels(self.source, "audio").set(counts.with_audio)
        if counts.with_video is not None:
            CONTACTS.labels(self.source, "video").set(counts.with_video)
        status = recording_status(counts, self.min_contacts)
        RECORDING.labels(self.source).set(0 if status == "stale" else 1)
        if status == cursor or (cursor is None and status == "live"):
            return PollResult([], status)
        since = datetime.fromtimestamp(self.now_ms() / 1000, UTC)
        event = SourceStatus(
            source=self.source, scope=SCOPE, status=status, reason=status_reason(counts, status), since=since
        ).to_event()
        return PollResult([event], status)

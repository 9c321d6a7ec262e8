"""Events streamd publishes about its own work: dead letters (what it could not publish) and
source-status markers (what a source can vouch for). :mod:`streamd.events` re-exports them.

Rules:

1. ``{prefix}source-status`` (key = the source name, so a source's markers stay in order) tells
   consumers what a source can vouch for: :class:`SourceGap` (``streamd.source.Gap``) when
   streamd cannot guarantee it saw every event between ``from`` and ``to`` (a snapshot follows:
   rebuild the state from it), :class:`SourceStatus` (``streamd.source.Status``) when part of a
   source's data turned stale or live again.
2. ``{prefix}deadletter`` (key = the source name) gets a :class:`DeadLetter` for what could not be
   decoded, normalized, encoded or published, with its raw input (text, or base64 when not UTF-8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from streamd.envelope import Event, new_event, stable_id, utcnow

DEADLETTER_TOPIC = "deadletter"
SOURCE_STATUS_TOPIC = "source-status"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """What could not be parsed or normalized (topic ``{prefix}deadletter``, key = source)."""

    source: str
    stage: str
    error_type: str
    error: str
    raw: str | None = None
    raw_b64: str | None = None

    @classmethod
    def of(cls, *, source: str, stage: str, error_type: str, error: str, raw: bytes | str) -> DeadLetter:
        """Build a dead letter, keeping ``raw`` as text when it is valid UTF-8, else base64."""
        if isinstance(raw, str):
            return cls(source=source, stage=stage, error_type=error_type, error=error, raw=raw)
        try:
            return cls(source=source, stage=stage, error_type=error_type, error=error, raw=raw.decode())
        except UnicodeDecodeError:
            import base64

            b64 = base64.b64encode(raw).decode()
            return cls(source=source, stage=stage, error_type=error_type, error=error, raw_b64=b64)

    def to_event(self) -> Event:
        """Wrap this dead letter in an :class:`Event`."""
        return new_event(
            DEADLETTER_TOPIC, f"streamd.deadletter.{self.stage}", self.source, self.source, self, utcnow()
        )


class SourceGap(BaseModel):
    """Events of ``source`` between ``from`` and ``to`` may be missing (rule 1); a snapshot follows.

    Published on ``{prefix}source-status`` (key = source, type ``streamd.source.Gap``) whenever
    streamd cannot vouch that it saw every event: a subscription lost and created anew, a
    channel not reopened within the vendor's window, a vendor restart.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    source: str
    from_: datetime = Field(alias="from", description="when the stream was last known complete")
    to: datetime = Field(description="when it was complete again (the snapshot follows)")
    reason: str = Field(description="why continuity was lost, e.g. 'subscription gone: ...'")

    def to_event(self) -> Event:
        """Wrap this gap in an :class:`Event` for ``source-status``."""
        return Event(
            topic=SOURCE_STATUS_TOPIC,
            type="streamd.source.Gap",
            source=self.source,
            key=self.source,
            data=self,
            time=self.to,
            id=stable_id(self.source, "gap", self.from_.isoformat(), self.to.isoformat()),
        )


class SourceStatus(BaseModel):
    """Part of a source's data is ``stale`` (the vendor says it cannot see it) or ``live`` again.

    Published on ``{prefix}source-status`` (key = source, type ``streamd.source.Status``), e.g.
    O2G's ``OnCtiLinkDown`` for one PBX node (``scope`` ``node:1``), ``OnCtiLinkUp`` back.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    scope: str = Field(description="what the status is about, e.g. 'node:1'")
    status: str = Field(description="'stale' or 'live'")
    reason: str
    since: datetime

    def to_event(self) -> Event:
        """Wrap this status in an :class:`Event` for ``source-status``."""
        return Event(
            topic=SOURCE_STATUS_TOPIC,
            type="streamd.source.Status",
            source=self.source,
            key=self.source,
            data=self,
            time=self.since,
        )

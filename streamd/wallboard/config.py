"""The ``wallboard:`` config section (live state hub, feed API and page)."""

from __future__ import annotations

from pydantic import Field

from streamd.config_types import Duration, StrictModel


class WallboardConfig(StrictModel):
    """Live state hub, feed API (``/api/v1/*``) and page (``/wallboard``) on the HTTP port."""

    enabled: bool = Field(True, description="Serve the feed API and page, and read the canonical topics.")
    max_agents: int = Field(100_000, ge=1, description="Agents held; the least recently updated is evicted.")
    max_metrics: int = Field(100_000, ge=1, description="Queue metrics held; the oldest is evicted.")
    replay: int = Field(4096, ge=0, description="Changes kept for clients resuming with Last-Event-ID.")
    client_buffer: int = Field(
        256, ge=1, description="Changes buffered per feed client; a client that falls behind is dropped."
    )
    heartbeat: Duration = Field(10.0, gt=0, description="Keep-alive comment interval on the SSE feed.")
    topic_poll: Duration = Field(
        1.0, gt=0, description="How often to look for canonical topics not yet created."
    )

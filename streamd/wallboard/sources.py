"""The sources' and the feed's status on the board, from the records seen and the daemon's
components (:mod:`streamd.wallboard.hub` rule 8).

Rules:

1. :func:`status_changes` is pure: it computes what changed; the hub numbers and publishes it.
2. A source's state is its component's when this daemon runs it, ``None`` when another producer
   does; ``components=None`` keeps the states as they were.
3. ``last_update`` (the newest record time seen, never in the future) moves on at most every
   ``min(5 s, stale_after / 10)``, so a busy source costs one change per few seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from streamd.telemetry import Component, count_error
from streamd.wallboard.model import FeedStatus, SourceStatus

MAX_SOURCES = 1024
"""Sources tracked at most (:mod:`streamd.wallboard.hub` rule 8); the records of further ones still update the board."""


def note_record(seen: dict[str, datetime], source: str, when: datetime) -> None:
    """Note in ``seen`` a record of ``source`` published at ``when``: the newest time per source,
    for at most :data:`MAX_SOURCES` sources (more are counted as errors and not tracked)."""
    last = seen.get(source)
    if last is None:
        if len(seen) >= MAX_SOURCES:
            count_error("wallboard", "sources", "too_many_sources")
            return
        seen[source] = when
    elif when > last:
        seen[source] = when


def status_changes(
    components: Mapping[str, Component] | None,
    *,
    sources: Mapping[str, SourceStatus],
    feed: FeedStatus | None,
    seen: Mapping[str, datetime],
    stale_after: float,
    stale_after_per_source: Mapping[str, float],
    now: datetime,
) -> tuple[list[FeedStatus], list[SourceStatus]]:
    """The feed's new statuses (none: unchanged) and the sources' changed statuses, in order.

    Args:
        components: the daemon's components (``Health.components``); those of kind ``source``
            give their state, the one of kind ``feed`` the feed's. ``None`` keeps the states.
        sources: the statuses as last published, by source name.
        feed: the feed's status as last published.
        seen: the newest record time per source.
    """
    local: dict[str, Component] = {}
    feeds: list[FeedStatus] = []
    for name, component in (components or {}).items():
        if component.kind == "source":
            local[name] = component
        elif component.kind == "feed":
            feed_status = FeedStatus(state=component.state, detail=component.detail)
            if feed_status != (feeds[-1] if feeds else feed):
                feeds.append(feed_status)
    changed: list[SourceStatus] = []
    for name in [*local, *(n for n in seen if n not in local)]:
        prev = sources.get(name)
        after = stale_after_per_source.get(name, stale_after)
        last = prev.last_update if prev else None
        when = seen.get(name)
        if when is not None:
            when = min(when, now)
            if last is None or (when - last).total_seconds() >= min(5.0, after / 10):
                last = when
        if components is None:
            state, detail = (prev.state, prev.detail) if prev else (None, "")
        elif name in local:
            state, detail = local[name].state, local[name].detail
        else:
            state, detail = None, ""
        status = SourceStatus(source=name, state=state, detail=detail, last_update=last, stale_after=after)
        if status != prev:
            changed.append(status)
    return feeds, changed

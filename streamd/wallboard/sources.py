"""The sources' and the feed's status on the board, from the records seen and the daemon's
components (:mod:`streamd.wallboard.hub` rule 8).

Rules:

1. :func:`status_changes` is pure: it computes what changed; the hub numbers and publishes it.
2. A source's state is its component's when this daemon runs it, ``None`` when another producer
   does; ``components=None`` keeps the states as they were.
3. ``last_update`` (the newest record time seen, never in the future) moves on at most every
   ``min(5 s, stale_after / 10)``, so a busy source costs one change per few seconds.
4. Where a source runs (:class:`Placement`): ``here`` when this daemon runs it (its component),
   ``replica`` (with the replica's name) when another replica of this cluster is assigned it,
   ``unassigned`` when it is one of this cluster's units and nobody is, else ``elsewhere``
   (another producer, or the cluster's assignment not known yet). A cluster's configured sources
   are listed even before a record of theirs is seen. A source running elsewhere never has a
   state here: only its freshness says whether its data flows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from streamd.telemetry import Component, count_error
from streamd.wallboard.model import FeedStatus, SourceStatus, Where

MAX_SOURCES = 1024
"""Sources tracked at most (:mod:`streamd.wallboard.hub` rule 8); the records of further ones still update the board."""


@dataclass(frozen=True, slots=True)
class Placement:
    """What this daemon knows of where the sources run (rule 4).

    Attributes:
        units: this cluster's sources (empty: not in a cluster).
        me: this replica's name (as :func:`streamd.wallboard.placement.replica_name` gives it).
        owners: unit -> the replica assigned it; None: not known yet.
    """

    units: frozenset[str] = frozenset()
    me: str = ""
    owners: Mapping[str, str] | None = field(default=None, compare=False)

    def of(self, name: str, *, local: bool) -> tuple[Where, str]:
        """``(placement, replica)`` of source ``name``; ``local``: this daemon runs it."""
        if local:
            return "here", ""
        if name not in self.units or self.owners is None:
            return "elsewhere", ""
        owner = self.owners.get(name)
        if owner is None:
            return "unassigned", ""
        return ("here", "") if owner == self.me else ("replica", owner)


NOWHERE = Placement()
"""Not in a cluster: what this daemon does not run, another producer does."""


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
    placement: Placement = NOWHERE,
) -> tuple[list[FeedStatus], list[SourceStatus]]:
    """The feed's new statuses (none: unchanged) and the sources' changed statuses, in order.

    Args:
        components: the daemon's components (``Health.components``); those of kind ``source``
            give their state, the one of kind ``feed`` the feed's. ``None`` keeps the states.
        sources: the statuses as last published, by source name.
        feed: the feed's status as last published.
        seen: the newest record time per source.
        placement: where the sources run (rule 4).
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
    names = dict.fromkeys([*local, *seen, *sorted(placement.units)])
    for name in names:
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
        where, replica = placement.of(name, local=name in local)
        status = SourceStatus(
            source=name,
            state=state,
            detail=detail,
            last_update=last,
            stale_after=after,
            placement=where,
            replica=replica,
        )
        if status != prev:
            changed.append(status)
    return feeds, changed

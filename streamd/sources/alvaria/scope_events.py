"""The events of one polled scope: vendor rows, canonical agent states and queue metrics, dead letters.

Rules:

1. Every change of the scope's diff becomes its ``alvaria.{query}`` event (:mod:`.rowevents`);
   bad rows become dead letters, counted (``count_error(source, "processing", error_type)``).
2. With ``canonical`` on, every change also goes through :mod:`.normalize`; a row the normalizer
   refuses becomes a dead letter and the other rows flow.
3. Agents' queues (``queue_ids``, so that ``?queue=`` finds them; :mod:`.agents` says which): a
   userActivity state carries its team, then each worktype whose presence list the user is on
   (:class:`AgentWorkTypes`, known when presence is polled per worktype: listed in
   ``presence_work_type_ids`` or discovered) with the queue ids of that worktype's
   channelActivity tiles (known when channelActivity polls it); a presence logon carries those
   worktypes (at least the polled one). When what a user's state would carry changes (a worktype
   list joined or left, a tile of one of its worktypes appearing or gone), the state is
   published again with the new ``queue_ids`` (:mod:`.requeue`), only then.
4. channelActivity: the ticking ``longest_wait_seconds`` of every present row that got no other
   canonical metric in this poll is published as well (:func:`~.normalize.queue_age_events`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from streamd.errors import NormalizationError
from streamd.events import AgentState, DeadLetter, Event
from streamd.sources.alvaria.agents import (
    presence_events,
    presence_logon,
    user_activity_events,
    user_activity_state,
    work_type_queues,
)
from streamd.sources.alvaria.config import AlvariaSourceConfig, QueryName
from streamd.sources.alvaria.diff import BadRow, Check, DiffResult, ScopeState
from streamd.sources.alvaria.normalize import (
    channel_activity_events,
    channel_queue_id,
    queue_age_events,
    team_activity_events,
)
from streamd.sources.alvaria.rowevents import row_events
from streamd.sources.alvaria.shapes import SHAPES, Key, Row
from streamd.telemetry import count_error


class AgentWorkTypes:
    """Which worktypes' presence lists each user is on, and the tile queue ids of each worktype's
    channels (rule 3); shared by the queries of a source. ``version`` moves on every change."""

    def __init__(self) -> None:
        self.by_user: dict[str, tuple[str, ...]] = {}
        self.channels: dict[str, tuple[str, ...]] = {}
        """workTypeId -> the queue ids of its channelActivity tiles (``worktype/{wt}/{i}/{c}``)."""
        self.version = 0

    def update(self, lists: Mapping[str | None, ScopeState]) -> None:
        """Replace the memberships with those of presence's acknowledged per-worktype snapshots."""
        found: dict[str, list[str]] = {}
        for work_type, state in lists.items():
            if work_type is not None:
                for key in state.rows:
                    found.setdefault(key[0], []).append(work_type)
        by_user = {user: tuple(sorted(wts)) for user, wts in found.items()}
        if by_user != self.by_user:
            self.by_user = by_user
            self.version += 1

    def update_channels(self, rows: Mapping[str | None, ScopeState]) -> None:
        """Replace the worktypes' tile queue ids with those of channelActivity's snapshots (the row
        keys: workTypeId, interactionTypeId, channelTypeId)."""
        found: dict[str, set[str]] = {}
        for state in rows.values():
            for key in state.rows:
                found.setdefault(key[0], set()).add(channel_queue_id(key))
        channels = {work_type: tuple(sorted(ids)) for work_type, ids in found.items()}
        if channels != self.channels:
            self.channels = channels
            self.version += 1

    def of(self, user_id: str) -> tuple[str, ...]:
        """The worktypes ``user_id`` is associated with (empty when unknown)."""
        return self.by_user.get(user_id, ())


@dataclass(frozen=True, slots=True)
class ScopeEvents:
    """Builds the events of one query's polled scopes (module rules)."""

    query: QueryName
    config: AlvariaSourceConfig
    check: Check
    report_logon: bool
    """presence reports logons (only when userActivity is not polled: it knows better)."""
    work_types: AgentWorkTypes = field(default_factory=AgentWorkTypes)

    def of(
        self, result: DiffResult, scope: str | None, observed: datetime, full: bool, present: frozenset[Key]
    ) -> list[Event]:
        """The events of one scope's diff.

        Args:
            result: the scope's diff.
            scope: the polled scope (None: org-wide).
            observed: when the answer was received (UTC).
            full: the diff is a full snapshot.
            present: presence: the users on any polled worktype's list (a removal from one list
                is then no logoff).
        """
        source = self.config.name
        events = [self.dead(b.error_type, b.reason, _raw(b)) for b in result.bad]
        events += row_events(
            SHAPES[self.query], result.changes, source=source, scope=scope, observed=observed, snapshot=full
        )
        if not self.config.canonical or self.query == "listActivity":
            return events
        covered: set[Key] = set()
        for change in result.changes:
            try:
                made = self._canonical(change, scope, observed, full, change.key in present)
            except NormalizationError as exc:
                events.append(self.dead(exc.error_type, f"{self.query}: {exc}", _raw(change)))
                continue
            events += made
            if made:
                covered.add(change.key)
        if self.query == "channelActivity" and not result.held_empty:
            for key, row in result.state.rows.items():
                if key not in covered:
                    events += queue_age_events(key, self.check(row)[0], source=source, observed=observed)
        return events

    def _canonical(
        self, change: Any, scope: str | None, observed: datetime, full: bool, elsewhere: bool
    ) -> list[Event]:
        source = self.config.name
        if self.query == "userActivity":
            overrides = self.config.state_map
            user = change.row.get("userId")
            return user_activity_events(
                change,
                source=source,
                observed=observed,
                snapshot=full,
                overrides=overrides,
                work_types=self.work_types.of(user) if isinstance(user, str) else (),
                channels=self.work_types.channels,
            )
        if self.query == "presence":
            return presence_events(
                change,
                source=source,
                observed=observed,
                snapshot=full,
                report_logon=self.report_logon,
                logged_on_elsewhere=elsewhere,
                work_type_id=scope,
                work_types=self.work_types.of(change.key[0]),
                channels=self.work_types.channels,
            )
        if self.query == "channelActivity":
            return channel_activity_events(change, source=source, observed=observed, snapshot=full)
        return team_activity_events(change, source=source, observed=observed, snapshot=full)

    def current(self, key: Key, row: Row, scope: str | None, observed: datetime) -> AgentState | None:
        """The canonical state a present row (as received) stands for now, with the queue ids known
        now (:mod:`.requeue`): userActivity's state, presence's logon when it reports logons.

        Raises:
            NormalizationError: the row has no usable ``userId``.
        """
        known = self.work_types
        published = self.check(row)[0]
        if self.query == "userActivity":
            user = published.get("userId")
            work_types = known.of(user) if isinstance(user, str) else ()
            return user_activity_state(
                published,
                key,
                source=self.config.name,
                overrides=self.config.state_map,
                queues=work_type_queues(work_types, known.channels),
            )
        if self.query == "presence" and self.report_logon:
            polled = (scope,) if scope else ()
            queues = work_type_queues((*polled, *known.of(key[0])), known.channels)
            return presence_logon(published, source=self.config.name, observed=observed, queues=queues)
        return None

    def dead(self, error_type: str, error: str, raw: bytes) -> Event:
        """A dead letter of this source (counted)."""
        count_error(self.config.name, "processing", error_type)
        return DeadLetter.of(
            source=self.config.name, stage="processing", error_type=error_type, error=error, raw=raw
        ).to_event()


def _raw(item: BadRow | Any) -> bytes:
    try:
        return orjson.dumps(item.row)
    except TypeError:
        return repr(item.row).encode()

"""Scope discovery: the teams, worktypes and contact lists to poll, read from Alvaria itself.

Rules:

1. The guide names where the scope ids come from (003 L111 ``provisioning/teams``, L256
   ``provisioning/workTypes``, L49 ``campaign/lists``: "``contactLists[x].name`` is the name of
   the contact list") but documents none of these answers. :func:`read_scope_list` is therefore
   lenient: the items are the answer itself when it is a JSON array, else the first array among
   ``contactLists`` / ``teams`` / ``workTypes`` / ``items`` / ``rows`` / ``data``; an item is a
   string, or an object whose id is the first usable string (or number) among
   :data:`ID_FIELDS` of its kind (contact lists are named, not numbered). Items without one are
   skipped; an answer without any array is an error naming what it got.
2. :class:`ScopeDirectory` is shared by the queries of one source: the first query that needs a
   kind reads it, and reads it again once ``discover_every`` has passed; the others use the
   result. A new scope is polled from the next cycle on, a removed one is dropped; both are
   logged once, at INFO, per source (not per query).
3. A failed refresh keeps the last known scopes (logged once at WARNING, with what Alvaria
   said; again at INFO when it answers) and is retried after ``min(discover_every, 60 s)``.
   Before a kind was ever read, the failure is the query's own (raised; the supervisor retries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import orjson

from streamd.errors import NormalizationError, SourceError
from streamd.jsonwire import loads
from streamd.sources.alvaria.client import AlvariaClient
from streamd.sources.alvaria.config import DISCOVER_PATHS, ScopeKind

log = logging.getLogger("streamd.sources.alvaria")

LIST_FIELDS = ("contactLists", "teams", "workTypes", "items", "rows", "data")
"""Where a collection answer may hold its items (rule 1)."""
ID_FIELDS: dict[ScopeKind, tuple[str, ...]] = {
    "teams": ("id", "teamId"),
    "work_types": ("id", "workTypeId"),
    "contact_lists": ("name", "contactList"),
}
"""The item fields that carry a scope's id, per kind, most likely first (rule 1)."""
NOUNS: dict[ScopeKind, str] = {"teams": "team", "work_types": "worktype", "contact_lists": "contact list"}
RETRY_CAP = 60.0
"""Seconds at most before a failed refresh is tried again (rule 3)."""


def read_scope_list(kind: ScopeKind, body: bytes) -> list[str]:
    """The scope ids of a listing answer, in answer order, without repeats (rule 1).

    Raises:
        NormalizationError: the answer is not JSON, or holds no array of items.
    """
    try:
        answer = loads(body)
    except orjson.JSONDecodeError as exc:
        raise NormalizationError(f"{DISCOVER_PATHS[kind]}: not JSON ({exc})", "invalid_json") from exc
    items = answer if isinstance(answer, list) else None
    if isinstance(answer, dict):
        items = next((answer[f] for f in LIST_FIELDS if isinstance(answer.get(f), list)), None)
    if items is None:
        got = f"an object with {sorted(answer)[:6]}" if isinstance(answer, dict) else type(answer).__name__
        raise NormalizationError(
            f"{DISCOVER_PATHS[kind]}: no list of {NOUNS[kind]}s in the answer (got {got})", "invalid_body"
        )
    ids: dict[str, None] = {}
    for item in items:
        found = _id_of(kind, item)
        if found is not None:
            ids[found] = None
    return list(ids)


def _id_of(kind: ScopeKind, item: Any) -> str | None:
    if isinstance(item, str):
        return item or None
    if not isinstance(item, dict):
        return None
    for name in ID_FIELDS[kind]:
        value = item.get(name)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


@dataclass(slots=True)
class _Known:
    scopes: list[str]
    next_at: float
    failing: bool = False


class ScopeDirectory:
    """The discovered scopes of one source (rules 2-3); time comes from ``clock``."""

    def __init__(
        self, client: AlvariaClient, *, source: str, every: float, clock: Callable[[], float]
    ) -> None:
        self.client = client
        self.source = source
        self.every = every
        self.clock = clock
        self.known: dict[ScopeKind, _Known] = {}
        self._lock = anyio.Lock()

    def due(self, kind: ScopeKind, at: float | None = None) -> bool:
        """Whether :meth:`scopes` of ``kind`` reads the listing now (or at ``at``): never read, or
        due again."""
        known = self.known.get(kind)
        return known is None or (self.clock() if at is None else at) >= known.next_at

    def current(self, kind: ScopeKind) -> list[str]:
        """The scopes of ``kind`` last read, without reading (empty when never read)."""
        known = self.known.get(kind)
        return list(known.scopes) if known is not None else []

    async def scopes(self, kind: ScopeKind) -> list[str]:
        """The scopes of ``kind`` to poll now, read again when due.

        Raises:
            SourceError | NormalizationError: the kind was never read and reading it failed.
        """
        async with self._lock:  # one refresh per kind at a time; the other queries wait for it
            known = self.known.get(kind)
            if known is None or self.clock() >= known.next_at:
                await self._refresh(kind, known)
            return list(self.known[kind].scopes)

    async def _refresh(self, kind: ScopeKind, known: _Known | None) -> None:
        try:
            found = read_scope_list(kind, await self.client.scope_list(kind))
        except (SourceError, NormalizationError) as exc:
            if known is None:
                raise
            if not known.failing:
                log.warning(
                    "alvaria %s: reading the %ss failed, polling the %d known: %s",
                    self.source,
                    NOUNS[kind],
                    len(known.scopes),
                    exc,
                )
            known.failing, known.next_at = True, self.clock() + min(self.every, RETRY_CAP)
            return
        if known is None:
            log.info(
                "alvaria %s: %d %ss discovered: %s", self.source, len(found), NOUNS[kind], ", ".join(found)
            )
        else:
            self._log_changes(kind, known, found)
        self.known[kind] = _Known(found, self.clock() + self.every)

    def _log_changes(self, kind: ScopeKind, known: _Known, found: list[str]) -> None:
        noun, path = NOUNS[kind], self.client.config.discover_paths.get(kind, DISCOVER_PATHS[kind])
        if known.failing:
            log.info("alvaria %s: the %ss can be read again", self.source, noun)
        for scope in found:
            if scope not in known.scopes:
                log.info("alvaria %s: new %s %s discovered, now polled", self.source, noun, scope)
        for scope in known.scopes:
            if scope not in found:
                log.info("alvaria %s: %s %s no longer listed by %s, dropped", self.source, noun, scope, path)

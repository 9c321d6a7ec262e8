"""What an O2G source's events teach its directory: user changes and pilot -> group links.

Rules:

1. ``OnUserInfoChanged`` / ``OnUserCreated`` (packages ``user``, ``userManagement``) update the
   user's name and number at once. Pilot -> group links are learnt from
   ``OnPilotCallQueued.queue`` when it is a known group, from ``OnPilotCallRemoved`` to an
   agent's number (the agent's current group), and from ``OnAgentRtiChanged.pilotName`` with
   ``currentPG`` (pilot names from the pilot snapshot and ``OnPilotRtiChanged``). A link is kept
   for the directory's life.
2. What an event teaches that changes what is known of an agent republishes its canonical state
   (:meth:`~.directory.DirectoryReads.republish`, :mod:`.directory` rule 4).
3. No I/O: :class:`~streamd.sources.o2g.enrich.Directory` calls these while enriching a batch.
"""

from __future__ import annotations

import logging
from typing import Any

from streamd.events import Event
from streamd.sources.o2g.directory import DirectoryReads, as_text, display_name

log = logging.getLogger("streamd.sources.o2g")


class Learning(DirectoryReads):
    """The directory's lessons from events (use :class:`~streamd.sources.o2g.enrich.Directory`)."""

    def _user(self, user: dict[str, Any]) -> list[Event]:
        """A user's changed or new account: its name and number (rule 2 when they change)."""
        login = as_text(user.get("loginName"))
        if login is None:
            return []
        if name := display_name(user):
            self.names[login] = name
        if number := as_text(user.get("companyPhone")):
            self.logins[number] = login
        return self.republish() if login in self._base else []

    def _queued(self, event: dict[str, Any]) -> list[Event]:
        pilot, queue = as_text(event.get("pilot")), as_text(event.get("queue"))
        if pilot is None or queue is None or not self._is_group(queue):
            return []
        return self._link(pilot, queue)

    def _removed(self, event: dict[str, Any]) -> list[Event]:
        pilot, login = as_text(event.get("pilot")), self.logins.get(str(event.get("newDestination")))
        state = self._base.get(login) if login is not None else None
        if pilot is None or state is None or not state.queue_ids:
            return []
        return self._link(pilot, state.queue_ids[0])

    def _is_group(self, queue: str) -> bool:
        return self._current[queue] > 0 or any(queue in groups for groups in self.groups.values())

    def _link(self, pilot: str, group: str) -> list[Event]:
        """Pilot ``pilot`` serves ``group`` (rule 1); the agent states that change with it (rule 2)."""
        serving = self.pilots.setdefault(group, set())
        if pilot in serving or pilot == group:
            return []
        serving.add(pilot)
        log.info("o2g %s: pilot %s serves processing group %s", self.source, pilot, group)
        return self.republish()

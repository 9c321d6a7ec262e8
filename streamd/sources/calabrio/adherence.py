"""Pure mapping of Calabrio ONE adherence pages to ``calabrio.adherence`` events.

Rules: see :mod:`streamd.sources.calabrio.normalize` (rules 1-5 hold here too).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from streamd.events import Event, stable_id
from streamd.sources.calabrio.models import ADHERENCE_TOPIC, ADHERENCE_TYPE, AgentAdherence
from streamd.sources.calabrio.wire import ident_text, json_array, routed_rows
from streamd.telemetry import count_deviation
from streamd.tolerant import Reader

_ADHERENCE: Final = Reader(AgentAdherence)


class AdherenceRow(dict[str, Any]):
    """An adherence row to publish (vendor fields + ``date``) that knows its deviation paths."""

    __slots__ = ("deviations",)

    def __init__(self, data: Mapping[str, Any], deviations: tuple[str, ...] = ()) -> None:
        super().__init__(data)
        self.deviations = deviations


def parse_adherence(source: str, body: bytes, date: str) -> tuple[list[AdherenceRow], list[Event]]:
    """Decode one adherence page into publishable rows (vendor fields + ``date``) and dead letters.

    A row is published whenever its ``agentId`` is usable (rule 2); the ids are published as
    text, ``details`` as a list (an object becomes its one element, null an empty list) and the
    deviation paths follow that shape (``$.details[0].actuals``).

    Raises:
        UnreadableAnswer: the answer cannot be read as a whole (rule 4).
    """
    dead: list[Event] = []
    out: list[AdherenceRow] = []
    for agent_id, row in routed_rows(source, json_array(body, "calabrio adherence"), "adherence row", dead):
        value, deviations = _ADHERENCE.check(row)
        data = {k: v for k, v in value.items() if k != "agentld"}
        data["agentId"] = agent_id
        if "acdAgentId" in data:
            data["acdAgentId"] = ident_text(data["acdAgentId"])
        details = data.get("details")
        if isinstance(details, dict):
            data["details"] = [details]
            deviations = tuple(_under_first_element(p, "$.details") for p in deviations)
        elif details is None:
            data["details"] = []
        data["date"] = date
        out.append(AdherenceRow(data, deviations))
    return out, dead


def adherence_fingerprint(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes an adherence row worth publishing again (spec §5: the three headline figures)."""
    return (row.get("scheduleAdherence"), row.get("scheduleConformity"), row.get("notInAdherenceSeconds"))


def adherence_event(source: str, row: Mapping[str, Any], *, time: datetime, snapshot: bool = False) -> Event:
    """The ``calabrio.adherence.AgentAdherence`` event of one row (key ``{source}:{agentId}``).

    A row from :func:`parse_adherence` carries its deviations onto the event; a deviating row is
    counted here (call this once per published row). A row marked ``final`` (a day's last
    figures, published once after the day ended) has an id of its own.
    """
    agent_id = str(row["agentId"])
    deviations = row.deviations if isinstance(row, AdherenceRow) else ()
    if deviations:
        count_deviation(source, ADHERENCE_TYPE)
    return Event(
        topic=ADHERENCE_TOPIC,
        type=ADHERENCE_TYPE,
        source=source,
        key=f"{source}:{agent_id}",
        data=dict(row),
        time=time,
        id=stable_id(
            source,
            row.get("date"),
            agent_id,
            *adherence_fingerprint(row),
            *(("final",) if row.get("final") else ()),
        ),
        snapshot=snapshot,
        deviations=deviations,
    )


def tenant_date(now_ms: int, zone: str) -> str:
    """Today's date (``YYYY-MM-DD``) in the tenant's time zone: adherence is per tenant day."""
    return datetime.fromtimestamp(now_ms / 1000, ZoneInfo(zone)).date().isoformat()


def _under_first_element(path: str, prefix: str) -> str:
    """``$.details.actuals`` -> ``$.details[0].actuals`` (an object published as a one-element list)."""
    rest = path[len(prefix) :]
    if path.startswith(prefix) and rest[:1] in (".", "["):
        return f"{prefix}[0]{rest}"
    return path

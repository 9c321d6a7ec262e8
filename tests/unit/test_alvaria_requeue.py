"""Agent states published again when only their queue ids changed (streamd.sources.alvaria.requeue)."""

from __future__ import annotations

from datetime import UTC, datetime

from streamd.events import AgentState, Event
from streamd.sources.alvaria.config import AlvariaSourceConfig
from streamd.sources.alvaria.diff import ScopeState, diff_snapshot
from streamd.sources.alvaria.models import ROW_READERS
from streamd.sources.alvaria.requeue import Requeue
from streamd.sources.alvaria.scope_events import AgentWorkTypes, ScopeEvents
from streamd.sources.alvaria.shapes import SHAPES

OBSERVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CONFIG = AlvariaSourceConfig.model_validate(
    {
        "kind": "alvaria",
        "name": "s",
        "base_url": "https://acme.example/via/v2/organizations/acme",
        "token_url": "https://id.example/tokenservice/oauth2/access_token",
        "client_id": "c",
        "client_secret": "x",
        "api_key": "k",
        "team_ids": ["t1"],
    }
)
ROWS = [
    {"userId": "u1", "teamId": "t1", "stateId": "idle", "stateStartTime": "2026-01-02T03:00:00Z"},
    {"userId": "u2", "teamId": "t1", "stateId": "active", "stateStartTime": "2026-01-02T03:01:00Z"},
]


def setup() -> tuple[AgentWorkTypes, ScopeEvents, Requeue]:
    known = AgentWorkTypes()
    events = ScopeEvents("userActivity", CONFIG, ROW_READERS["userActivity"].check, False, known)
    return known, events, Requeue("s", known, events.current)


def first_cycle(events: ScopeEvents, requeue: Requeue) -> dict[str | None, ScopeState]:
    result = diff_snapshot(SHAPES["userActivity"], ScopeState(), ROWS, scope="t1", full=True, now=0.0)
    state: dict[str | None, ScopeState] = {"t1": result.state}
    made = events.of(result, "t1", OBSERVED, True, frozenset())
    assert requeue.events(state, made, OBSERVED) == []
    return state


def states(events: list[Event]) -> list[tuple[str, tuple[str, ...]]]:
    return [(e.data.agent_id, e.data.queue_ids) for e in events if isinstance(e.data, AgentState)]


def test_a_changed_worktype_set_publishes_that_agent_again_once_acknowledged() -> None:
    known, events, requeue = setup()
    state = first_cycle(events, requeue)
    requeue.ack(state)
    assert requeue.events(state, [], OBSERVED) == []  # nothing changed
    requeue.ack(state)

    known.update({"wt1": ScopeState(rows={("u1",): {"userId": "u1"}})})
    nxt = dict(state)
    (again,) = requeue.events(nxt, [], OBSERVED)
    assert states([again]) == [("u1", ("team/t1", "worktype/wt1"))]
    assert again.data.since == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)  # the state is the row's, unchanged

    requeue.ack(state)  # that cycle's publish failed: the poller resumes from the older cursor
    retry = dict(state)
    assert states(requeue.events(retry, [], OBSERVED)) == [("u1", ("team/t1", "worktype/wt1"))]
    requeue.ack(retry)
    assert requeue.events(dict(retry), [], OBSERVED) == []  # published: not again


def test_a_state_the_cycle_published_anyway_is_not_published_twice() -> None:
    known, events, requeue = setup()
    state = first_cycle(events, requeue)
    requeue.ack(state)
    known.update({"wt1": ScopeState(rows={("u1",): {"userId": "u1"}, ("u2",): {"userId": "u2"}})})
    prev = state["t1"]
    changed = [ROWS[0], ROWS[1] | {"stateId": "wrap", "stateStartTime": "2026-01-02T03:02:00Z"}]
    result = diff_snapshot(SHAPES["userActivity"], prev, changed, scope="t1", full=False, now=1.0)
    made = events.of(result, "t1", OBSERVED, False, frozenset())
    assert states(made) == [("u2", ("team/t1", "worktype/wt1"))]
    again = requeue.events({"t1": result.state}, made, OBSERVED)
    assert states(again) == [("u1", ("team/t1", "worktype/wt1"))]


def test_new_tiles_of_an_agents_worktype_publish_it_again() -> None:
    known, events, requeue = setup()
    known.update({"wt1": ScopeState(rows={("u1",): {"userId": "u1"}})})
    state = first_cycle(events, requeue)
    requeue.ack(state)
    channel = {("wt1", "inboundacd", "voice"): {"workTypeId": "wt1"}}
    known.update_channels({"wt1": ScopeState(rows=channel)})
    (again,) = requeue.events(dict(state), [], OBSERVED)
    assert states([again]) == [("u1", ("team/t1", "worktype/wt1", "worktype/wt1/inboundacd/voice"))]

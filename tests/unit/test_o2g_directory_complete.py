"""DirectoryReads.complete (directory.py rule 3) against the rule written out plainly, on random
directories: its shortcuts for the usual cases (one group, nothing to merge) change nothing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.events import AgentState, State
from streamd.sources.o2g.directory import DirectoryReads

GROUPS = st.sampled_from(["5001", "5002", "5003", "60141", "60142"])


def by_the_rule(directory: DirectoryReads, state: AgentState) -> tuple[str, ...]:
    """The current group(s), then the other groups, then the pilots serving any of them."""
    more = directory.groups.get(state.agent_id, ())
    groups = tuple(dict.fromkeys((*state.queue_ids, *more))) if more else state.queue_ids
    pilots = sorted({p for g in groups for p in directory.pilots.get(g, set())} - set(groups))
    return (*groups, *pilots)


@settings(max_examples=300, deadline=None)
@given(
    current=st.lists(GROUPS, max_size=2).map(tuple),
    more=st.lists(GROUPS, max_size=3).map(tuple),
    pilots=st.dictionaries(GROUPS, st.sets(GROUPS, max_size=3), max_size=4),
    named=st.booleans(),
)
def test_queue_ids_follow_the_rule(
    current: tuple[str, ...], more: tuple[str, ...], pilots: dict[str, set[str]], named: bool
) -> None:
    directory = DirectoryReads("pbx1")
    directory.groups = {"oxe1": more} if more else {}
    directory.pilots = pilots
    if named:
        directory.names = {"oxe1": "Ada Lovelace"}
    state = AgentState(vendor="o2g", source="pbx1", agent_id="oxe1", state=State.BUSY, queue_ids=current)
    done = directory.complete(state)
    assert done.queue_ids == by_the_rule(directory, state)
    assert done.agent_name == ("Ada Lovelace" if named else None)
    if done.queue_ids == current and not named:
        assert done is state  # nothing added: the same state

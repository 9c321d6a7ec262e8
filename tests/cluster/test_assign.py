"""The assignment logic of a cluster member (streamd/cluster/assign.py) and the switchboard that
starts and stops units one at a time (streamd/runtime/switch.py)."""

from __future__ import annotations

import anyio
import pytest

from streamd.cluster.assign import Fence, control_topic, owned, plan, state_topic, units, wanted
from streamd.runtime import Switchboard


def test_units_are_sorted_names_and_partition_i_is_unit_i() -> None:
    names = units(["xima", "calabrio-rtdc", "o2g"])
    assert names == ["calabrio-rtdc", "o2g", "xima"]
    assert owned(names, [0, 2]) == {"calabrio-rtdc", "xima"}
    assert owned(names, [5]) == frozenset()  # a partition of a newer config is ignored


def test_a_name_shared_by_a_source_and_a_sink_is_refused() -> None:
    with pytest.raises(ValueError, match="distinct names: o2g"):
        units(["o2g", "o2g"])


def test_topics_follow_the_prefix() -> None:
    assert control_topic("p.") == "p._streamd.cluster"
    assert state_topic("p.") == "p._streamd.state"


def test_plan_stops_what_is_no_longer_owned_and_starts_what_is_new() -> None:
    assert plan(frozenset({"a", "b"}), frozenset({"b", "c"})) == (["a"], ["c"])
    assert plan(frozenset(), frozenset()) == ([], [])


def test_a_member_without_a_recent_commit_runs_nothing_and_runs_again_once_one_succeeds() -> None:
    fence = Fence(after=5.0, last_ok=100.0)
    assigned = frozenset({"a"})
    assert wanted(assigned, fence, 104.9) == assigned
    assert wanted(assigned, fence, 105.0) == frozenset()  # fenced at session_timeout / 2
    fence.ok(106.0)
    assert wanted(assigned, fence, 106.5) == assigned
    fence.ok(50.0)  # an older success never moves the fence back
    assert fence.last_ok == 106.0


@pytest.mark.anyio
async def test_switchboard_stops_one_component_and_waits_for_its_clean_up() -> None:
    cleaned: list[str] = []

    def unit(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(0.01)
                    cleaned.append(name)

        return run

    async with anyio.create_task_group() as tg:
        switch = Switchboard(tg)
        switch.start("a", unit("a"))
        switch.start("b", unit("b"))
        with pytest.raises(ValueError, match="already running"):
            switch.start("a", unit("a"))
        await anyio.sleep(0)
        await switch.stop("a")
        assert cleaned == ["a"]
        assert switch.running == {"b"}
        await switch.stop_all()
        assert cleaned == ["a", "b"]
        switch.start("c", unit("c"))
        await switch.stop("c")  # stopped before its task began: cancelled at its first await
        assert cleaned == ["a", "b", "c"]
        assert switch.running == frozenset()


def test_a_proof_that_kafka_is_down_for_everyone_keeps_the_units_running_until_it_is_old() -> None:
    fence = Fence(after=5.0, last_ok=100.0)
    assigned = frozenset({"a"})
    assert fence.kafka_down(103.0)  # every broker refused at 103: no coordinator counts before that
    assert wanted(assigned, fence, 107.9) == assigned
    assert fence.riding_through(107.9)  # no commit for 7.9 s, kept by the proof alone
    assert wanted(assigned, fence, 108.0) == frozenset()  # the proof is as old as a commit may be
    assert not fence.riding_through(108.0)
    assert fence.kafka_down(90.0)  # an older proof never moves the fence back
    assert fence.last_down == 103.0
    assert not fence.kafka_down(108.5)  # fenced: the units may be someone else's already
    assert wanted(assigned, fence, 108.5) == frozenset()
    fence.ok(109.0)
    assert wanted(assigned, fence, 109.5) == assigned
    assert not fence.riding_through(109.5)  # a commit, not a proof, keeps it now

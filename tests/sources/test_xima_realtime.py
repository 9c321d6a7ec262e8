"""Xima realtime polling against the simulator: initializing flows, bad ids, errors, changes only."""

from __future__ import annotations

import orjson
import pytest

from streamd.errors import AuthError, FatalError
from streamd.events import AgentState, QueueMetric
from streamd.publish.memory import MemoryEmit
from streamd.sim.xima import Fault, XimaSimulator
from streamd.sources.xima.models import RealtimeMetricValue, UntypedValue
from tests.helpers import running, until

from .xima_helpers import make_source, values

pytestmark = pytest.mark.anyio


def published_keys(emit: MemoryEmit) -> list[tuple[str, str | None]]:
    out = []
    for event in values(emit):
        data = event.data
        assert isinstance(data, RealtimeMetricValue)
        out.append((data.metric_id, data.category_value))
    return out


@pytest.mark.parametrize("status", [206, 400])
async def test_initializing_values_are_polled_again_and_published_once_ready(status: int) -> None:
    async with XimaSimulator(init_requests=2, initializing_status=status) as sim:
        emit = MemoryEmit()
        async with running(make_source(sim), emit):
            await until(lambda: len(values(emit)) >= len(sim.world.values))
        statuses = [r.status for r in sim.log.to("/metrics/values")]
        assert statuses[:3] == [status, status, 200]
        # each key exactly once
        assert sorted(published_keys(emit), key=str) == sorted(sim.world.values, key=str)
        assert not any(e.topic == "deadletter" for e in emit.events)


async def test_no_value_is_published_for_a_key_while_it_initializes() -> None:
    async with XimaSimulator(init_requests=1) as sim:
        emit = MemoryEmit()
        key = ("K0QUEUED", "Sales")
        async with running(make_source(sim, metrics=["K0QUEUED"], interval=0.05), emit):
            await until(lambda: len(values(emit)) == 2)
            # The key needs re-initializing (as after a long gap): one 206 round lists it under
            # "initializing"; the source forgets its value and publishes it again once ready.
            sim.world.reinitialize(key)
            n = len(sim.log.to("/metrics/values"))
            await until(lambda: len(sim.log.to("/metrics/values")) >= n + 3)
        sales = [e for e in values(emit) if e.data.category_value == "Sales"]
        assert [r.status for r in sim.log.to("/metrics/values")][n : n + 2] == [206, 200]
        assert len(sales) == 2  # before, and again after initializing; never during
        assert sales[0].id == sales[1].id  # the same value version


async def test_400_without_initializing_body_is_a_request_error() -> None:
    async with XimaSimulator() as sim:
        sim.faults.add("values", Fault(400))
        with pytest.raises(FatalError, match="HTTP 400 without an initializing body"):
            await make_source(sim).run(MemoryEmit())


async def test_one_bad_id_cannot_block_the_others() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.rejected = {"K0ONCALL": 403, "K0NOTICE": 404}
        emit = MemoryEmit()
        async with running(make_source(sim), emit):
            good = {k for k in sim.world.values if k[0] not in sim.faults.rejected}
            await until(lambda: set(published_keys(emit)) >= good)
            before = len(sim.log.to("/metrics/values"))
            await until(lambda: len(sim.log.to("/metrics/values")) > before + 1)
        assert {m for m, _ in published_keys(emit)} == {k[0] for k in good}
        # once found, the bad ids are skipped: later rounds are a single successful request
        assert sim.log.to("/metrics/values")[-1].status == 200
        assert "K0ONCALL" not in sim.log.to("/metrics/values")[-1].query


async def test_every_id_forbidden_is_an_auth_error_naming_them() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.rejected = {"K0ONCALL": 403, "K0NOTICE": 403}
        with pytest.raises(AuthError, match="K0ONCALL, K0NOTICE"):
            await make_source(sim, metrics=["K0ONCALL", "K0NOTICE"]).run(MemoryEmit())


async def test_401_is_an_auth_error_naming_the_metric_ids() -> None:
    async with XimaSimulator() as sim:
        sim.faults.add("values", Fault(401))
        with pytest.raises(AuthError, match="K0QUEUED"):
            await make_source(sim, metrics=["K0QUEUED"]).run(MemoryEmit())


async def test_rejected_key_is_a_fatal_error_before_the_first_value() -> None:
    async with XimaSimulator() as sim:
        sim.api_key = "rotated"
        with pytest.raises(AuthError):
            await make_source(sim, api_key="sim-key").run(MemoryEmit())


async def test_server_errors_are_retried() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.add("values", Fault(503), times=2)
        emit = MemoryEmit()
        async with running(make_source(sim, metrics=["K0NOTICE"]), emit):
            await until(lambda: len(values(emit)) == 1)
        assert [r.status for r in sim.log.to("/metrics/values")][:3] == [503, 503, 200]


async def test_only_changes_are_published_between_refreshes() -> None:
    async with XimaSimulator(init_requests=0, seed=3) as sim:
        emit = MemoryEmit()
        async with running(make_source(sim, interval=0.05, refresh_every=3600), emit):
            await until(lambda: len(values(emit)) == len(sim.world.values))
            assert all(e.snapshot for e in values(emit))  # the first round is a snapshot
            changed = sim.step()
            assert changed
            await until(lambda: len(values(emit)) >= len(sim.world.values) + len(set(changed)))
            n = len(sim.log.to("/metrics/values"))
            await until(lambda: len(sim.log.to("/metrics/values")) > n + 1)
        later = values(emit)[len(sim.world.values) :]
        assert sorted({(e.data.metric_id, e.data.category_value) for e in later}, key=str) == sorted(
            set(changed), key=str
        )
        assert not any(e.snapshot for e in later)


async def test_full_refresh_republishes_everything_as_snapshot() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        emit = MemoryEmit()
        async with running(make_source(sim, interval=0.05, refresh_every=0.1), emit):
            await until(lambda: len([e for e in values(emit) if e.snapshot]) >= 2 * len(sim.world.values))
        ids = [e.id for e in values(emit)]
        assert len(set(ids)) == len(sim.world.values)  # same values → same deterministic ids


async def test_canonical_events_and_agent_mapping_enrichment() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        emit = MemoryEmit()
        source = make_source(sim, agent_state_metrics=["K0STATE1"])
        async with running(source, emit):
            await until(lambda: len(values(emit)) == len(sim.world.values))
        states = [e.data for e in emit.events if isinstance(e.data, AgentState)]
        assert {s.agent_id for s in states} == {"201", "202", "203", "204"}
        assert {s.vendor_state for s in states} == {"Available"}
        queues = [e.data for e in emit.events if isinstance(e.data, QueueMetric)]
        group = {(q.queue_id, q.metric) for q in queues if q.queue_id != "all"}
        assert group == {(g, m) for g in ("Sales", "Support") for m in ("waiting", "average_wait_seconds")}
        # metrics without a GROUP category go to the configurable system queue ("all")
        assert {"longest_wait_seconds", "K0NOTICE"} <= {q.metric for q in queues if q.queue_id == "all"}
        talk = next(e.data for e in values(emit) if e.data.metric_id == "K0TALKMS")
        assert talk.agent is not None
        assert talk.agent.alias == "aadams"
        assert talk.metric_name == "Agent Talk Time"
        assert sim.log.to("/agents/mapping")[0].status == 200


async def test_a_deviating_entry_is_published_and_only_a_keyless_one_is_dead_lettered() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        keyless = {"key": {"categoryValue": "Sales"}, "value": {"type": "COUNT", "count": 1}}
        body = {
            "results": [
                {"key": {"metricId": "K0NOTICE"}, "value": {"type": "PERCENT", "lastUpdateTime": "x"}},
                keyless,
            ]
        }
        sim.faults.add("values", Fault(200, orjson.dumps(body)))
        emit = MemoryEmit()
        async with running(make_source(sim, metrics=["K0NOTICE"]), emit):
            await until(
                lambda: len(values(emit)) >= 1 and len(emit.of_type("streamd.deadletter.processing")) == 1
            )
        first = values(emit)[0]
        assert first.key == "cr1:K0NOTICE:"
        assert first.deviations == ("$.value.type", "$.value.lastUpdateTime")
        assert isinstance(first.data.value, UntypedValue)
        assert first.data.value.raw == {"type": "PERCENT", "lastUpdateTime": "x"}
        [dead] = emit.of_type("streamd.deadletter.processing")
        assert dead.data.error_type == "missing_key"
        assert orjson.loads(dead.data.raw) == keyless


async def test_ids_are_sent_comma_separated_in_chunks() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        emit = MemoryEmit()
        async with running(make_source(sim, max_ids_per_request=3), emit):
            await until(lambda: len(values(emit)) == len(sim.world.values))
        first_round = [r.query for r in sim.log.to("/metrics/values")][:3]
        assert first_round == [
            "id=K0STATE1,K0ONCALL,K0TALKMS",
            "id=K0QUEUED,K0AVGWT1,K0LONGWT",
            "id=K0DIRCNT,K0NOTICE",
        ]


async def test_all_rejected_over_several_rounds_names_every_metric() -> None:
    async with XimaSimulator(init_requests=0) as sim:
        sim.faults.rejected = {"K0ONCALL": 403}

        class RejectLater(MemoryEmit):
            async def __call__(self, events):  # type: ignore[no-untyped-def]
                sim.faults.rejected["K0NOTICE"] = 403  # after the first round, the last good id goes bad too
                await super().__call__(events)

        source = make_source(sim, metrics=["K0ONCALL", "K0NOTICE"], interval=0.05)
        with pytest.raises(AuthError, match="K0ONCALL, K0NOTICE"):
            await source.run(RejectLater())


async def test_agent_states_carry_the_queues_of_the_agent_group_metrics_listing_them() -> None:
    async with XimaSimulator(init_requests=0, agents=4, group_state_metrics=True) as sim:
        emit = MemoryEmit()
        groups = dict(sim.world.group_states)  # agent-group metric -> its group (the queue id)
        source = make_source(sim, agent_state_metrics=["K0STATE1"], agent_group_metrics=groups)
        async with running(source, emit):
            await until(lambda: len(emit.of_type("streamd.agent.State")) >= 4)
    queues = {e.data.agent_id: e.data.queue_ids for e in emit.of_type("streamd.agent.State")}
    expected = {  # the simulator's groups: agent i is in group i mod 2, the first agent in both
        agent[-4:-1]: tuple(sorted(g for g, members in sim.world.members.items() if agent in members))
        for agent in sim.world.agents
    }
    assert queues == expected
    assert queues["201"] == ("Sales", "Support")
    assert queues["202"] == ("Support",)


async def test_an_agent_whose_group_value_is_no_longer_listed_is_published_again_without_that_queue() -> None:
    async with XimaSimulator(init_requests=0, agents=4, group_state_metrics=True) as sim:
        listing = [  # a metric list without Category Selections: membership comes from the values alone
            {"metricId": m.metric_id, "metricName": m.name, "categoryType": m.category_type}
            for m in sim.world.metrics.values()
        ]
        sim.faults.add("metrics", Fault(200, orjson.dumps(listing)), times=None)
        emit = MemoryEmit()
        groups = dict(sim.world.group_states)
        (support,) = [m for m, g in groups.items() if g == "Support"]
        first = sim.world.agents[0]  # in both groups
        source = make_source(
            sim,
            agent_state_metrics=["K0STATE1"],
            agent_group_metrics=groups,
            interval=0.05,
            refresh_every=3600,
        )

        def queues_of(agent_id: str) -> list[tuple[str, ...]]:
            return [
                e.data.queue_ids for e in emit.of_type("streamd.agent.State") if e.data.agent_id == agent_id
            ]

        async with running(source, emit):
            await until(lambda: ("Sales", "Support") in queues_of("201"))
            sim.world.drop_category((support, first))  # the admin took the agent out of Support
            await until(lambda: queues_of("201")[-1] == ("Sales",))
        assert queues_of("201") == [("Sales", "Support"), ("Sales",)]

"""Which replica runs each source on the board (streamd/wallboard/placement.py, sources.py rule 4):
the group's assignment decoded, the hub's source statuses, and two real cluster members on the
embedded broker described by the placement job."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import anyio
import orjson
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from streamd.cluster.assign import control_topic, member_client_id, units
from streamd.cluster.member import ClusterMember
from streamd.config_core import ClusterConfig, KafkaConfig
from streamd.embedded import EmbeddedBroker
from streamd.events import utcnow
from streamd.telemetry import Component, ComponentState, Health
from streamd.wallboard.hub import SourceStatus, StateHub
from streamd.wallboard.placement import owners_of, placement_session, replica_name
from streamd.wallboard.sources import Placement

UNITS = ["alvaria", "o2g", "rtdc", "xima"]
TOPIC = "p._streamd.cluster"


def assignment(*pairs: tuple[str, list[int]]) -> bytes:
    return ConsumerProtocolMemberAssignment(0, list(pairs), b"").encode()


def member(client_id: str, host: str, *pairs: tuple[str, list[int]]) -> tuple[str, str, str, bytes, bytes]:
    return (f"{client_id}-uuid", client_id, host, b"", assignment(*pairs))


def test_a_replica_is_named_by_the_address_in_its_client_id_else_by_its_host() -> None:
    client_id = member_client_id("streamd", "http://10.0.0.5:8080")
    assert client_id == "streamd@10.0.0.5:8080"
    assert replica_name(client_id, "/10.0.0.5") == "10.0.0.5:8080"
    assert replica_name(member_client_id("a@b", "http://[fd00::1]:8080"), "") == "[fd00::1]:8080"
    assert replica_name("streamd", "/10.0.0.7") == "10.0.0.7"  # an older replica: its host


def test_owners_come_from_the_members_assignments_of_the_control_topic() -> None:
    group = (
        0,
        "streamd",
        "Stable",
        "consumer",
        "roundrobin",
        [
            member("streamd@10.0.0.5:8080", "/10.0.0.5", (TOPIC, [0, 2])),
            member("streamd@10.0.0.6:8080", "/10.0.0.6", (TOPIC, [1, 9]), ("other", [3])),
            ("joining", "streamd@10.0.0.7:8080", "/10.0.0.7", b"", b""),  # nothing assigned yet
        ],
    )
    assert owners_of(group, UNITS, TOPIC) == {
        "alvaria": "10.0.0.5:8080",
        "rtdc": "10.0.0.5:8080",
        "o2g": "10.0.0.6:8080",  # partition 9: a newer config's unit, ignored; another topic too
    }
    assert owners_of((0, "streamd", "PreparingRebalance", "consumer", "", []), UNITS, TOPIC) is None
    assert owners_of((16, "streamd", "", "", "", []), UNITS, TOPIC) is None  # an error: unknown


def test_a_broker_that_reports_no_assignments_gets_the_round_robin_rule() -> None:
    """The embedded broker reports the members' ids only: partition i is the (i % n)-th member's
    by sorted member id, as the round-robin assignor gave it; the replica is named by the client
    id in the member id."""
    uuid = "-69be8a78-9799-4a52-88f6-0fc3827ed2ec"
    group = (
        0,
        "streamd",
        "Stable",
        "consumer",
        "",
        [
            ("streamd@127.0.0.1:8082" + uuid, "", "", b"", b""),
            ("streamd@127.0.0.1:8081" + uuid, "", "", b"", b""),
        ],
    )
    assert owners_of(group, UNITS, TOPIC) == {
        "alvaria": "127.0.0.1:8081",
        "o2g": "127.0.0.1:8082",
        "rtdc": "127.0.0.1:8081",
        "xima": "127.0.0.1:8082",
    }
    bare = (0, "streamd", "Stable", "consumer", "", [("m1", "", "", b"", b"")])
    assert owners_of(bare, ["a"], TOPIC) == {"a": "m1"}  # no name to show but the member id
    assert owners_of((0, "streamd", "Stable", "consumer", "", []), UNITS, TOPIC) == {}  # nobody


def test_sources_say_whether_they_run_here_on_another_replica_or_nowhere() -> None:
    health = Health()
    health.add("o2g", "source").set(ComponentState.RUNNING)
    hub = StateHub(stale_after=120.0)
    hub.placement = Placement(units=frozenset({"alvaria", "o2g", "xima"}))
    hub.touch("xima", utcnow() - timedelta(seconds=10))  # runs on another replica: its data flows
    hub.touch("other", utcnow())  # another producer's source
    hub.sync(health.components)
    assert hub.sources["xima"].placement == "elsewhere"  # the assignment is not known yet
    assert "alvaria" in hub.sources  # a configured source is listed before any record of it

    hub.place({"o2g": "10.0.0.5:8080", "xima": "10.0.0.6:8080"}, me="10.0.0.5:8080")
    assert hub.sync(health.components) == 2  # xima and alvaria changed, o2g ran here already
    xima = hub.sources["xima"]
    assert (xima.placement, xima.replica) == ("replica", "10.0.0.6:8080")
    assert xima.state is None  # never failed nor retrying here: only its freshness counts
    assert xima.last_update is not None
    assert (utcnow() - xima.last_update).total_seconds() < xima.stale_after  # not stale
    assert (hub.sources["o2g"].placement, hub.sources["o2g"].state) == ("here", ComponentState.RUNNING)
    assert (hub.sources["alvaria"].placement, hub.sources["alvaria"].replica) == ("unassigned", "")
    assert hub.sources["other"].placement == "elsewhere"

    # a rebalance gives alvaria to this replica before its component exists: here, no state yet
    hub.place({"o2g": "10.0.0.5:8080", "xima": "10.0.0.6:8080", "alvaria": "10.0.0.5:8080"})
    seq = hub.seq
    assert hub.sync(health.components) == 1
    assert hub.sources["alvaria"] == SourceStatus(
        source="alvaria", state=None, last_update=None, stale_after=120.0, placement="here"
    )
    change = hub.since(f"{hub.epoch}.{seq}")
    assert change is not None
    assert orjson.loads(change[0].payload())["value"]["placement"] == "here"
    assert hub.sync(health.components) == 0  # nothing moved: no change


def test_without_a_cluster_what_this_daemon_runs_is_here_and_the_rest_elsewhere() -> None:
    health = Health()
    health.add("pbx", "source").set(ComponentState.FAILED, "HTTP 401")
    hub = StateHub()
    hub.touch("remote", utcnow())
    hub.sync(health.components)
    assert (hub.sources["pbx"].placement, hub.sources["pbx"].state) == ("here", ComponentState.FAILED)
    assert (hub.sources["remote"].placement, hub.sources["remote"].state) == ("elsewhere", None)


async def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.1)


class Unit:
    async def run(self, name: str) -> None:
        await anyio.sleep_forever()


@pytest.mark.anyio
@pytest.mark.kafka
async def test_the_placement_job_reads_which_replica_owns_each_unit_from_the_group() -> None:
    names = units(["a", "b", "c", "d"])
    async with EmbeddedBroker() as bootstrap:
        kafka = KafkaConfig(bootstrap_servers=bootstrap, topic_prefix="placement.")
        cfg = ClusterConfig(enabled=True, group_id="placement", session_timeout=10)
        members = [
            ClusterMember(
                cfg,
                kafka,
                names,
                Unit().run,
                Component("cluster", "cluster"),
                advertised_url=lambda port=port: f"http://127.0.0.1:{port}",  # type: ignore[misc]
            )
            for port in (8081, 8082)
        ]
        hub = StateHub()
        hub.placement = Placement(units=frozenset(names))
        async with anyio.create_task_group() as tg:
            for m in members:
                tg.start_soon(m.session, lambda: None)
            await until(lambda: all(m.running for m in members), "both members run a unit")
            tg.start_soon(
                lambda: placement_session(
                    hub,
                    kafka,
                    "placement",
                    names,
                    control_topic(kafka.topic_prefix),
                    lambda: None,
                    me=lambda: "127.0.0.1:8081",
                    interval=0.2,
                )
            )
            expected = {
                **dict.fromkeys(members[0].running, "127.0.0.1:8081"),
                **dict.fromkeys(members[1].running, "127.0.0.1:8082"),
            }
            await until(lambda: hub.placement.owners == expected, "the group's assignment read")
            assert set(expected) == set(names)
            hub.sync({})
            for name in names:
                theirs = name in members[1].running
                assert hub.sources[name].placement == ("replica" if theirs else "here")
                assert hub.sources[name].replica == ("127.0.0.1:8082" if theirs else "")
            tg.cancel_scope.cancel()

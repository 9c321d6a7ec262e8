"""Which replica runs each source, for the board (README "Running several replicas").

Rules:

1. The cluster's group coordinator knows the assignment: unit ``i`` is partition ``i`` of the
   control topic (:mod:`streamd.cluster.assign` rule 1), and each member's client id is
   ``{kafka.client_id}@{host}:{port}``, its HTTP address (:mod:`streamd.cluster.member`): that
   address is the replica's name on the board (a member without one is named by its host).
2. :func:`owners_of` is pure: unit name -> replica name, from one ``DescribeGroups`` answer; None
   while the group is not ``Stable`` (a rebalance: the board keeps what it knew). A broker that
   reports the members but not their assignments (the embedded one) gets the round-robin
   assignor's rule applied to the members' ids, which is what the group's leader computed.
3. :func:`placement_session` is one plain session (the ``placement`` job of the ``wallboard``
   component): it describes the group every :data:`PLACEMENT_INTERVAL` and hands the owners to
   the hub; it raises on any failure and never retries (whoever runs it does).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import anyio
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from streamd.config_core import KafkaConfig
from streamd.publish.consume import admin_client, kafka_errors
from streamd.runtime import Connected
from streamd.wallboard.hub import StateHub

_MEMBER_ID = re.compile(r"(.*)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

PLACEMENT_INTERVAL = 3.0
"""Seconds between two looks at the group's assignment."""


def replica_name(client_id: str, client_host: str) -> str:
    """The name a member is shown by (rule 1): the address after ``@`` in its client id, else its
    host as the broker saw it."""
    _, at, address = client_id.rpartition("@")
    return address if at and address else client_host.lstrip("/")


def _client_id(member_id: str, client_id: str) -> str:
    """The member's client id; a broker that does not report it (the embedded one) still gives
    the member id, which Kafka makes ``{client_id}-{uuid}``."""
    if client_id:
        return client_id
    match = _MEMBER_ID.fullmatch(member_id)
    return match.group(1) if match else member_id


def owners_of(group: Sequence[Any], units: Sequence[str], topic: str) -> dict[str, str] | None:
    """The replica of every assigned unit (rule 2).

    Args:
        group: one group of a ``DescribeGroupsResponse``: ``(error_code, group_id, state,
            protocol_type, protocol, members, ...)``, each member ``(member_id, client_id,
            client_host, metadata, assignment)``.
        units: the unit names in partition order (:func:`streamd.cluster.assign.units`).
        topic: the control topic.

    Returns:
        None when the group is not ``Stable`` or answered an error; units nobody owns are absent.
        A broker that reports no member's assignment (the embedded one) gets the round-robin
        assignor's own rule, as every member subscribes to the one control topic: partition ``i``
        belongs to the ``i % n``-th member by sorted member id.
    """
    error, state, members = group[0], group[2], group[5]
    if error or state != "Stable":
        return None
    owners: dict[str, str] = {}
    names: dict[str, str] = {}
    for member in members:
        member_id, client_id, client_host, _, raw = member[:5]
        shown = replica_name(_client_id(str(member_id), str(client_id)), str(client_host))
        name = names[str(member_id)] = shown or str(member_id)
        if not raw:
            continue
        for assigned_topic, partitions in ConsumerProtocolMemberAssignment.decode(raw).assignment:
            if assigned_topic != topic:
                continue
            for p in partitions:
                if 0 <= p < len(units):
                    owners[units[p]] = name
    if not owners and names and not any(m[4] for m in members):
        ordered = sorted(names)
        owners = {unit: names[ordered[i % len(ordered)]] for i, unit in enumerate(units)}
    return owners


async def placement_session(
    hub: StateHub,
    kafka: KafkaConfig,
    group_id: str,
    units: Sequence[str],
    topic: str,
    connected: Connected,
    *,
    me: Callable[[], str] = lambda: "",
    interval: float = PLACEMENT_INTERVAL,
) -> None:
    """Describe the cluster's group every ``interval`` and tell the hub who runs what (rule 3).

    Args:
        me: this replica's name (its HTTP address once it listens).

    Raises:
        TransientError: Kafka could not be asked.
    """
    async with admin_client(kafka) as admin:
        while True:
            with kafka_errors():
                answers = await admin.describe_consumer_groups([group_id])
            for answer in answers:
                for group in answer.groups:
                    if group[1] == group_id and (owners := owners_of(group, units, topic)) is not None:
                        # me() may resolve the host name (no POD_IP): never on the event loop
                        hub.place(owners, me=await anyio.to_thread.run_sync(me))
            connected()
            await anyio.sleep(interval)

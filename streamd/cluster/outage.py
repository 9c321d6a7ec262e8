"""Telling a whole-Kafka outage apart from a partition of this replica (docs/architecture.md
"Several replicas", failure cases).

Rules:

1. The proof that Kafka is down for everyone is a refused TCP connection (``ECONNREFUSED``: the
   host answered, nothing listens) from every address of every bootstrap server, and from every
   broker of the last known metadata (or DNS answers that broker's name does not exist,
   ``EAI_NONAME``: a broker pod that is gone). A timeout, an unreachable network, a name of a
   bootstrap server that does not resolve, DNS not answering (``EAI_AGAIN`` and every other
   resolver error: a partition can cut a replica off its DNS too) or a connection that is accepted
   prove nothing (a partition looks like that).
2. :func:`kafka_refused` never raises for a network error: it answers the question, it does not
   retry (the fencing job's supervisor does).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

import anyio

PROBE_TIMEOUT = 1.0
"""Seconds one connection attempt may take before it counts as "no proof"."""


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """``host:port,[v6]:port`` -> ``[(host, port), ...]`` (9092 when the port is missing)."""
    found: list[tuple[str, int]] = []
    for item in servers.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.lstrip(":")
        else:
            host, sep, port = item.rpartition(":")
            if not sep:
                host, port = item, ""
        found.append((host, int(port) if port.isdigit() else 9092))
    return found


def name_gone(exc: socket.gaierror) -> bool:
    """True when a resolver error says the name does not exist (``EAI_NONAME``), not that DNS
    could not be asked (rule 1)."""
    return exc.errno == socket.EAI_NONAME


def _refused(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return True
    if exc.__cause__ is not None:  # anyio: "All connection attempts failed" from the last one
        return _refused(exc.__cause__)
    nested = getattr(exc, "exceptions", None) or ()  # several addresses tried at once
    return bool(nested) and all(_refused(e) for e in nested)


async def _address_refused(host: str, port: int, *, must_resolve: bool, bound: float) -> bool:
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return not must_resolve and name_gone(exc)  # a metadata broker whose name is gone: its pod is gone
    for *_, sockaddr in infos:
        ip = str(sockaddr[0])
        try:
            with anyio.fail_after(bound):
                stream = await anyio.connect_tcp(ip, port)
        except TimeoutError:
            return False
        except OSError as exc:
            if not _refused(exc):
                return False
            continue
        await stream.aclose()
        return False  # something listens: Kafka is up at least there
    return bool(infos)


async def kafka_refused(
    bootstrap: Iterable[tuple[str, int]],
    brokers: Iterable[tuple[str, int]] = (),
    *,
    bound: float = PROBE_TIMEOUT,
) -> bool:
    """True only when every bootstrap server and every known broker refuse connections (rule 1)."""
    seeds = list(bootstrap)
    if not seeds:
        return False
    for host, port in seeds:
        if not await _address_refused(host, port, must_resolve=True, bound=bound):
            return False
    for host, port in brokers:
        if (host, port) not in seeds and not await _address_refused(
            host, port, must_resolve=False, bound=bound
        ):
            return False
    return True

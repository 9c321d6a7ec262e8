"""The wallboard hub's change feed: numbered changes, their shared JSON deltas, and subscribers.

Rules:

1. A :class:`Change` encodes its delta once, shared by every client; a client whose filter no
   longer selects an entry it had gets a removal (``value`` null), one that never had it nothing.
2. Subscribers get changes through a small bounded buffer filled without waiting: a subscriber
   whose buffer is full is dropped (its stream ends, ``streamd_wallboard_clients_dropped_total``
   counts it); a slow client never slows the hub or the Kafka feed
   (:mod:`streamd.wallboard.hub` rule 5).
"""

from __future__ import annotations

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from prometheus_client import Counter, Gauge

from streamd.publish.encoding import dumps
from streamd.telemetry import REGISTRY
from streamd.wallboard.model import ALL, Filter, Kind, Value

CLIENTS_DROPPED = Counter(
    "streamd_wallboard_clients_dropped",
    "Live-feed clients dropped because they did not keep up.",
    registry=REGISTRY,
)
CLIENTS = Gauge("streamd_wallboard_clients", "Live-feed clients connected.", registry=REGISTRY)


class Change:
    """One numbered change: ``value`` is the new value, ``None`` when the entry is gone."""

    __slots__ = ("_payload", "key", "kind", "prev", "seq", "value")

    def __init__(
        self,
        seq: int,
        kind: Kind,
        key: str,
        value: Value | None,
        prev: Value | None,
    ) -> None:
        self.seq, self.kind, self.key, self.value, self.prev = seq, kind, key, value, prev
        self._payload: bytes | None = None

    def payload(self) -> bytes:
        """The JSON delta (encoded once, shared by every client)."""
        if self._payload is None:
            self._payload = delta_json(self.seq, self.kind, self.key, self.value)
        return self._payload

    def for_filter(self, flt: Filter) -> bytes | None:
        """The delta a client with ``flt`` should see: the change, a removal, or nothing."""
        if flt is ALL or flt.matches(self.value):
            return self.payload()
        if flt.matches(self.prev):  # it was on the client's board and no longer belongs there
            return delta_json(self.seq, self.kind, self.key, None)
        return None


def delta_json(seq: int, kind: Kind, key: str, value: Value | None) -> bytes:
    """``{"seq", "kind", "key", "value"}`` as JSON."""
    return dumps({"seq": seq, "kind": kind, "key": key, "value": value})


class Subscription:
    """One client's bounded buffer of deltas: read ``receive``; ``with`` it (or ``release()``).

    Args:
        subscribers: the hub's attached subscribers (by ``id``), which :meth:`close` leaves.
    """

    def __init__(self, subscribers: dict[int, Subscription], flt: Filter, size: int) -> None:
        self._subscribers = subscribers
        self.filter = flt
        self.dropped = False
        self._send: MemoryObjectSendStream[tuple[int, bytes]]
        self.receive: MemoryObjectReceiveStream[tuple[int, bytes]]
        self._send, self.receive = anyio.create_memory_object_stream[tuple[int, bytes]](size)

    def offer(self, change: Change) -> None:
        """Queue ``change`` if this client wants it; drop the client when its buffer is full."""
        payload = change.for_filter(self.filter)
        if payload is None:
            return
        try:
            self._send.send_nowait((change.seq, payload))
        except anyio.WouldBlock:
            self.dropped = True
            CLIENTS_DROPPED.inc()
            self.close()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.close()

    def close(self) -> None:
        """End the stream (the client sees the end after what is already buffered)."""
        if self._subscribers.pop(id(self), None) is not None:
            CLIENTS.dec()
        self._send.close()

    def release(self) -> None:
        """Detach and discard whatever is buffered (the reader is done)."""
        self.close()
        self.receive.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

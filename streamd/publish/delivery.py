"""Waiting for Kafka's answers to a unit's deliveries (:func:`settle`), and small record helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from streamd.publish.encoding import Record
from streamd.publish.units import Delivery


async def settle(
    deliveries: Sequence[Delivery],
    deadline: float,
    *,
    quiet: float | None = None,
    last_ack: Callable[[], float] | None = None,
    sent: float = 0.0,
) -> tuple[str | None, list[tuple[Record, BaseException]]]:
    """Wait for every delivery until ``deadline``: the first retriable failure (or None), and
    the records refused for good with their error.

    The deadline is streamd's own: an idempotent aiokafka producer retries a batch forever while
    Kafka is down, so its futures alone would hold durable callers for the whole outage. With
    ``quiet`` (``kafka.spool_after``), waiting also ends once Kafka has acknowledged nothing at
    all (``last_ack()``, the time of the last acknowledgement of any delivery) for ``quiet``
    seconds since the later of that and ``sent``: Kafka has stopped acknowledging, so the caller
    spools at once, and every unit behind it that was sent before the silence began ends its wait
    at once too (not ``quiet`` each, one after the other); a Kafka that is merely busy
    (acknowledging other deliveries) gets until ``deadline``. A record delivered after its wait
    ended was spooled as well: a duplicate, never a loss.
    """
    retry: str | None = None
    rejected: list[tuple[Record, BaseException]] = []
    for future, records in deliveries:
        while not future.done():
            now = anyio.current_time()
            if now >= deadline:
                break
            until = deadline
            if quiet is not None and last_ack is not None:
                silent_until = max(last_ack(), sent) + quiet
                if now >= silent_until:
                    break  # nothing acknowledged for `quiet` seconds: Kafka stopped answering
                until = min(until, silent_until)
            with anyio.move_on_after(until - now):
                await asyncio.wait([future])  # never cancels the future itself
        if not future.done():
            future.add_done_callback(consume_late)
            retry = retry or "not acknowledged in time"
            continue
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or exc is None:
            if future.cancelled():
                retry = retry or "delivery cancelled"
            continue
        if getattr(exc, "retriable", True) or isinstance(exc, TimeoutError | OSError):
            retry = retry or f"{type(exc).__name__}: {exc}"
        else:
            rejected.extend((r, exc) for r in records)
    return retry, rejected


def source_of(record: Record) -> str:
    """The source name a record's ``ce_source`` header names."""
    return dict(record.headers).get("ce_source", b"streamd/unknown").decode().removeprefix("streamd/")


def consume_late(future: asyncio.Future[Any]) -> None:
    """Retrieve a late future's outcome (it was spooled already), so asyncio does not warn."""
    if not future.cancelled():
        future.exception()

"""SourceEmit: what a source's emit counts on the way into the pipeline."""

from __future__ import annotations

import anyio
import pytest

from streamd.events import DeadLetter, Event
from streamd.publish.pipeline import Batch, SourceEmit
from streamd.telemetry import EVENTS_DEADLETTERED, EVENTS_RECEIVED

pytestmark = pytest.mark.anyio


async def test_push_counts_received_and_dead_lettered_once() -> None:
    send, receive = anyio.create_memory_object_stream[Batch](10)
    emit = SourceEmit("src-a", send)
    letter = DeadLetter.of(source="src-a", stage="decode", error_type="malformed_json", error="x", raw=b"{")
    event = Event(topic="o2g.agent", type="o2g.agent.X", source="src-a", key="src-a:1", data={})
    dead_before = EVENTS_DEADLETTERED.labels("src-a", "decode", "malformed_json")._value.get()
    received_before = EVENTS_RECEIVED.labels("src-a", "o2g.agent")._value.get()
    await emit.push([event, letter.to_event(), event])
    async with receive:
        batch = receive.receive_nowait()
    await emit.aclose()
    assert len(batch.events) == 3
    assert batch.done is None
    assert EVENTS_DEADLETTERED.labels("src-a", "decode", "malformed_json")._value.get() - dead_before == 1
    assert EVENTS_RECEIVED.labels("src-a", "o2g.agent")._value.get() - received_before == 2

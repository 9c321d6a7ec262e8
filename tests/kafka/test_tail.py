"""``streamd tail`` against the embedded broker: what it prints, and its --key / --type filters."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime

import orjson
import pytest

from streamd.embedded import EmbeddedBroker
from streamd.errors import FatalError
from streamd.events import AgentState, Event, State
from streamd.tail import run_tail
from tests.harness import publishing

pytestmark = [pytest.mark.anyio, pytest.mark.kafka]

T0 = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)


def tail_args(bootstrap: str, topic: str, **kw: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "config": None,
        "from_beginning": True,
        "key": None,
        "ce_type": None,
        "limit": None,
        "timeout": 2.0,
    }
    return argparse.Namespace(topic=topic, bootstrap=bootstrap, **(defaults | kw))


def blocks(text: str) -> list[tuple[str, object]]:
    """(head line, parsed JSON body) per printed event."""
    out = []
    for block in text.strip().split("\n}\n"):
        head, _, body = block.partition("\n")
        out.append((head, orjson.loads(body + ("}" if not body.endswith("}") else ""))))
    return out


async def test_tail_prints_key_type_time_and_data_and_filters() -> None:
    events = [
        AgentState(vendor="sim", source="s1", agent_id=str(i), state=State.BUSY, since=T0).to_event()
        for i in range(3)
    ]
    events.append(
        Event(topic="agent-state", type="other.Type", source="s1", key="s1:9", data={"x": 1}, time=T0)
    )
    async with EmbeddedBroker() as bootstrap:
        async with publishing(bootstrap, source="s1") as emit:
            await emit(events)

        out = io.StringIO()
        assert await run_tail(tail_args(bootstrap, "agent-state", limit=4), out) == 4
        printed = blocks(out.getvalue())
        heads = sorted(head for head, _ in printed)
        assert heads[0].startswith("s1:0  streamd.agent.State  2026-01-01T08:00:00Z  (p")
        assert sorted(h.split()[0] for h in heads) == ["s1:0", "s1:1", "s1:2", "s1:9"]
        bodies = {head.split()[0]: body for head, body in printed}
        assert bodies["s1:1"] == {
            "vendor": "sim",
            "source": "s1",
            "agent_id": "1",
            "state": "busy",
            "agent_name": None,
            "vendor_state": None,
            "reason_code": None,
            "reason_label": None,
            "since": "2026-01-01T08:00:00Z",
            "queue_ids": [],
        }
        assert bodies["s1:9"] == {"x": 1}

        by_key = io.StringIO()
        assert (
            await run_tail(tail_args(bootstrap, "streamd.agent-state", key="s1:2", timeout=0.5), by_key) == 1
        )
        assert [h.split()[0] for h, _ in blocks(by_key.getvalue())] == ["s1:2"]

        by_type = io.StringIO()
        assert (
            await run_tail(tail_args(bootstrap, "agent-state", ce_type="other.Type", timeout=0.5), by_type)
            == 1
        )
        assert blocks(by_type.getvalue())[0][1] == {"x": 1}

        latest = io.StringIO()  # without --from-beginning only new events are shown
        assert (
            await run_tail(tail_args(bootstrap, "agent-state", from_beginning=False, timeout=0.3), latest)
            == 0
        )

        with pytest.raises(FatalError, match="does not exist"):
            await run_tail(tail_args(bootstrap, "nope", timeout=0.3), io.StringIO())

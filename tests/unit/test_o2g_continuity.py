"""The continuity decisions of an O2G source (:mod:`streamd.sources.o2g.continuity`), without I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamd.events import SourceGap, SourceStatus
from streamd.publish.encoding import dumps
from streamd.sources.o2g.continuity import O2GContinuity

pytestmark = pytest.mark.anyio


async def test_only_a_loss_after_streaming_is_a_gap_and_the_first_loss_wins() -> None:
    c = O2GContinuity("pbx1")
    c.lost("before the first subscription")  # nothing was streamed: nothing was missed
    assert c.gap() is None
    c.streaming()
    first = datetime(2024, 1, 1, tzinfo=UTC)
    c.lost("subscription gone: 404", first)
    c.lost("session lost: later")  # the same gap, still open
    gap = c.gap()
    assert gap is not None
    assert isinstance(gap.data, SourceGap)
    assert (gap.topic, gap.key, gap.type) == ("source-status", "pbx1", "streamd.source.Gap")
    assert (gap.data.from_, gap.data.reason) == (first, "subscription gone: 404")
    assert c.gap() is not None  # not confirmed durable yet: still owed
    c.gap_sent(gap)
    assert c.gap() is None  # published once
    assert b'"from":"2024-01-01T00:00:00Z"' in dumps(gap.data)  # the contract's field name


async def test_a_gap_whose_emit_failed_is_given_again_and_a_renamed_loss_outlives_its_confirmation() -> None:
    c = O2GContinuity("pbx1")
    c.streaming()
    since = datetime(2024, 1, 1, tzinfo=UTC)
    c.lost("session lost: 503", since)
    failed = c.gap()  # its emit raised: never confirmed
    assert failed is not None
    again = c.gap()
    assert again is not None
    assert (again.data.from_, again.data.reason) == (since, "session lost: 503")
    c.restarted("O2G restarted (startDate a -> b)")  # while the Gap was being published
    c.gap_sent(again)  # the published Gap did not name the restart: the loss stays
    renamed = c.gap()
    assert renamed is not None
    assert renamed.data.reason == "O2G restarted (startDate a -> b); session lost: 503"
    c.gap_sent(renamed)
    assert c.gap() is None


async def test_system_events_mark_nodes_stale_and_ask_for_a_resnapshot() -> None:
    c = O2GContinuity("pbx1")
    (down,) = c.react({"eventName": "OnCtiLinkDown", "nodeId": "2"})
    assert isinstance(down.data, SourceStatus)
    assert (down.data.scope, down.data.status) == ("node:2", "stale")
    assert c.stale == {"2"}
    assert not c.wanted().is_set()
    (up,) = c.react({"eventName": "OnCtiLinkUp", "nodeId": "2"})
    assert up.data.status == "live"
    assert c.stale == set()
    assert c.wanted().is_set()
    c.served()
    assert c.react({"eventName": "OnPbxLoaded", "nodeId": "2"}) == []
    assert c.wanted().is_set()
    c.served()
    assert c.react({"eventName": "OnLicenseExpiration", "message": "m", "nbDays": 5}) == []
    assert not c.wanted().is_set()

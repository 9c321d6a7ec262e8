"""Shared helpers for the Xima source tests (the source runs against the simulator on 127.0.0.1)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from streamd.events import Event
from streamd.publish.memory import MemoryEmit
from streamd.sim.xima import XimaSimulator
from streamd.sources.base import CursorStore, WebhookRegistry
from streamd.sources.xima.config import XimaSourceConfig
from streamd.sources.xima.models import METRIC_VALUE_TYPE
from streamd.sources.xima.source import XimaSource
from tests.helpers import source_deps


def make_source(
    sim: XimaSimulator,
    *,
    cursors: CursorStore | None = None,
    now: Callable[[], datetime] | None = None,
    delays: Callable[[], Iterator[float]] = lambda: itertools.repeat(0.0),
    webhooks: WebhookRegistry | None = None,
    failed_retry: float | None = None,
    **cfg: Any,
) -> XimaSource:
    """A source for ``sim`` with test-friendly timings (override any config field)."""
    fields: dict[str, Any] = {
        "kind": "xima",
        "name": "cr1",
        "url": sim.url,
        "api_key": sim.api_key,
        "interval": 0.2,
        "timeout": 2,
        "initializing_retry": 0.01,
        "ping_interval": 0.05,
        "ping_timeout": 0.2,
    }
    fields.update(cfg)
    config = XimaSourceConfig.model_validate(fields)
    deps = source_deps("cr1", cursors=cursors, delays=delays, webhooks=webhooks, failed_retry=failed_retry)
    extra: dict[str, Any] = {"now": now} if now is not None else {}
    return XimaSource(config, deps, **extra)


def values(emit: MemoryEmit) -> list[Event]:
    """The realtime metric value events emitted so far."""
    return emit.of_type(METRIC_VALUE_TYPE)

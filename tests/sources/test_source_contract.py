"""The contract every source keeps, checked the same way for each vendor against its
simulator: readiness is signalled, events flow, cancellation stops it promptly, and bad
credentials are fatal (one clear error) instead of being retried forever."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest
from pydantic import TypeAdapter

from streamd.config import SourceConfig
from streamd.errors import AuthError
from streamd.http.app import Webhooks
from streamd.publish.memory import MemoryEmit
from streamd.publish.spool import Spool
from streamd.runtime import Jobs
from streamd.sim import alvaria, calabrio, o2g, xima
from streamd.sources.base import SourceDeps
from streamd.telemetry import Component, ComponentState

pytestmark = pytest.mark.anyio

Demo = Callable[[int], AbstractAsyncContextManager[dict[str, Any]]]

# vendor -> (simulator hook yielding a source config, the config key whose wrong value is refused)
VENDORS: dict[str, tuple[Demo, str]] = {
    "o2g": (o2g.demo_source, "password"),
    "xima": (xima.demo_source, "api_key"),
    "alvaria": (alvaria.demo, "client_secret"),
    "calabrio": (calabrio.demo_source, "password"),
}

_ADAPTER: TypeAdapter[Any] = TypeAdapter(SourceConfig)


def _build(block: dict[str, Any]) -> tuple[Any, Component]:
    config = _ADAPTER.validate_python(block)
    jobs = Jobs.standalone(config.name)
    deps = SourceDeps(jobs, Spool(":memory:"), Webhooks())
    return config.build(deps), jobs.component


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_ready_events_and_prompt_cancellation(vendor: str) -> None:
    demo, _ = VENDORS[vendor]
    async with demo(3) as block:
        source, component = _build(block)
        emit = MemoryEmit()
        async with anyio.create_task_group() as tg:
            with anyio.fail_after(10):
                await tg.start(source.run, emit)
            assert component.state is ComponentState.RUNNING
            await emit.wait_for(1, timeout=10)
            cancelled_at = anyio.current_time()
            tg.cancel_scope.cancel()
        # Shielded clean-up (unsubscribe, logout) is bounded: well under the shutdown grace.
        assert anyio.current_time() - cancelled_at < 2.5
    assert all(e.source == block["name"] and e.key for e in emit.events)
    assert any(e.topic.startswith(f"{vendor}.") for e in emit.events)


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_bad_credentials_are_fatal(vendor: str) -> None:
    demo, secret_key = VENDORS[vendor]
    async with demo(2) as block:
        source, component = _build({**block, secret_key: "definitely-wrong"})
        with anyio.fail_after(10), pytest.RaisesGroup(AuthError, flatten_subgroups=True) as info:
            async with anyio.create_task_group() as tg:
                await tg.start(source.run, MemoryEmit())
    assert component.state is ComponentState.FAILED
    [error] = info.value.exceptions
    assert str(error)
    assert "definitely-wrong" not in str(error)

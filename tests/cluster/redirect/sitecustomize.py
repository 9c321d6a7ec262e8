"""Loaded by the replica processes of tests/cluster only (``PYTHONPATH``): connections to the port
in ``STREAMD_TEST_REDIRECT`` (``from:to``) go to ``to`` instead, so one replica reaches the shared
broker through its own :class:`~tests.faults.proxy.FaultProxy` while the others reach it directly
(a partition of that replica alone)."""

import asyncio.base_events
import os

_spec = os.environ.get("STREAMD_TEST_REDIRECT", "")
if _spec:
    _from, _to = (int(p) for p in _spec.split(":"))
    _original = asyncio.base_events.BaseEventLoop.create_connection

    async def _create_connection(self, protocol_factory, host=None, port=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        if port == _from:
            port = _to
        return await _original(self, protocol_factory, host, port, *args, **kwargs)

    asyncio.base_events.BaseEventLoop.create_connection = _create_connection  # type: ignore[method-assign]

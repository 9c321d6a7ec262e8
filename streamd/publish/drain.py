"""The drain loop: send spooled records to Kafka, oldest first, whenever the spool holds any.

Rules (see :mod:`streamd.publish.pipeline` for the whole pipeline):

1. The drain is a supervised job: an attempt Kafka does not take is retried every second.
2. Spooled rows are deleted only once Kafka acknowledged them (records refused for good become
   dead letters first); an empty spool is compacted to give the disk back.
3. Once the spool is empty the outage is over: logged once, the component is running again.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter

import anyio

from streamd import telemetry as t
from streamd.errors import PublishError
from streamd.publish.delivery import Delivering, settle, source_of
from streamd.runtime import Connected, Job, Policy, run_job
from streamd.telemetry import ComponentState

log = logging.getLogger("streamd.pipeline")


class Draining(Delivering):
    """The drain loop (rules above)."""

    async def _drain(self, scope: anyio.CancelScope, retry_every: float = 1.0) -> None:
        """The drain as a supervised job: an attempt Kafka does not take is retried every second."""
        job = Job("drain", self._drain_session, stage=None, delays=lambda: itertools.repeat(retry_every))
        with scope:
            await run_job(job, policy=Policy(), owner="spool")

    async def _drain_session(self, connected: Connected) -> None:
        """Send spooled records (oldest first) whenever the spool holds any; raise when Kafka did
        not take them (the supervisor tries again)."""
        while True:
            if not self.spool.count:
                await self._spool_wakeup.wait()
                self._spool_wakeup = anyio.Event()
                continue
            try:
                drained = await self.drain_once()
            except PublishError as exc:  # the spool database failed: try again, never crash
                log.error("outage spool: %s", exc)
                t.count_error("spool", "publish", "spool_failed")
                raise
            if not drained:
                raise PublishError("spooled events not acknowledged by Kafka yet")
            connected()

    async def drain_once(self, limit: int = 500) -> bool:
        """Send the oldest spooled records; True when none is left to retry among them."""
        rows = await self.spool.run(self.spool.peek, limit)
        if not rows:
            await self.spool.run(self.spool.recount)
            return True
        records = [r for _, r in rows]
        deadline = anyio.current_time() + self.delivery_timeout
        deliveries = await self._send_records(records)
        if deliveries is None:
            return False
        retry, rejected = await settle(deliveries, deadline)
        if retry is not None:
            return False
        await self._reject(rejected)
        await self.spool.run(self.spool.delete_through, rows[-1][0], records)
        self._spool_has_room()
        refused = {id(r) for r, _ in rejected}
        for (source, topic), n in Counter(
            (source_of(r), r.topic.removeprefix(self.prefix)) for r in records if id(r) not in refused
        ).items():
            t.EVENTS_PUBLISHED.labels(source, topic).inc(n)
        t.SPOOL_DEPTH.set(self.spool.count)
        if not self.spool.count:
            await self.spool.run(self.spool.compact)  # give the disk back
        t.SPOOL_BYTES.set(await self.spool.run(self.spool.disk_bytes))  # the lock: off the loop
        if not self.spool.count:
            self._outage_logged = False
            if self.component is not None:
                self.component.set(ComponentState.RUNNING)  # logs the recovery once
            else:
                log.info("outage spool drained; publishing directly again")
        return True

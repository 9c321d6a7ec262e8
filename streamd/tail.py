"""``streamd tail TOPIC``: pretty-print what streamd publishes, for operators.

One block per event: key, ce_type, ce_time, snapshot flag and the JSON value, filtered by
``--key`` and ``--type``. Reads every partition without joining a consumer group, so tailing never
disturbs a real consumer group.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import anyio
import anyio.lowlevel
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamd.config import KafkaConfig, load_config
from streamd.errors import FatalError
from streamd.publish.encoding import header_dict
from streamd.publish.kafka import client_kwargs


def format_event(key: bytes | None, value: bytes | None, headers: Any, partition: int, offset: int) -> str:
    """Render one record for humans."""
    h = header_dict(headers)
    try:
        body = orjson.dumps(orjson.loads(value or b"null"), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        body = (value or b"").decode("utf-8", "replace")
    snap = "  [snapshot]" if h.get("streamd_snapshot") == "true" else ""
    head = (
        f"{(key or b'').decode('utf-8', 'replace')}  {h.get('ce_type', '?')}  {h.get('ce_time', '?')}{snap}"
    )
    return f"{head}  (p{partition}@{offset})\n{body}\n"


def matches(args: argparse.Namespace, key: bytes | None, headers: Any) -> bool:
    """Apply ``--key`` / ``--type`` filters."""
    if args.key is not None and (key or b"").decode("utf-8", "replace") != args.key:
        return False
    return not (args.ce_type is not None and header_dict(headers).get("ce_type") != args.ce_type)


async def run_tail(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Consume ``args.topic`` and print matching events until interrupted (or limits hit) to
    ``out`` (default: ``sys.stdout`` as it is when called, not when this module was imported)."""
    out = out if out is not None else sys.stdout
    kafka = load_config(args.config).kafka if args.config else KafkaConfig()
    bootstrap = args.bootstrap or kafka.bootstrap_servers
    if bootstrap == "embedded":
        raise FatalError("tail needs --bootstrap host:port (the embedded broker lives inside its daemon)")
    topic = args.topic if args.topic.startswith(kafka.topic_prefix) else kafka.topic_prefix + args.topic
    consumer = AIOKafkaConsumer(**client_kwargs(kafka, bootstrap), enable_auto_commit=False)
    await consumer.start()
    printed = 0
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise FatalError(f"topic {topic} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if args.from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        while args.limit is None or printed < args.limit:
            with anyio.move_on_after(args.timeout if args.timeout else float("inf")) as idle:
                batch = await consumer.getmany(timeout_ms=500)
                while not batch:
                    batch = await consumer.getmany(timeout_ms=500)
            if idle.cancelled_caught:
                break
            records = [(tp, m) for tp, messages in batch.items() for m in messages]
            for tp, m in records:
                if args.limit is not None and printed >= args.limit:
                    break
                if matches(args, m.key, m.headers):
                    out.write(format_event(m.key, m.value, m.headers, tp.partition, m.offset))
                    out.flush()
                    printed += 1
    finally:
        # let aiokafka's no-group task start first, or stop() raises CancelledError
        await anyio.lowlevel.checkpoint()
        await consumer.stop()
    return printed

"""The figures topic's contract (docs/worker.md): interval and live rows as its records, the interval
report read back from the compacted topic (the latest row per key, in report order, comparable line for
line with `callwatch replay`), and the end-of-stream marker that lets a finite stream's last windows close."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Iterator

from streams.domain.events import format_ts, parse_ts
from streams.domain.interval_report import ReportRow
from streams.domain.live import BoardSnapshot
from streams.io.codec import encode
from streams.settings import Settings

from .clients import aiokafka_options

LIVE_KEY_PREFIX = "live|"  # live rows' keys on the figures topic (docs/worker.md)
CONTROL_HEADER = "callwatch-control"  # a control message on the events topic, not an event
END_OF_STREAM = b"end-of-stream"


def row_key(row: ReportRow) -> bytes:
    """Key of an interval row: "window_start|site|line|queue" (its value: the report row as JSON)."""
    return f"{row.window_start}|{row.site}|{row.line}|{row.queue}".encode()


def live_rows(snapshot: BoardSnapshot) -> Iterator[tuple[bytes, bytes]]:
    """The board as records: one per rolling window (and today) and group."""
    for window, by_group in snapshot.figures.items():
        for group, figures in by_group.items():
            row = {"window": window, "site": group[0], "line": group[1], "queue": group[2],
                   "at_ms": snapshot.now_ms, **figures}
            yield f"{LIVE_KEY_PREFIX}{window}|{'|'.join(group)}".encode(), encode(row).encode()


def read_interval_report(settings: Settings, topic: str | None = None, timeout_s: float = 60.0
                         ) -> list[dict[str, Any]]:
    """Every interval row on the figures topic as it is now, the latest per key, ordered by
    window_start, site, line, queue (as the report is)."""
    return asyncio.run(_read_rows(settings, topic or settings.kafka.topic("figures"), timeout_s))


async def _read_rows(settings: Settings, topic: str, timeout_s: float) -> list[dict[str, Any]]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**aiokafka_options(settings.kafka, "callwatch-figures-reader"), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    latest: dict[bytes, bytes | None] = {}
    try:
        numbers = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic)  # noqa: SLF001
        if not numbers:
            raise LookupError(f"topic {topic} does not exist")
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        async with asyncio.timeout(timeout_s):
            for tp in partitions:
                while await consumer.position(tp) < ends[tp]:
                    for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                        if record.offset < ends[tp] and record.key is not None:
                            latest[record.key] = record.value
    finally:
        await consumer.stop()
    rows = [json.loads(value) for key, value in latest.items()
            if value is not None and not key.startswith(LIVE_KEY_PREFIX.encode())]
    return sorted(rows, key=lambda row: (parse_ts(row["window_start"]), row["site"], row["line"], row["queue"]))


def send_end_of_stream(settings: Settings, at_ms: int, topic: str | None = None) -> int:
    """Tell every partition of the events topic that the stream ends at `at_ms` (the time of its last
    event): the worker then processes what it holds and closes every window, as a replay does at the
    end of its input. Returns the number of partitions told."""
    return asyncio.run(_send_end(settings, topic or settings.kafka.topic("events"), at_ms))


async def _send_end(settings: Settings, topic: str, at_ms: int) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**aiokafka_options(settings.kafka, "callwatch-end-of-stream"), acks="all",
                                enable_idempotence=True)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(topic))
        value = json.dumps({"at": format_ts(at_ms)}).encode()
        for partition in partitions:
            await producer.send_and_wait(topic, value, key=b"callwatch-control", partition=partition,
                                         headers=[(CONTROL_HEADER, END_OF_STREAM)])
    finally:
        await producer.stop()
    return len(partitions)

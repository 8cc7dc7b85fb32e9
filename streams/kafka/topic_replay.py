"""`callwatch replay --from-kafka`: the events of the call-events topic whose event time is in
[start, end), read from every partition and merged into one deterministic stream.

The connector stamps each message with its event time, so Kafka's time index finds, per partition,
the first message at or after `start` (every message before it is earlier; see docs/kafka.md).
Each partition is read up to its end offset as it was when the replay began, so the replay ends
even while connectors keep writing. Partitions are merged by (event time, partition, offset), a
k-way merge holding at most one batch per partition: an event then comes no later, relative to the
events before it, than it did in its own partition, so the allowed lateness holds as it held there."""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Generator, Iterator

from streams.domain.events import CallEvent, InvalidEvent, parse_event
from streams.io.codec import decode
from streams.io.event_lines import Rejection
from streams.settings import Settings

from . import KafkaUnavailable
from .clients import open_metadata_client, require_topics

log = logging.getLogger("callwatch.replay")

# Messages with this header are markers for the worker (streams.worker.partition), not events.
CONTROL_HEADER = "callwatch-control"

Item = CallEvent | Rejection
_Keyed = tuple[tuple[int, int, int], Item]


@dataclass(frozen=True, slots=True)
class ReadLimits:
    batch: int = 2000  # records taken from a partition at a time
    connect_wait_s: float = 15.0
    idle_timeout_s: float = 60.0  # no record from a partition that still has some: the broker is gone


@dataclass(frozen=True, slots=True)
class PartitionRange:
    partition: int
    first: int  # offset of the first message at or after start
    end: int  # end offset when the replay began (exclusive)


def read_topic_events(settings: Settings, start_ms: int, end_ms: int, topic: str | None = None,
                      limits: ReadLimits = ReadLimits()) -> Iterator[Item]:
    """Connects and plans the read at once (so a missing broker or topic is reported before any
    output), then yields events lazily. Values that are not events come out as Rejections."""
    name = topic or settings.kafka.topic("events")
    client = open_metadata_client(settings.kafka, "callwatch-replay", limits.connect_wait_s)
    try:
        ranges = plan_read(client, name, start_ms, settings.kafka.bootstrap_servers)
    finally:
        client.close()

    def open_consumer() -> Any:
        # CRC checks off: kafka-python computes CRC-32C in pure Python (about 70 us a record, more than
        # the whole domain costs) unless the optional `crc32c` package is installed; the broker
        # checked each batch on write, and a damaged value fails JSON or schema validation here.
        # Short retry backoff: a fresh consumer otherwise idles 100 ms before its first fetch.
        return open_metadata_client(settings.kafka, "callwatch-replay", limits.connect_wait_s,
                                    check_crcs=_has_fast_crc(), retry_backoff_ms=20)

    return _merged(open_consumer, name, ranges, start_ms, end_ms, limits)


def _has_fast_crc() -> bool:
    from kafka.record import util

    return getattr(util, "crc32c_c", None) is not None


def plan_read(consumer: Any, topic: str, start_ms: int, bootstrap: str) -> list[PartitionRange]:
    """Per partition: where the first message at or after `start_ms` is, and where the log ends now."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    partitions = sorted(require_topics(consumer, [topic], bootstrap)[topic])
    tps = [TopicPartition(topic, p) for p in partitions]
    try:
        beginnings = consumer.beginning_offsets(tps)
        ends = consumer.end_offsets(tps)
        found = consumer.offsets_for_times({tp: start_ms for tp in tps})
    except KafkaError as error:
        raise KafkaUnavailable(f"cannot read the offsets of {topic} at {bootstrap} ({type(error).__name__})") from None
    ranges = []
    for tp in tps:
        at = found.get(tp)
        first = ends[tp] if at is None else min(at.offset, ends[tp])
        if beginnings[tp] > 0 and first == beginnings[tp]:
            # Retention counts from the message timestamp, i.e. the event time: history ages out.
            log.warning("%s partition %d: its first %d messages were deleted (retention); events of the range "
                        "may be missing", topic, tp.partition, beginnings[tp])
        ranges.append(PartitionRange(tp.partition, first, ends[tp]))
    return ranges


def _merged(open_consumer: Callable[[], Any], topic: str, ranges: list[PartitionRange], start_ms: int,
            end_ms: int, limits: ReadLimits) -> Iterator[Item]:
    feeds = [_in_range(_partition_records(open_consumer, topic, r, limits), topic, r.partition, start_ms, end_ms)
             for r in ranges if r.first < r.end]
    try:
        for _key, item in heapq.merge(*feeds, key=lambda keyed: keyed[0]):
            yield item
    finally:
        for feed in feeds:
            feed.close()


def _partition_records(open_consumer: Callable[[], Any], topic: str, part: PartitionRange,
                       limits: ReadLimits) -> Generator[Any, None, None]:
    """One partition from its first offset to its end offset, a batch at a time, through a consumer
    of its own: memory stays at about a batch (plus one fetch) per partition. (One consumer for all
    partitions would need pause/resume, which loses parked records in kafka-python 3.0.12.)"""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    tp = TopicPartition(topic, part.partition)
    consumer = open_consumer()
    try:
        consumer.assign([tp])
        consumer.seek(tp, part.first)
        position = part.first
        deadline = time.monotonic() + limits.idle_timeout_s
        while position < part.end:
            try:
                records = consumer.poll(timeout_ms=500, max_records=limits.batch).get(tp, [])
                if not records:
                    position = consumer.position(tp)  # past gaps: compaction, transaction markers
            except KafkaError as error:
                raise KafkaUnavailable(f"reading {topic} partition {part.partition} failed "
                                       f"({type(error).__name__}: {error})") from None
            if records:
                for record in records:
                    if record.offset >= part.end:
                        return
                    yield record
                position = records[-1].offset + 1
                deadline = time.monotonic() + limits.idle_timeout_s
            elif time.monotonic() > deadline:
                raise KafkaUnavailable(f"no data from {topic} partition {part.partition} for {limits.idle_timeout_s:g} s "
                                       f"(at offset {position} of {part.end}); is the broker up?")
    finally:
        consumer.close()


def _in_range(records: Generator[Any, None, None], topic: str, partition: int, start_ms: int, end_ms: int
              ) -> Generator[_Keyed, None, None]:
    """One partition's events in [start, end), in log order, keyed for the merge. Control messages
    (the worker's end-of-stream markers) are not events and are skipped."""
    origin = f"{topic}/{partition}"
    try:
        for record in records:
            if any(name == CONTROL_HEADER for name, _ in record.headers or ()):
                continue
            item = decode_record(record.value, origin, record.offset)
            at = item.occurred_ms if type(item) is CallEvent else record.timestamp
            if start_ms <= at < end_ms:
                yield (at, partition, record.offset), item
    finally:
        records.close()  # its consumer with it


def decode_record(value: bytes | None, origin: str, offset: int) -> Item:
    """A message value as an event, or a Rejection saying why not (shown as topic/partition:offset)."""
    if value is None:
        return Rejection(origin, offset, "empty message (no value)", "")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejection(origin, offset, f"not UTF-8: {error.reason} at byte {error.start}",
                         value.decode("utf-8", "replace"))
    try:
        return parse_event(decode(text))
    except InvalidEvent as error:
        return Rejection(origin, offset, f"invalid {error}", text)
    except (ValueError, RecursionError) as error:
        return Rejection(origin, offset, f"not JSON: {str(error).splitlines()[0]}", text)

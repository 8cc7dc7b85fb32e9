"""The worker's Kafka connections (aiokafka, as Faust uses): client options and Faust credentials
from the settings, the topics it needs (checked, and its own internal ones created), and its two
state stores: the checkpoints, a compacted topic keyed by events partition whose last record per
partition is that partition's latest checkpoint, and the call table, a compacted topic keyed by call
(streams/worker/call_table.py)."""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from streams.options import UsageError
from streams.settings import KafkaSettings

log = logging.getLogger("callwatch.worker")

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
CHECKPOINT_MAX_BYTES = 64 * 1024 * 1024  # one partition's state; compressed, usually a few kB


class WorkerKafkaError(UsageError):
    """Kafka cannot be used as configured (one line; the command exits with status 2)."""


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """aiokafka options shared by the worker's consumer, producer and admin client."""
    protocol = kafka.security_protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise WorkerKafkaError(f"kafka.security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                               f"not {kafka.security_protocol!r}")
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_servers.split(","),
                               "security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options.update(sasl_mechanism=(kafka.sasl_mechanism or "PLAIN").upper(),
                       sasl_plain_username=kafka.sasl_username, sasl_plain_password=kafka.sasl_password)
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(cafile=kafka.ssl_cafile, certfile=kafka.ssl_certfile,
                                                    keyfile=kafka.ssl_keyfile)
    return options


def faust_broker(kafka: KafkaSettings) -> tuple[list[str], Any]:
    """Faust's broker URLs and credentials for the same settings."""
    import faust

    urls = [f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",") if server.strip()]
    options = client_options(kafka)
    protocol = options["security_protocol"]
    credentials: Any = None
    if protocol.startswith("SASL_"):
        credentials = faust.SASLCredentials(username=kafka.sasl_username, password=kafka.sasl_password,
                                            ssl_context=options.get("ssl_context"),
                                            mechanism=options["sasl_mechanism"])
    elif protocol == "SSL":
        credentials = faust.SSLCredentials(options["ssl_context"])
    return urls, credentials


@dataclass(frozen=True, slots=True)
class Topology:
    """The topics the worker uses and their partition counts, read from the cluster at start."""

    events: str
    outcomes: str
    figures: str
    deadletter: str
    checkpoints: str
    call_table: str
    events_partitions: int
    outcomes_partitions: int


async def discover(kafka: KafkaSettings, app_id: str, connect_timeout_s: float = 15.0) -> Topology:
    """Check that the pipeline's topics exist (created explicitly, see deploy/kafka/topics.py) and
    create the worker's own topics if needed (checkpoints and call table), with as many partitions
    as the events topic: partition p of each holds the state of events partition p."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    names = {name: kafka.topic(name) for name in ("events", "outcomes", "figures", "deadletter")}
    checkpoints = f"{app_id}-tracker-checkpoints"
    call_table = f"{app_id}-call-legs"
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=int(connect_timeout_s * 1000))
    try:
        try:
            await admin.start()
            described = await admin.describe_topics([*names.values(), checkpoints, call_table])
        except KafkaError as error:
            raise WorkerKafkaError(f"no Kafka broker answered at {kafka.bootstrap_servers} "
                                   f"({type(error).__name__}); is it running (deploy/kafka/start.sh)?") from None
        partitions = {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}
        for name in names.values():
            if not partitions.get(name):
                raise WorkerKafkaError(f"topic {name} does not exist at {kafka.bootstrap_servers}: create the "
                                       "topics with deploy/kafka/topics.sh (same topic prefix)")
        events_partitions = partitions[names["events"]]
        events_info = next(t for t in described if t["topic"] == names["events"])
        replicas = max(1, len(events_info["partitions"][0].get("replicas") or ()))  # as the events have
        for internal in (checkpoints, call_table):
            if internal not in partitions:
                await _create_compacted_topic(admin, NewTopic, internal, events_partitions, replicas)
            elif partitions[internal] != events_partitions:
                raise WorkerKafkaError(f"{internal} has {partitions[internal]} partitions but {names['events']} "
                                       f"has {events_partitions}: the events topic changed; start with a new --app-id")
    finally:
        await admin.close()
    return Topology(names["events"], names["outcomes"], names["figures"], names["deadletter"], checkpoints,
                    call_table, events_partitions, partitions[names["outcomes"]])


async def keep_metadata_for(client: Any, topics: list[str]) -> None:
    """Make an aiokafka client (the producer's) refresh the metadata of these topics from now on.

    aiokafka 0.14 refreshes the metadata of the topics it tracks, or of all topics while it tracks
    none. A send to a topic it learnt of from such a full refresh does not track that topic, and
    the next refresh (once it tracks another, e.g. after a first send to a Faust changelog) forgets
    the topic's leaders. A batch already queued for it then waits for a leader forever, and a send
    behind it for room in that batch: the worker stopped reading, silently, in about one CI run in
    ten (tests/integration/test_worker_metadata.py shows it on the real broker)."""
    waits = [client.add_topic(topic) for topic in topics]
    for wait in waits:
        await wait


async def _create_compacted_topic(admin: Any, new_topic: Any, name: str, partitions: int, replicas: int) -> None:
    from aiokafka.errors import TopicAlreadyExistsError

    configs = {"cleanup.policy": "compact", "max.message.bytes": str(CHECKPOINT_MAX_BYTES),
               # Only the latest record of a key matters, and a restore reads the whole partition:
               # let the cleaner drop the rest soon.
               "segment.ms": str(5 * 60 * 1000), "min.cleanable.dirty.ratio": "0.1",
               "delete.retention.ms": str(60 * 60 * 1000)}
    try:
        response = await admin.create_topics([new_topic(name, partitions, replicas, topic_configs=configs)])
    except TopicAlreadyExistsError:
        return
    for topic_name, code, *_rest in getattr(response, "topic_errors", []) or getattr(response, "topics", []):
        if code not in (0, 36):  # 36: created meanwhile by another worker
            raise WorkerKafkaError(f"cannot create {topic_name} (Kafka error {code})")
    log.info("created topic %s (%d partitions, compacted)", name, partitions)


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(state, separators=(",", ":")).encode("utf-8"), 1)


def decode_checkpoint(value: bytes) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(zlib.decompress(value))
    return state


async def _read_records(kafka: KafkaSettings, topic: str, partition: int, start: int | None = None,
                        end: int | None = None, timeout_s: float = 60.0) -> list[Any]:
    """The records at offsets [start, end) of one partition, in order. `start` None: the oldest the
    partition has; negative: that many offsets before the end. `end` None: the partition's end now."""
    import asyncio

    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(**client_options(kafka), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=CHECKPOINT_MAX_BYTES,
                                fetch_max_bytes=CHECKPOINT_MAX_BYTES)
    await consumer.start()
    try:
        consumer.assign([tp])
        first = (await consumer.beginning_offsets([tp]))[tp]
        if end is None:
            end = (await consumer.end_offsets([tp]))[tp]
        if start is None:
            start = first
        elif start < 0:
            start = max(first, end + start)
        if end <= start:
            return []
        # An explicit position: seek_to_beginning only asks for a reset, which can race with the
        # reset to "latest" that assign() started (seen on aiokafka 0.14: the read began at the end).
        consumer.seek(tp, start)
        records: list[Any] = []
        async with asyncio.timeout(timeout_s):
            while await consumer.position(tp) < end:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if start <= record.offset < end:
                        records.append(record)
        return records
    finally:
        await consumer.stop()


async def load_checkpoint(kafka: KafkaSettings, topic: str, partition: int) -> dict[str, Any] | None:
    """The latest checkpoint of one events partition: the last record of its checkpoint partition
    (compaction keeps the last record of a key, and each partition has one key)."""
    records = await _read_records(kafka, topic, partition, start=-1, timeout_s=30.0)
    latest = records[-1].value if records else None
    return None if latest is None else decode_checkpoint(latest)


async def load_call_table(kafka: KafkaSettings, topic: str, partition: int) -> dict[str, bytes | None]:
    """The latest record of every call in one partition of the call table (tombstones as None):
    the whole partition is read, which compaction keeps close to the calls in play."""
    from .call_table import latest_by_call

    records = await _read_records(kafka, topic, partition, timeout_s=120.0)
    return latest_by_call((record.key, record.value) for record in records)


async def read_range(kafka: KafkaSettings, topic: str, partition: int, start: int, end: int) -> list[bytes | None]:
    """The values of the records at offsets [start, end) of one partition, in order."""
    return [record.value for record in await _read_records(kafka, topic, partition, start, end)]


SendFn = Callable[..., Awaitable[Any]]


async def topic_partitions(kafka: KafkaSettings, topic: str) -> list[int]:
    """The partition numbers of a topic (LookupError if it does not exist)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] or not described["partitions"]:
        raise LookupError(f"topic {topic} does not exist")
    return sorted(p["partition"] for p in described["partitions"])

"""The worker's topics: the pipeline's own (checked), and its internal ones, created by the worker
itself before anything starts (every worker does it the same way, so workers started together never
race): the repartition topic, where events of a site read from another partition are forwarded, and
the checkpoints, a compacted topic whose last record in partition p is events partition p's state.
Client options come from streams/kafka/clients.py (the one module for them)."""

from __future__ import annotations

import asyncio
import logging
import pickle
import zlib
from dataclasses import dataclass
from typing import Any

from streams.domain.state import IncompatibleState, load_saved
from streams.kafka.clients import aiokafka_options
from streams.options import UsageError
from streams.settings import KafkaSettings

log = logging.getLogger("callwatch.worker")

CHECKPOINT_MAX_BYTES = 64 * 1024 * 1024  # one partition's state; compressed, usually well under 1 MB


class WorkerKafkaError(UsageError):
    """Kafka cannot be used as configured (one line; the command exits with status 2)."""


def faust_broker(kafka: KafkaSettings) -> tuple[list[str], Any]:
    """Faust's broker URLs and credentials for the same settings."""
    import faust

    options = aiokafka_options(kafka, "callwatch-worker")
    urls = [f"kafka://{server}" for server in options["bootstrap_servers"]]
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
    """The topics the worker uses, read from the cluster at start."""

    events: str
    figures: str
    deadletter: str
    repartition: str
    checkpoints: str
    partitions: int  # of the events topic, and of the repartition and checkpoint topics
    marks: str = ""  # the changelog of the board's marks table


async def discover(kafka: KafkaSettings, app_id: str, connect_timeout_s: float = 15.0) -> Topology:
    """Check the pipeline's topics (deploy/kafka/topics.py creates them) and create the internal ones
    if needed, with as many partitions as the events topic; return once all of them have leaders."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    names = {name: kafka.topic(name) for name in ("events", "figures", "deadletter")}
    internal = {"repartition": f"{app_id}-events-by-site", "checkpoints": f"{app_id}-checkpoints",
                "marks": f"{app_id}-board-marks-changelog"}  # Faust's name for the table's changelog
    admin = AIOKafkaAdminClient(**aiokafka_options(kafka, f"{app_id}-admin"),
                                request_timeout_ms=int(connect_timeout_s * 1000))
    try:
        try:
            await admin.start()
            described = await admin.describe_topics([*names.values(), *internal.values()])
        except KafkaError as error:
            raise WorkerKafkaError(f"no Kafka broker answered at {kafka.bootstrap_servers} "
                                   f"({type(error).__name__}); is it running (deploy/kafka/start.sh)?") from None
        partitions = {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}
        for name in names.values():
            if not partitions.get(name):
                raise WorkerKafkaError(f"topic {name} does not exist at {kafka.bootstrap_servers}: create the "
                                       "topics with deploy/kafka/topics.sh (same topic prefix)")
        count = partitions[names["events"]]
        events_info = next(t for t in described if t["topic"] == names["events"])
        replicas = max(1, len(events_info["partitions"][0].get("replicas") or ()))  # as the events have
        for role, name in internal.items():
            wanted = 1 if role == "marks" else count
            if name not in partitions:
                await _create_topic(admin, name, wanted, replicas, compacted=role != "repartition")
            elif partitions[name] != wanted:
                raise WorkerKafkaError(f"{name} has {partitions[name]} partitions but {names['events']} has "
                                       f"{count}: the events topic changed; start with a new --app-id")
        await _wait_for_leaders(admin, [internal["repartition"], internal["checkpoints"]], count, connect_timeout_s)
        await _wait_for_leaders(admin, [internal["marks"]], 1, connect_timeout_s)
    finally:
        await admin.close()
    return Topology(names["events"], names["figures"], names["deadletter"], internal["repartition"],
                    internal["checkpoints"], count, internal["marks"])


async def _create_topic(admin: Any, name: str, partitions: int, replicas: int, compacted: bool) -> None:
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    if compacted:  # only the latest record of a key matters: let the cleaner drop the rest soon
        configs = {"cleanup.policy": "compact", "max.message.bytes": str(CHECKPOINT_MAX_BYTES),
                   "segment.ms": str(5 * 60 * 1000), "min.cleanable.dirty.ratio": "0.1"}
    else:  # a forwarded event is read within seconds; a week covers a worker down for days
        configs = {"retention.ms": str(7 * 86_400_000)}
    try:
        response = await admin.create_topics([NewTopic(name, partitions, replicas, topic_configs=configs)])
    except TopicAlreadyExistsError:
        return
    for topic_name, code, *_rest in getattr(response, "topic_errors", []) or getattr(response, "topics", []):
        if code not in (0, 36):  # 36: created meanwhile by another worker
            raise WorkerKafkaError(f"cannot create {topic_name} (Kafka error {code})")
    log.info("created topic %s (%d partitions)", name, partitions)


async def _wait_for_leaders(admin: Any, topics: list[str], partitions: int, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            described = await admin.describe_topics(topics)
            if all(not t["error_code"] and len(t["partitions"]) == partitions
                   and all(p["leader"] >= 0 for p in t["partitions"]) for t in described):
                return
            await asyncio.sleep(0.1)


async def keep_metadata_for(client: Any, topics: list[str]) -> None:
    """Make an aiokafka client (the producer's) refresh the metadata of these topics from now on.

    aiokafka 0.14 refreshes the metadata of the topics it tracks, or of all topics while it tracks
    none. A send to a topic it learnt of from such a full refresh does not track that topic, and the
    next refresh forgets the topic's leaders: a batch queued for it then waits for a leader forever
    (tests/integration/test_worker_metadata.py shows it on the real broker)."""
    for wait in [client.add_topic(topic) for topic in topics]:
        await wait


def encode_checkpoint(state: dict[str, Any]) -> bytes:
    return zlib.compress(pickle.dumps(state, protocol=5), 1)


def decode_checkpoint(value: bytes) -> dict[str, Any]:
    """A checkpoint record; ValueError when it is not one (corrupt, or written by something else).
    Loaded naming only the domain's classes and plain values (streams/domain/state.py)."""
    try:
        state = load_saved(zlib.decompress(value))
    except (zlib.error, IncompatibleState) as error:
        raise ValueError(f"not a checkpoint ({error})") from None
    if not isinstance(state, dict):
        raise ValueError("not a checkpoint (not an object)")
    return state


async def read_last(kafka: KafkaSettings, topic: str, partition: int, timeout_s: float = 30.0) -> bytes | None:
    """The value of the last record of one partition (None if it has none)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(**aiokafka_options(kafka, "callwatch-worker-restore"), group_id=None,
                                enable_auto_commit=False, max_partition_fetch_bytes=CHECKPOINT_MAX_BYTES,
                                fetch_max_bytes=CHECKPOINT_MAX_BYTES)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        first = (await consumer.beginning_offsets([tp]))[tp]
        if end <= first:
            return None
        consumer.seek(tp, end - 1)  # explicit: a reset request could race the one assign() started
        async with asyncio.timeout(timeout_s):
            while True:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset == end - 1:
                        return record.value  # type: ignore[no-any-return]
    finally:
        await consumer.stop()

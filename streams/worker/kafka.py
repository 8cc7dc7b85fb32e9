"""The worker's topics: the pipeline's own, checked, and its internal ones, created by every worker the
same way before anything starts (workers started together never race)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from streams.kafka.clients import aiokafka_options
from streams.kafka import KafkaEdgeError, KafkaUnavailable, TopicMissing
from streams.settings import KafkaSettings

CHECKPOINT_MAX_BYTES = 64 * 1024 * 1024  # one partition's state; compressed, usually well under 1 MB
CHECKPOINTS_TABLE = "checkpoints"  # Faust GlobalTable: events partition -> its last checkpoint
MARKS_TABLE = "board-marks"  # Faust GlobalTable: the wallboard's callback marks
# The tables' changelogs: only a key's latest record matters, so small segments let the cleaner drop the
# rest soon and a starting worker's recovery reads little more than one record a key.
COMPACTED = {"cleanup.policy": "compact", "max.message.bytes": str(CHECKPOINT_MAX_BYTES), "segment.ms": "60000",
             "segment.bytes": str(CHECKPOINT_MAX_BYTES), "min.cleanable.dirty.ratio": "0.1"}
FORWARDED = {"retention.ms": str(7 * 86_400_000)}  # read within seconds; a week covers a worker down for days


@dataclass(frozen=True, slots=True)
class Topology:  # the topics the worker uses, read from the cluster at start
    events: str
    figures: str
    deadletter: str
    repartition: str
    checkpoints: str  # the changelog of the checkpoints table
    partitions: int  # of the events topic, and of the repartition topic
    marks: str = ""  # the changelog of the board's marks table


async def discover(kafka: KafkaSettings, app_id: str, connect_timeout_s: float = 15.0) -> Topology:
    """Check the pipeline's topics (deploy/kafka/topics.py creates them) and create the internal ones
    if needed, with as many partitions as the events topic; return once all of them have leaders."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import KafkaError

    names = {name: kafka.topic(name) for name in ("events", "figures", "deadletter")}
    internal = {"repartition": f"{app_id}-events-by-site",  # and the tables' changelogs, as Faust names them
                **{role: f"{app_id}-{table}-changelog" for role, table in (("checkpoints", CHECKPOINTS_TABLE),
                                                                           ("marks", MARKS_TABLE))}}
    admin = AIOKafkaAdminClient(**aiokafka_options(kafka, f"{app_id}-admin"),
                                request_timeout_ms=int(connect_timeout_s * 1000))
    try:
        try:
            await admin.start()
            described = await admin.describe_topics([*names.values(), *internal.values()])
        except KafkaError as error:
            raise KafkaUnavailable(f"no Kafka broker answered at {kafka.bootstrap_servers} "
                                   f"({type(error).__name__}); is it running (deploy/kafka/start.sh)?") from None
        partitions = {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}
        for name in names.values():
            if not partitions.get(name):
                raise TopicMissing(f"topic {name} does not exist at {kafka.bootstrap_servers}: create the "
                                   "topics with deploy/kafka/topics.sh (same topic prefix)")
        count = partitions[names["events"]]
        events_info = next(t for t in described if t["topic"] == names["events"])
        replicas = max(1, len(events_info["partitions"][0].get("replicas") or ()))  # as the events have
        # The tables' changelogs have one partition: Faust's advice for a GlobalTable that several
        # workers share (faust/tables/globaltable.py), and the key says which events partition.
        wanted = {name: count if role == "repartition" else 1 for role, name in internal.items()}
        for name, wanted_count in wanted.items():
            if partitions.get(name, wanted_count) != wanted_count:
                raise KafkaEdgeError(f"{name} has {partitions[name]} partitions, not {wanted_count} "
                                     f"({names['events']} has {count}): start with a new --app-id")
        new = [NewTopic(name, wanted[name], replicas, topic_configs=COMPACTED if role != "repartition" else FORWARDED)
               for role, name in internal.items() if name not in partitions]
        if new:
            for topic_name, code, *_rest in (await admin.create_topics(new)).topic_errors:
                if code not in (0, 36):  # 36: already exists (created meanwhile by another worker)
                    raise KafkaEdgeError(f"cannot create {topic_name} (Kafka error {code})")
        async with asyncio.timeout(connect_timeout_s):  # until every internal topic has its leaders
            while not all(not t["error_code"] and len(t["partitions"]) == wanted[t["topic"]]
                          and all(p["leader"] >= 0 for p in t["partitions"])
                          for t in await admin.describe_topics(list(wanted))):
                await asyncio.sleep(0.1)
    finally:
        await admin.close()
    return Topology(names["events"], names["figures"], names["deadletter"], internal["repartition"],
                    internal["checkpoints"], count, internal["marks"])


async def keep_metadata_for(client: Any, topics: list[str]) -> None:
    """Make an aiokafka client track these topics: aiokafka 0.14 does not track a topic it learnt of
    from a refresh of all topics, the next refresh forgets its leaders, and a batch queued for it
    waits for a leader forever (tests/integration/test_worker_metadata.py)."""
    for wait in [client.add_topic(topic) for topic in topics]:
        await wait

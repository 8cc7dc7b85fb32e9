"""The worker's producer keeps the leaders of every topic it writes to (streams/worker/kafka.py,
keep_metadata_for), on the real broker. Without it, aiokafka forgets the leaders of a topic it
learnt of before tracking any once a send to a newer topic refreshes its metadata: a batch queued
for the forgotten topic then waits forever, and with it the worker (seen in CI, one run in ten)."""

from __future__ import annotations

import asyncio

import pytest

from streams.worker.kafka import keep_metadata_for


async def _leaders_after_a_send_to_a_newer_topic(bootstrap: str, prefix: str, kept: bool) -> set[int] | None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    older, newer = prefix + "figures", prefix + "newer"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await producer.start()
    await admin.start()
    # A refresh while it tracks no topic yet brings the leaders of every topic there is, as the
    # worker's producer had when it hung; from then on it sends to those without tracking them.
    await producer.client.force_metadata_update()
    try:
        if kept:
            await keep_metadata_for(producer.client, [older])
        await (await producer.send(older, b"x", key=b"k", partition=2))  # compacted: keyed
        await admin.create_topics([NewTopic(newer, 1, 1)])  # as Faust creates its changelogs
        for _attempt in range(100):  # the new topic's leader may take a moment
            try:
                await (await producer.send(newer, b"y", partition=0))
                break
            except Exception:  # noqa: BLE001 - not there yet
                await asyncio.sleep(0.1)
        else:
            pytest.fail(f"could not send to {newer}")
        partitions = producer.client.cluster.partitions_for_topic(older)
        return None if partitions is None else set(partitions)
    finally:
        await admin.close()
        await producer.stop()


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "aiokafka-alone"])
def test_the_producer_keeps_the_leaders_of_the_topics_it_writes_to(kafka_bootstrap: str, kafka_prefix: str,
                                                                   kept: bool) -> None:
    leaders = asyncio.run(_leaders_after_a_send_to_a_newer_topic(kafka_bootstrap, kafka_prefix, kept))
    if kept:
        assert leaders == set(range(6))
    else:
        # What keep_metadata_for works around. Should an aiokafka upgrade fix it, this fails: the
        # workaround may then go.
        assert leaders is None

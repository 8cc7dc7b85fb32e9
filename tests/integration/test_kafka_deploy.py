"""deploy/kafka end to end: start a real Kafka broker (or use CALLWATCH_KAFKA_BOOTSTRAP), create topics,
produce 1000 messages with acks=all and consume them all back. The broker is the session's
(`kafka_bootstrap` in conftest.py), shared by every Kafka test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict

import pytest

from .kafka_helpers import KAFKA_DIR

# kafka-python 3 loads its protocol schemas with a deprecated importlib.resources API.
pytestmark = [pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]


@pytest.mark.kafka
def test_produce_and_consume_1000_messages(kafka_bootstrap: str) -> None:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

    topic = f"test.deploy.{uuid.uuid4().hex}"
    partitions = 3
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-kafka-deploy")
    admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": -1}},
                        timeout_ms=30000, wait_for_metadata=True)
    try:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
        sent = [{"seq": i, "call_id": f"call-{i % 37}", "payload": f"message {i} " + "x" * (i % 50)}
                for i in range(1000)]
        futures = [producer.send(topic, key=message["call_id"].encode(), value=json.dumps(message).encode())
                   for message in sent]
        producer.flush(timeout=60)
        written = [future.get(timeout=30) for future in futures]
        producer.close(timeout=10)
        assert {record.topic for record in written} == {topic}
        assert {record.partition for record in written} == set(range(partitions))

        group = f"test-deploy-{uuid.uuid4().hex}"
        consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
        received = []  # (partition, key, value)
        deadline = time.monotonic() + 60
        try:
            while len(received) < len(sent) and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    received.extend((r.partition, r.key.decode(), json.loads(r.value)) for r in records)
            consumer.commit()
            # The group's offsets were committed (needs the single-replica __consumer_offsets topic).
            committed = [consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
        finally:
            consumer.close()

        assert len(received) == len(sent)
        assert sorted((value for _, _, value in received), key=lambda v: v["seq"]) == sent
        assert all(key == value["call_id"] for _, key, value in received)
        # Same key, same partition, in the order produced.
        by_key: dict[str, list[int]] = defaultdict(list)
        partitions_of: dict[str, set[int]] = defaultdict(set)
        for partition, key, value in received:
            by_key[key].append(value["seq"])
            partitions_of[key].add(partition)
        assert all(seqs == sorted(seqs) for seqs in by_key.values())
        assert all(len(used) == 1 for used in partitions_of.values())
        assert sum(offset or 0 for offset in committed) == len(sent)
    finally:
        admin.delete_topics([topic], timeout_ms=30000)
        admin.close()


@pytest.mark.kafka
def test_topics_script_is_idempotent(kafka_bootstrap: str) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    prefix = f"test.{uuid.uuid4().hex[:12]}."
    env = dict(os.environ, CALLWATCH_KAFKA_BOOTSTRAP=kafka_bootstrap, CALLWATCH_TOPIC_PREFIX=prefix,
               PYTHON=sys.executable)
    env.pop("CALLWATCH_KAFKA_TOPIC_PREFIX", None)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="test-kafka-deploy")
    names = [prefix + name for name in ("events", "figures", "deadletter")]
    try:
        first = subprocess.run([str(KAFKA_DIR / "topics.sh")], env=env, capture_output=True, text=True, timeout=120)
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("created") == 3
        again = subprocess.run([str(KAFKA_DIR / "topics.sh"), "--check"], env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.count("ok") == 3

        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics(names)}
        assert described == {names[0]: 6, names[1]: 6, names[2]: 1}
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names],
                                         config_filter="all")["topic"]
        assert configs[names[0]]["retention.ms"]["value"] == str(7 * 24 * 3600 * 1000)
        assert configs[names[1]]["cleanup.policy"]["value"] == "compact"
        assert configs[names[2]]["retention.ms"]["value"] == str(30 * 24 * 3600 * 1000)
    finally:
        admin.delete_topics([n for n in names if n in set(admin.list_topics())], timeout_ms=30000)
        admin.close()


@pytest.mark.kafka
def test_a_broker_stops_by_itself_after_its_maximum_lifetime(tmp_path) -> None:
    """CALLWATCH_KAFKA_MAX_LIFETIME_S: the watchdog (deploy/local/lifetime.sh, shared with the other
    services) stops a broker of its own ports and state, and status.sh knows it by its name."""
    from .kafka_helpers import PrivateBroker

    broker = PrivateBroker(tmp_path / "kafka-short-lived")
    lifetime_s = 4
    broker.env["CALLWATCH_KAFKA_MAX_LIFETIME_S"] = str(lifetime_s)
    try:
        ready = broker.start()
        assert f"stops by itself after {lifetime_s} s" in ready, ready
        pid = int((broker.state / "kafka" / "kafka.pid").read_text())
        status = subprocess.run([str(KAFKA_DIR / "status.sh")], env=broker.env, capture_output=True, text=True)
        assert status.returncode == 0 and "lifetime watchdog: none" not in status.stdout, status.stdout
        deadline = time.monotonic() + lifetime_s + 60  # the lifetime, then up to 30 s to stop
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(f"/proc/{pid}"), "the broker outlived its maximum lifetime"
        console = (broker.state / "kafka" / "logs" / "console.out").read_text()
        assert f"maximum lifetime of {lifetime_s} s reached, stopping pid {pid}" in console
        # The watchdog removes both pid files once it has seen the broker gone (it polls every 0.1 s).
        pid_files = [broker.state / "kafka" / "kafka.pid", broker.state / "kafka" / "watchdog.pid"]
        cleaned_by = time.monotonic() + 10
        while any(path.exists() for path in pid_files) and time.monotonic() < cleaned_by:
            time.sleep(0.1)
        assert not [path.name for path in pid_files if path.exists()], "pid files left after the lifetime"
        status = subprocess.run([str(KAFKA_DIR / "status.sh")], env=broker.env, capture_output=True, text=True)
        assert status.returncode == 3, status.stdout
    finally:
        broker.remove()

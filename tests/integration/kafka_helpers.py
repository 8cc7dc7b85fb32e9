"""Helpers of the Kafka integration tests: topics per test (deploy/kafka/topics.py with a unique
prefix), reading a whole topic back, and a private broker the restart tests may stop and start
without disturbing the session's shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO / "deploy" / "kafka"
# A simulated history from 2024 is older than the events topic's 7-day retention, counted from the
# message timestamp (the event time): the broker would delete it at its next retention check.
KEEP_FOREVER = {"retention.ms": "-1"}


def unique_prefix() -> str:
    return f"test.{uuid.uuid4().hex[:12]}."


def create_topics(bootstrap: str, prefix: str) -> None:
    """callwatch's topics under `prefix`, as deploy/kafka/topics.py declares them; events kept forever."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env["CALLWATCH_KAFKA_BOOTSTRAP"] = bootstrap
    done = subprocess.run([sys.executable, str(KAFKA_DIR / "topics.py"), "--prefix", prefix], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callwatch-tests")
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, prefix + "events", dict(KEEP_FOREVER))])
    finally:
        admin.close()


def delete_topics(bootstrap: str, prefix: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="callwatch-tests")
    try:
        names = [name for name in admin.list_topics() if name.startswith(prefix)]
        if names:
            admin.delete_topics(names, timeout_ms=30000)
    finally:
        admin.close()


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def read_topic(bootstrap: str, topic: str, timeout_s: float = 60) -> list[Record]:
    """Every message of every partition, from the start to the end offsets at the time of the call."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             client_id="callwatch-tests")
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        ends = consumer.end_offsets(tps)
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"reading {topic} took more than {timeout_s} s"
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend(Record(r.partition, r.offset, r.timestamp, r.key, r.value, dict(r.headers or []))
                               for r in batch if r.offset < ends[tp])
        return records
    finally:
        consumer.close()


class PrivateBroker:
    """A broker of deploy/kafka/start.sh on its own ports and state directory, stopped and started
    at will (stop.sh / start.sh) by the tests that need a broker going away."""

    def __init__(self, state: Path) -> None:
        self.port, self.controller_port = free_port(), free_port()
        self.state = state
        self.env = {k: v for k, v in os.environ.items() if k != "CALLWATCH_KAFKA_BOOTSTRAP"}
        self.env.update(KAFKA_PORT=str(self.port), KAFKA_CONTROLLER_PORT=str(self.controller_port),
                        CALLWATCH_STATE=str(state), CALLWATCH_KAFKA_MAX_LIFETIME_S="900",
                        CALLWATCH_KAFKA_STOP_WAIT_S="20", PYTHON=sys.executable)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        done = self._run("start.sh")
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        assert done.returncode == 0 and last.startswith("kafka ready at "), done.stdout + done.stderr
        return last

    def stop(self) -> str:
        done = self._run("stop.sh")
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.state, ignore_errors=True)

    def _run(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(KAFKA_DIR / script)], env=self.env, capture_output=True, text=True, timeout=180)


def event_ids(records: list[Record]) -> list[str]:
    import json

    return [json.loads(r.value or b"{}")["event_id"] for r in records]


def kafka_env(bootstrap: str, prefix: str) -> dict[str, str]:
    return {"CALLWATCH_KAFKA_BOOTSTRAP": bootstrap, "CALLWATCH_KAFKA_TOPIC_PREFIX": prefix}


def settings_for(bootstrap: str, prefix: str) -> Any:
    from streams.settings import load_settings

    return load_settings(env=kafka_env(bootstrap, prefix))

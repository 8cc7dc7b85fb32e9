"""The Kafka sink against real brokers: bad records go to the dead-letter topic with their reason and
the connector carries on; a broker stopped and started again (deploy/kafka/stop.sh, start.sh) while a
connector produces costs no event, and with the shipped settings duplicates none either; deliveries
the producer gives up on are sent again (duplicates possible there, and dropped by event_id)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.pipeline.helpers import CALLWATCH, callwatch

from .kafka_helpers import (PrivateBroker, create_topics, event_ids, kafka_env, read_topic, settings_for,
                            unique_prefix)

pytestmark = [pytest.mark.kafka,
              pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]


def simulated(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "expected.jsonl"
    done = callwatch("simulate", *args, "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()
    return out


def test_bad_records_go_to_the_dead_letter_topic_and_the_connector_keeps_going(
        kafka_bootstrap: str, kafka_prefix: str, tmp_path: Path) -> None:
    lines = simulated(tmp_path, "--seed", "4", "--start", "2024-03-01T08:00:00Z", "--duration", "1h"
                      ).read_text().splitlines()
    first = json.loads(lines[0])
    bad = ["{oops",
           json.dumps({"v": 1, "type": "offered", "caller": "07700 900123"}),
           json.dumps({**first, "event_id": "late-night", "ts": "2024-03-01 08:00"}),
           json.dumps({**first, "event_id": "from-the-future", "ts": "2099-01-01T00:00:00Z"})]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:3] + bad + lines[3:]) + "\n")

    done = callwatch("connect", "file", "--file-path", str(broken), env=kafka_env(kafka_bootstrap, kafka_prefix))
    assert done.returncode == 1, done.stderr.decode()[-2000:]
    assert f"{len(lines):,} events sent, 4 dead-lettered".encode() in done.stderr

    assert sorted(event_ids(read_topic(kafka_bootstrap, kafka_prefix + "events"))) == \
        sorted(json.loads(line)["event_id"] for line in lines)
    letters = sorted(read_topic(kafka_bootstrap, kafka_prefix + "deadletter"),
                     key=lambda r: r.headers["callwatch-location"])
    assert [r.headers["callwatch-location"].decode() for r in letters] == [f"{broken}:{n}" for n in range(4, 8)]
    assert all(r.headers["callwatch-source"] == b"file" for r in letters)
    reasons = [r.headers["callwatch-reason"].decode() for r in letters]
    assert reasons[0].startswith("not JSON")
    assert reasons[1] == "invalid event_id: is required"
    assert reasons[2].startswith("invalid ts: not RFC 3339")
    assert reasons[3].startswith("event time 2099-01-01T00:00:00.000Z is more than 3540 s ahead")
    values = [json.loads(r.value or b"") for r in letters]
    assert [v["reason"] for v in values] == reasons and values[0]["payload"] == "{oops"  # the line, without its newline
    assert all("900123" not in (r.value or b"").decode() for r in letters)


def test_records_the_broker_refuses_are_dead_lettered_and_the_others_delivered(
        kafka_bootstrap: str, kafka_prefix: str) -> None:
    """The broker refuses messages stamped hours ahead; with the sink's own check loosened, it sees
    kafka-python's idempotent producer refuse everything after that error, replaces it, finds the
    guilty records by sending suspects alone, and dead-letters only those."""
    from connectors.kafka_sink import SinkLimits, open_kafka_sink
    from streams.domain.events import format_ts

    now_ms = time.time_ns() // 1_000_000
    events = [{"v": 1, "event_id": f"ok-{n}", "call_id": f"call-{n % 40}", "type": "offered",
               "ts": format_ts(now_ms - 60_000 + n), "line": "101", "queue": "general"} for n in range(300)]
    ahead = {50, 51, 180}
    for n in ahead:
        events[n] = {**events[n], "event_id": f"ahead-{n}", "ts": format_ts(now_ms + 2 * 3600_000)}
    limits = SinkLimits(max_ahead_s=10 * 86400, backoff_initial_s=0.1, backoff_max_s=0.5)
    sink = open_kafka_sink(settings_for(kafka_bootstrap, kafka_prefix), "refusal-test", limits)
    for event in events:
        sink.send(event)
    sink.close()

    copies = Counter(event_ids(read_topic(kafka_bootstrap, kafka_prefix + "events")))
    assert set(copies) == {e["event_id"] for n, e in enumerate(events) if n not in ahead}
    assert max(copies.values()) == 1
    letters = read_topic(kafka_bootstrap, kafka_prefix + "deadletter")
    assert sorted(json.loads(r.value or b"")["location"] for r in letters) == sorted(f"ahead-{n}" for n in ahead)
    assert all(r.headers["callwatch-reason"].startswith(b"refused by Kafka: InvalidTimestampError") for r in letters)
    assert sink.counts.sent == 297 and sink.counts.dead_lettered == 3 and sink.producers_replaced >= 1


# --- a broker going away ------------------------------------------------------------------------


def restart(broker: PrivateBroker, down_s: float) -> dict[str, float]:
    """stop.sh, `down_s` seconds with no broker, start.sh; the timings."""
    began = time.monotonic()
    broker.stop()
    stopped = time.monotonic()
    time.sleep(down_s)
    broker.start()
    ready = time.monotonic()
    return {"stopping_s": round(stopped - began, 1), "no_broker_s": round(ready - stopped, 1),
            "unavailable_s": round(ready - began, 1)}


def wait_for_messages(bootstrap: str, topic: str, at_least: int, timeout_s: float = 60) -> None:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        deadline = time.monotonic() + timeout_s
        while sum(consumer.end_offsets(tps).values()) < at_least:
            assert time.monotonic() < deadline, f"fewer than {at_least} messages in {topic} after {timeout_s} s"
            time.sleep(0.2)
    finally:
        consumer.close()


def test_a_broker_restart_while_the_connector_produces_loses_and_duplicates_nothing(
        private_broker: PrivateBroker, tmp_path: Path) -> None:
    prefix = unique_prefix()
    bootstrap = private_broker.bootstrap
    create_topics(bootstrap, prefix)
    source = ("--seed", "5", "--start", "2024-03-01T08:00:00Z", "--duration", "6h")
    expected_file = simulated(tmp_path, *source)
    expected = [json.loads(line)["event_id"] for line in expected_file.read_text().splitlines()]

    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    env.update(kafka_env(bootstrap, prefix))
    log_file = tmp_path / "connect.log"
    with open(log_file, "wb") as log:
        # 6 simulated hours at 1800x: about 12 s of producing, the broker away in the middle.
        connector = subprocess.Popen(CALLWATCH + ["connect", "simulate", *source, "--speed", "1800"],
                                     env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_for_messages(bootstrap, prefix + "events", 300)
            timings = restart(private_broker, down_s=3)
            status = connector.wait(timeout=150)
        finally:
            if connector.poll() is None:
                connector.kill()
    stderr = log_file.read_text()
    assert status == 0, stderr[-3000:]

    found = event_ids(read_topic(bootstrap, prefix + "events"))
    copies = Counter(found)
    duplicates = sum(n - 1 for n in copies.values())
    print(f"\nrestart under the CLI connector: {len(expected)} events produced, {len(copies)} found, "
          f"{duplicates} duplicates; broker {timings}")
    assert f"{len(expected):,} events sent, 0 dead-lettered" in stderr
    assert f"broker unavailable at {bootstrap}" in stderr and "acknowledges again" in stderr
    assert set(copies) == set(expected)  # nothing lost
    assert duplicates == 0  # the idempotent producer retried across the restart
    # Nor out of order beyond the allowed lateness: the topic replays to the file's figures.
    replay_range = ("--start", "2024-03-01T08:00:00Z", "--end", "2024-03-01T14:00:00Z")
    from_kafka = callwatch("replay", "--from-kafka", *replay_range, env=kafka_env(bootstrap, prefix))
    assert from_kafka.returncode == 0, from_kafka.stderr.decode()
    assert from_kafka.stdout == callwatch("replay", str(expected_file)).stdout


def test_deliveries_the_producer_gives_up_on_are_sent_again_and_a_full_buffer_holds_the_connector(
        private_broker: PrivateBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A delivery timeout (3 s) shorter than the outage, and a small buffer: the producer reports
    failures and the sink sends them again; the connector waits instead of dropping. (After such an
    expiry kafka-python 3.0.12 wedges: the sink replaces the producer once the broker answers.)"""
    from connectors.kafka_sink import SinkLimits, open_kafka_sink
    from streams.domain.config import FlowConfig
    from streams.io.event_lines import Rejection
    from streams.kafka.topic_replay import read_topic_events
    from streams.replay import replay_events

    prefix = unique_prefix()
    bootstrap = private_broker.bootstrap
    create_topics(bootstrap, prefix)
    lines = simulated(tmp_path, "--seed", "6", "--start", "2024-03-01T08:00:00Z", "--duration", "4h"
                      ).read_text().splitlines()
    expected = [json.loads(line)["event_id"] for line in lines]
    limits = SinkLimits(max_pending=300, delivery_timeout_ms=3000, request_timeout_ms=2500, backoff_initial_s=0.2,
                        backoff_max_s=1.0, stall_warning_s=1.0, stuck_after_s=5, connect_wait_s=5)
    settings = settings_for(bootstrap, prefix)
    sink = open_kafka_sink(settings, "restart-test", limits)
    sent = threading.Event()
    longest_send_s = 0.0

    def connector() -> None:
        nonlocal longest_send_s
        for line in lines:
            began = time.monotonic()
            sink.send(json.loads(line))
            longest_send_s = max(longest_send_s, time.monotonic() - began)
            time.sleep(0.003)
        sent.set()

    with caplog.at_level(logging.WARNING, logger="callwatch.kafka_sink"):
        thread = threading.Thread(target=connector, daemon=True)
        thread.start()
        wait_for_messages(bootstrap, prefix + "events", 200)
        timings = restart(private_broker, down_s=4)
        assert sent.wait(120)
        sink.close()

    found = event_ids(read_topic(bootstrap, prefix + "events"))
    copies = Counter(found)
    duplicates = sum(n - 1 for n in copies.values())
    print(f"\nrestart with a 3 s delivery timeout: {len(expected)} events produced, {len(copies)} found, "
          f"{duplicates} duplicates, {sink.resent} re-sent, {sink.producers_replaced} producers replaced, "
          f"connector held up to {longest_send_s:.1f} s; broker {timings}")
    assert set(copies) == set(expected)  # nothing lost
    assert sink.counts.sent == len(expected) and sink.counts.dead_lettered == 0
    assert sink.resent > 0 and "failed after" in caplog.text  # the producer gave up; the sink did not
    assert "buffer full (300 messages" in caplog.text and longest_send_s > 1  # back-pressure
    # Whatever copies Kafka holds, the pipeline counts each event once: by event_id.
    rejected: list[Rejection] = []
    summary = replay_events(read_topic_events(settings, 0, 2**62), FlowConfig(), 900, lambda _row: None,
                            rejected.append)
    assert not rejected and summary.lines == len(found)
    assert summary.counts.accepted + summary.counts.late == len(expected)
    assert summary.counts.duplicates + summary.counts.late >= duplicates

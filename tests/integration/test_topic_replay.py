"""`callwatch replay --from-kafka` against a real broker: a simulated day written by the real connector
command replays to exactly the bytes of the file replay; a range inside the day equals the file replay
of the events in that range; duplicates (a source read twice) and undecodable messages change nothing
but the counts; a missing topic is a one-line error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from streams.domain.events import parse_ts
from tests.pipeline.helpers import callwatch

from .kafka_helpers import kafka_env

pytestmark = [pytest.mark.kafka,
              pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]

DAY = ("--seed", "3", "--start", "2024-03-01T00:00:00Z", "--duration", "1d")
RANGE = ("--start", "2024-03-01T00:00:00Z", "--end", "2024-03-02T00:00:00Z")


def simulated_day(tmp_path: Path) -> Path:
    out = tmp_path / "day.jsonl"
    done = callwatch("simulate", *DAY, "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()
    return out


def connect_day(env: dict[str, str]) -> None:
    done = callwatch("connect", "simulate", *DAY, env=env, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert b"9,249 events sent, 0 dead-lettered" in done.stderr


def test_a_simulated_day_through_kafka_replays_to_the_bytes_of_the_file_replay(
        kafka_bootstrap: str, kafka_prefix: str, tmp_path: Path) -> None:
    env = kafka_env(kafka_bootstrap, kafka_prefix)
    connect_day(env)
    from_file = callwatch("replay", str(simulated_day(tmp_path)))
    from_kafka = callwatch("replay", "--from-kafka", *RANGE, env=env)
    assert from_file.returncode == 0 and from_kafka.returncode == 0, from_kafka.stderr.decode()
    assert from_kafka.stdout == from_file.stdout and from_file.stdout.count(b"\n") == 438
    assert b"9,249 events read, 0 rejected, 0 late, 0 duplicates" in from_kafka.stderr

    # A range inside the day: exactly the file replay of the events whose time is in the range.
    start, end = "2024-03-01T06:00:00Z", "2024-03-01T12:30:00Z"
    lines = simulated_day(tmp_path).read_text().splitlines()
    inside = tmp_path / "inside.jsonl"
    inside.write_text("".join(line + "\n" for line in lines
                              if parse_ts(start) <= parse_ts(json.loads(line)["ts"]) < parse_ts(end)))
    part_file = callwatch("replay", str(inside), "--window", "1h")
    part_kafka = callwatch("replay", "--from-kafka", "--start", start, "--end", end, "--window", "1h", env=env)
    assert part_kafka.returncode == 0, part_kafka.stderr.decode()
    assert part_kafka.stdout == part_file.stdout and part_file.stdout


def test_a_source_read_again_and_undecodable_messages_change_only_the_counts(
        kafka_bootstrap: str, kafka_prefix: str, tmp_path: Path) -> None:
    from kafka import KafkaProducer

    env = kafka_env(kafka_bootstrap, kafka_prefix)
    connect_day(env)
    connect_day(env)  # the source read again: every event twice, with the same ids
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    events_topic = kafka_prefix + "events"
    noon = parse_ts("2024-03-01T12:00:00Z")
    bad = producer.send(events_topic, key=b"c", value=b"{not json", timestamp_ms=noon).get(timeout=30)
    producer.send(events_topic, key=b"c", value=b'{"v": 1, "type": "offered"}', timestamp_ms=noon).get(timeout=30)
    # The worker's end-of-stream marker is not an event: skipped.
    producer.send(events_topic, key=b"callwatch-control", value=b'{"at":"2024-03-01T23:59:59.000Z"}',
                  headers=[("callwatch-control", b"end-of-stream")], timestamp_ms=noon).get(timeout=30)
    producer.close()

    from_file = callwatch("replay", str(simulated_day(tmp_path)))
    from_kafka = callwatch("replay", "--from-kafka", *RANGE, env=env)
    assert from_kafka.returncode == 1  # rejected (and late) input
    assert from_kafka.stdout == from_file.stdout
    stderr = from_kafka.stderr.decode()
    assert f"rejected {events_topic}/{bad.partition}:{bad.offset}: not JSON" in stderr
    assert "invalid event_id: is required" in stderr
    # The second copy of each event follows the whole day in its partition: a duplicate if it comes
    # within the allowed lateness of the newest event before it, late otherwise; never counted twice.
    summary = re.search(r"([\d,]+) events read, 2 rejected, ([\d,]+) late, ([\d,]+) duplicates", stderr)
    assert summary, stderr
    read, late, duplicates = (int(group.replace(",", "")) for group in summary.groups())
    assert read == 2 * 9249 + 2 and late + duplicates == 9249


def test_duplicates_within_the_lateness_are_dropped_by_event_id(
        kafka_bootstrap: str, kafka_prefix: str, tmp_path: Path) -> None:
    env = kafka_env(kafka_bootstrap, kafka_prefix)
    connect_day(env)
    day = simulated_day(tmp_path)
    tail = tmp_path / "tail.jsonl"  # the last 90 s of the day, sent again
    tail.write_text("".join(line + "\n" for line in day.read_text().splitlines()
                            if json.loads(line)["ts"] >= "2024-03-01T23:58:30"))
    again = callwatch("connect", "file", "--file-path", str(tail), env=env)
    sent = int(re.search(rb"([\d,]+) events sent", again.stderr).group(1).replace(b",", b""))  # type: ignore[union-attr]
    assert again.returncode == 0 and sent > 0, again.stderr.decode()
    from_kafka = callwatch("replay", "--from-kafka", *RANGE, env=env)
    assert from_kafka.returncode == 0, from_kafka.stderr.decode()
    assert from_kafka.stdout == callwatch("replay", str(day)).stdout
    assert f"{9249 + sent:,} events read, 0 rejected, 0 late, {sent:,} duplicates" in from_kafka.stderr.decode()


def test_a_missing_topic_is_a_one_line_error(kafka_bootstrap: str) -> None:
    env = kafka_env(kafka_bootstrap, "test.no-such-prefix.")
    done = callwatch("replay", "--from-kafka", *RANGE, env=env)
    assert done.returncode == 2
    assert done.stderr.decode().strip().splitlines() == [
        f"callwatch replay: error: topic test.no-such-prefix.events does not exist at {kafka_bootstrap}: "
        "create the topics with deploy/kafka/topics.sh (same CALLWATCH_KAFKA_TOPIC_PREFIX)"]
    done = callwatch("connect", "simulate", *DAY, env=env)
    assert done.returncode == 2
    assert "topic test.no-such-prefix.events does not exist" in done.stderr.decode()

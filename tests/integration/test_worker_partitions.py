"""The one-stage worker on a real broker, with several sites spread over the events partitions:
events written by another client (kcat) without keys or with keys of their own, several workers
started at the same instant, one of three killed with SIGKILL under load; each gives exactly the
report of `callwatch replay`. A checkpoint of other settings and a corrupt one each stop the worker
with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest

from .test_worker import (REPO, SITES, Stack, WorkerProcess, _complete, _replay, _sites, _wait,  # noqa: F401
                          stack, stop_all)

pytestmark = [pytest.mark.kafka,
              pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]

def _kcat() -> str:
    done = subprocess.run([str(REPO / "deploy" / "kafka" / "kcat.sh")], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        message = f"kcat is needed: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return done.stdout.strip()


def _counter(worker: WorkerProcess, name: str) -> float:
    try:
        return sum(v for k, v in worker.metrics().items() if k == name or k.startswith(name + "{"))
    except OSError:
        return 0.0


@pytest.mark.parametrize("keys", ["none", "call_id"])
def test_events_written_by_kcat_without_keys_or_with_its_own_keys_give_the_replay_report(
        stack: Stack, keys: str) -> None:
    path = stack.tmp_path / "kcat.jsonl"
    lines = _sites(stack, path, "12h")
    expected = _replay(stack, path)
    if keys == "none":
        written = path
        options = []
    else:
        written = stack.tmp_path / "keyed.txt"
        written.write_bytes(b"".join(json.loads(line)["call_id"].encode() + b"\t" + line + b"\n"
                                     if "call_id" in json.loads(line) else b"agent\t" + line + b"\n" for line in lines))
        options = ["-K", "\t"]
    done = subprocess.run([_kcat(), "-P", "-b", stack.bootstrap, "-t", stack.prefix + "events", *options,
                           "-l", str(written)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    stack.end_of_stream(lines)
    worker = WorkerProcess(stack)
    try:
        rows = _wait(_complete(stack, len(expected)), 240, "the interval report", [worker])
        assert rows == expected
        metrics = _wait(lambda: (m := worker.metrics()).get("callwatch_events_accepted_total") == len(lines) and m,
                        60, "the event counters", [worker])
        assert metrics["callwatch_worker_forwarded_total"] > len(lines) / 2  # most came to the wrong partition
        assert metrics["callwatch_events_late_total"] == 0
    finally:
        worker.stop()


@pytest.mark.parametrize("count", [2, 3])
def test_workers_started_at_the_same_instant_on_a_loaded_topic_publish_the_replay_report(
        stack: Stack, count: int) -> None:
    path = stack.tmp_path / "loaded.jsonl"
    lines = _sites(stack, path, "2d", seed=20 + count)
    expected = _replay(stack, path)
    stack.produce(lines)
    stack.end_of_stream(lines)
    workers = [WorkerProcess(stack, f"w{number}") for number in range(count)]
    try:
        rows = _wait(_complete(stack, len(expected)), 240, "the interval report", workers)
        assert rows == expected
        _wait(lambda: sum(_counter(w, "callwatch_events_accepted_total") for w in workers) == len(lines), 60,
              "every event counted once over the workers", workers)
        assert sum(_counter(w, "callwatch_worker_partitions") for w in workers) == 6
    finally:
        stop_all(workers)


def test_kill_9_of_one_of_three_workers_under_load_gives_the_replay_report(stack: Stack) -> None:
    path = stack.tmp_path / "load.jsonl"
    lines = _sites(stack, path, "4d", seed=40)
    expected = _replay(stack, path)
    producing = threading.Thread(target=stack.produce, args=(lines,))
    # The shortest session timeout: the two left wait that long before taking the victim's partitions.
    workers = [WorkerProcess(stack, f"w{number}", "--session-timeout", "6s") for number in range(3)]
    try:
        producing.start()
        victim = _wait(lambda: next((w for w in workers if _counter(w, "callwatch_events_received_total")
                                     > len(lines) / 10), None), 180, "a worker well into the stream", workers)
        victim.kill9()
        workers.remove(victim)
        producing.join(timeout=300)
        assert not producing.is_alive()
        stack.end_of_stream(lines)
        rows = _wait(_complete(stack, len(expected)), 300, "the interval report after the kill", workers)
        assert rows == expected
        _wait(lambda: sum(_counter(w, "callwatch_events_accepted_total") for w in workers) == len(lines), 90,
              "every event counted once by the two left", workers)
    finally:
        stop_all(workers)
        producing.join(timeout=300)


def test_a_partition_handed_over_carries_on_from_the_checkpoint_written_while_giving_it_up(stack: Stack) -> None:
    """The first worker saves a partition once in ten minutes, so what it has read is saved only when
    it gives partitions up to a second worker. The events are then deleted from the topic: the second
    worker must restore those last checkpoints (the checkpoints table caught up with its changelog),
    or it would start from an older state and find its events gone."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    lines = _sites(stack, stack.tmp_path / "h.jsonl", "2h")
    stack.produce(lines)
    workers = [WorkerProcess(stack, "first", "--checkpoint-every", "1h")]
    try:
        _wait(lambda: _counter(workers[0], "callwatch_events_accepted_total") == len(lines), 120, "every event",
              workers)
        consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap)
        events = [TopicPartition(f"{stack.prefix}events", number) for number in range(6)]
        ends = consumer.end_offsets(events)
        consumer.close()
        admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
        admin.delete_records({tp: end for tp, end in ends.items() if end})
        admin.close()
        workers.append(WorkerProcess(stack, "second", "--checkpoint-every", "1h"))
        _wait(lambda: [_counter(w, "callwatch_worker_partitions") for w in workers] in ([3, 3], [2, 4], [4, 2])
              and sum(_counter(w, "callwatch_events_accepted_total") for w in workers) == len(lines), 120,
              "the partitions shared, every event counted once", workers)
        assert sum(_counter(w, "callwatch_worker_deleted_unread_total") for w in workers) == 0
    finally:
        stop_all(workers)


def _run_to_end(stack: Stack, lines: list[bytes], *options: str) -> None:
    worker = WorkerProcess(stack, "first", *options)
    try:
        _wait(lambda: _counter(worker, "callwatch_worker_checkpoints_total") >= 6
              and _counter(worker, "callwatch_events_accepted_total") == len(lines), 120, "checkpoints", [worker])
    finally:
        worker.stop()


def _one_line_exit(stack: Stack, name: str, *options: str) -> str:
    worker = WorkerProcess(stack, name, *options)
    try:
        worker.process.wait(timeout=90)
    finally:
        worker.stop()
    assert worker.process.returncode == 2, worker.log_tail()
    errors = [line for line in worker.log_path.read_text().splitlines() if "error" in line.lower()]
    return "\n".join(errors)


@pytest.fixture(scope="module")
def refused_checkpoints(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One worker run to the end (checkpoints of every partition, window 15m), then what a worker
    says when it finds them: started with other settings (window 1h), and, after a corrupt record
    is written to the checkpoints table, started with the same settings. One run, two refusals."""
    from kafka import KafkaProducer

    stack = Stack(kafka_bootstrap, tmp_path_factory.mktemp("checkpoints"))
    stack.create_topics()
    try:
        lines = _sites(stack, stack.tmp_path / "a.jsonl", "2h", sites=SITES[:2])
        stack.produce(lines)
        _run_to_end(stack, lines, "--window", "15m")
        said = {"other settings": _one_line_exit(stack, "other-settings", "--window", "1h")}
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap)
        # A record of the checkpoints table (Faust's changelog; key: the events partition, as JSON)
        producer.send(f"{stack.prefix}worker-checkpoints-changelog", b"\x00 not a checkpoint", key=b"3").get(30)
        producer.close()
        said["corrupt"] = _one_line_exit(stack, "corrupt", "--window", "15m")
        yield said
    finally:
        stack.delete_topics()


def test_a_checkpoint_of_other_settings_stops_the_worker_with_one_clear_line(
        refused_checkpoints: dict[str, str]) -> None:
    said = refused_checkpoints["other settings"]
    assert "checkpoint taken with other settings" in said and "start with another --app-id" in said, said
    assert "Traceback" not in said


def test_a_corrupt_checkpoint_record_stops_the_worker_with_one_clear_line(refused_checkpoints: dict[str, str]) -> None:
    said = refused_checkpoints["corrupt"]
    assert "partition 3: not a checkpoint" in said and "start with another --app-id" in said, said

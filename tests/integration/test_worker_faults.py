"""The worker when things go wrong around it, on real brokers: the broker goes away (a quiet log, and
SIGTERM still stops it within seconds), the worker is paused past the session timeout and resumed
(a clear line, none of its older checkpoints written over the newer ones, and still the replay's
report), the events topic is deleted under it (a clear line, no silent stall)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zlib
from pathlib import Path

import pytest

from .kafka_helpers import PrivateBroker
from .test_worker import SITES, Stack, WorkerProcess, _complete, _replay, _sites, _wait, stack, stop_all  # noqa: F401

pytestmark = [pytest.mark.kafka,
              pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]


def _accepted(worker: WorkerProcess) -> float:
    try:
        return worker.metrics().get("callwatch_events_accepted_total", 0.0)
    except OSError:
        return 0.0


def _partitions(worker: WorkerProcess) -> float:
    try:
        return worker.metrics().get("callwatch_worker_partitions", 0.0)
    except OSError:
        return 0.0


def _lines_of(worker: WorkerProcess) -> list[str]:
    return worker.log_path.read_text(errors="replace").splitlines()


def test_a_broker_gone_is_waited_for_quietly_and_sigterm_still_stops_the_worker(
        private_broker: PrivateBroker, tmp_path: Path) -> None:
    private = Stack(private_broker.bootstrap, tmp_path)
    private.create_topics()
    lines = _sites(private, tmp_path / "a.jsonl", "2h", sites=SITES[:2])
    private.produce(lines)
    worker = WorkerProcess(private, "worker", "--log-level", "info")
    try:
        _wait(lambda: _accepted(worker) == len(lines), 120, "the events read", [worker])
        private_broker.stop()
        before = len(_lines_of(worker))
        observed = time.monotonic()
        time.sleep(30)  # what the worker writes meanwhile is the point: half a minute of it
        written = _lines_of(worker)[before:]
        assert worker.process.poll() is None, worker.log_tail()
        # Each kind of library complaint at most once a minute (was about 2,000 lines a second).
        assert len(written) < 60, "\n".join(written[-60:])
        assert time.monotonic() - observed < 60
        stopping = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        worker.process.wait(timeout=20)
        assert time.monotonic() - stopping < 8, worker.log_tail()
    finally:
        worker.stop()


class CheckpointRecords:
    """The read positions (next events offset, next repartition offset) of every record of the
    checkpoints table's changelog by events partition, in the order written: read as they come, in a
    thread, before the cleaner compacts any away."""

    def __init__(self, stack: Stack) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.tp = TopicPartition(f"{stack.prefix}worker-checkpoints-changelog", 0)
        self.consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
        self.consumer.assign([self.tp])
        self.consumer.seek_to_beginning(self.tp)
        self.positions: dict[int, list[tuple[int, int]]] = {}
        self.next_offset = 0  # of the changelog: the next record to read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        from streams.domain.state import load_saved

        while not self._stop.is_set():
            for record in self.consumer.poll(timeout_ms=200).get(self.tp, []):
                offsets = load_saved(zlib.decompress(record.value))["offsets"]
                self.positions.setdefault(int(json.loads(record.key)), []).append((offsets[0], offsets[2]))
                self.next_offset = record.offset + 1

    def latest(self) -> dict[int, tuple[int, int]]:
        return {number: written[-1] for number, written in list(self.positions.items())}

    def stop(self) -> dict[int, list[tuple[int, int]]]:
        """Every record written so far, once read."""
        if self._stop.is_set():
            return self.positions
        from kafka import KafkaConsumer

        probe = KafkaConsumer(bootstrap_servers=self.consumer.config["bootstrap_servers"])
        end = probe.end_offsets([self.tp])[self.tp]  # kafka-python's consumer is not shared between threads
        probe.close()
        deadline = time.monotonic() + 30
        while self.next_offset < end and time.monotonic() < deadline:
            time.sleep(0.1)  # the reading thread's progress, bounded
        self._stop.set()
        self._thread.join(timeout=10)
        self.consumer.close()
        return self.positions


def _events_ends(stack: Stack) -> dict[int, int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap)
    try:
        ends = consumer.end_offsets([TopicPartition(f"{stack.prefix}events", n) for n in range(6)])
        return {tp.partition: end for tp, end in ends.items()}
    finally:
        consumer.close()


def test_a_worker_paused_past_the_session_timeout_writes_no_stale_checkpoint_and_the_report_is_the_replay_s(
        stack: Stack) -> None:
    """A worker paused (SIGSTOP) past the session timeout loses its partitions to the other, which
    reads further and checkpoints them; resumed, the paused one must not write its older checkpoints
    over those (it did, in its revoke callback): every partition's checkpoints only go forward. It
    says it was paused, and the report is still the replay's, each event counted once."""
    path = stack.tmp_path / "paused.jsonl"
    lines = _sites(stack, path, "1d", seed=60)
    expected = _replay(stack, path)
    thirds = [lines[:len(lines) // 3], lines[len(lines) // 3:2 * len(lines) // 3], lines[2 * len(lines) // 3:]]
    stack.produce(thirds[0])
    workers = [WorkerProcess(stack, f"w{n}", "--session-timeout", "6s") for n in range(2)]
    paused = workers[0]
    checkpoints: CheckpointRecords | None = None
    try:
        _wait(lambda: sum(_accepted(w) for w in workers) == len(thirds[0]), 120, "the first third", workers)
        checkpoints = CheckpointRecords(stack)  # the changelog exists: the workers created it
        # Paused before it holds a partition, the other takes over nothing and the pause is too short.
        _wait(lambda: paused.metrics().get("callwatch_worker_partitions", 0) > 0, 60, "partitions of its own", workers)
        os.kill(paused.process.pid, signal.SIGSTOP)
        try:
            stack.produce(thirds[1])
            ends = _events_ends(stack)
            # Every partition held by the other (its session has to time out first: the pause outlasts it)
            # and checkpointed past the pause's events: a count alone may be reached before the takeover.
            _wait(lambda: _partitions(workers[1]) == 6 and all(
                checkpoints.latest().get(n, (0, 0))[0] == end for n, end in ends.items() if end), 90,
                  "the other worker to take over every partition and checkpoint the second third", workers[1:])
        finally:
            os.kill(paused.process.pid, signal.SIGCONT)
        stack.produce(thirds[2])
        stack.end_of_stream(lines)
        rows = _wait(_complete(stack, len(expected)), 240, "the interval report", workers)
        assert rows == expected
        _wait(lambda: any("did not run for" in line for line in _lines_of(paused)), 30, "the line about the pause",
              workers)
        _wait(lambda: sum(_accepted(w) for w in workers) == len(lines), 60, "every event counted once", workers)
        written = checkpoints.stop()
        for number, positions in written.items():
            backwards = [(a, b) for a, b in zip(positions, positions[1:]) if b[0] < a[0] or b[1] < a[1]]
            assert not backwards, f"partition {number}: a checkpoint went back {backwards} in {positions}"
        assert paused.metrics().get("callwatch_worker_checkpoints_skipped_total", 0) > 0
    finally:
        if checkpoints is not None:
            checkpoints.stop()
        stop_all(workers)


def test_the_events_topic_deleted_under_a_running_worker_is_said_clearly(stack: Stack) -> None:
    from kafka import KafkaAdminClient

    lines = _sites(stack, stack.tmp_path / "d.jsonl", "2h", sites=SITES[:2])
    stack.produce(lines)
    worker = WorkerProcess(stack)
    try:
        _wait(lambda: _accepted(worker) == len(lines), 120, "the events read", [worker])
        admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap, client_id="test-worker")
        try:
            admin.delete_topics([stack.prefix + "events"])
        finally:
            admin.close()
        said = _wait(lambda: [line for line in _lines_of(worker) if "does not exist (deleted?)" in line], 90,
                     "the line about the deleted topic", [worker])
        assert f"topic {stack.prefix}events does not exist" in said[0]
        assert worker.metrics()["callwatch_worker_read_loop_age_seconds"] < 5  # still going round, not stuck
    finally:
        worker.stop()

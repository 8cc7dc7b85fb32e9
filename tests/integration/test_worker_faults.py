"""The worker when things go wrong around it, on real brokers: the broker goes away (a quiet log, and
SIGTERM still stops it within seconds), the worker is paused past the session timeout and resumed
(a clear line, and still the replay's report), the events topic is deleted under it (a clear line,
no silent stall)."""

from __future__ import annotations

import os
import signal
import time
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


def test_a_worker_paused_past_the_session_timeout_says_so_and_the_report_is_the_replay_s(stack: Stack) -> None:
    path = stack.tmp_path / "paused.jsonl"
    lines = _sites(stack, path, "1d", seed=60)
    expected = _replay(stack, path)
    stack.produce(lines[:len(lines) // 2])
    workers = [WorkerProcess(stack, f"w{n}", "--session-timeout", "6s") for n in range(2)]
    paused = workers[0]
    try:
        _wait(lambda: sum(_accepted(w) for w in workers) == len(lines) // 2, 120, "the first half", workers)
        # Paused before it holds a partition, the other takes over nothing and the pause is too short.
        _wait(lambda: paused.metrics().get("callwatch_worker_partitions", 0) > 0, 60, "partitions of its own", workers)
        os.kill(paused.process.pid, signal.SIGSTOP)
        try:
            # Every partition held by the other (its session has to time out first: the pause outlasts
            # it). Its count alone is no sign: it may have read the whole first half before the
            # paused one got partitions, and the pause would then be too short to be said.
            _wait(lambda: _partitions(workers[1]) == 6 and _accepted(workers[1]) == len(lines) // 2, 60,
                  "the other worker to take over every partition", workers[1:])
        finally:
            os.kill(paused.process.pid, signal.SIGCONT)
        stack.produce(lines[len(lines) // 2:])
        stack.end_of_stream(lines)
        rows = _wait(_complete(stack, len(expected)), 240, "the interval report", workers)
        assert rows == expected
        _wait(lambda: any("did not run for" in line for line in _lines_of(paused)), 30, "the line about the pause",
              workers)
        _wait(lambda: sum(_accepted(w) for w in workers) == len(lines), 60, "every event counted once", workers)
    finally:
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

"""`callwatch worker` against a real Kafka broker: a simulated stream through Kafka and the worker
gives exactly the interval report of `callwatch replay` of the same events, also when the worker
is killed with SIGKILL midway and restarted; malformed messages are dead-lettered with a reason
and the worker goes on, late and duplicate ones are counted. Each test uses its own topics (a uuid prefix) and consumer groups."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from streams.domain.events import parse_ts
from streams.settings import KafkaSettings, Settings

REPO = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO / "deploy" / "kafka"
CALLWATCH = [sys.executable, "-m", "streams.cli"]

pytestmark = [pytest.mark.kafka,
              pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A running Kafka: CALLWATCH_KAFKA_BOOTSTRAP, or the local broker of deploy/kafka/start.sh (left
    running for the rest of the session; its watchdog stops it after CALLWATCH_KAFKA_MAX_LIFETIME_S)."""
    env = dict(os.environ)
    env.setdefault("CALLWATCH_KAFKA_MAX_LIFETIME_S", "1800")
    env.setdefault("PYTHON", sys.executable)
    start = subprocess.run([str(KAFKA_DIR / "start.sh")], env=env, capture_output=True, text=True, timeout=900)
    if start.returncode != 0:
        pytest.fail(f"deploy/kafka/start.sh failed (exit {start.returncode}):\n{start.stdout}{start.stderr}")
    yield env.get("CALLWATCH_KAFKA_BOOTSTRAP") or f"127.0.0.1:{env.get('KAFKA_PORT', '19092')}"


def _topics_module() -> Any:
    spec = importlib.util.spec_from_file_location("callwatch_deploy_topics", KAFKA_DIR / "topics.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Stack:
    """One test's topics (created as deploy/kafka/topics.py declares them) and its settings."""

    def __init__(self, bootstrap: str, tmp_path: Path) -> None:
        self.bootstrap = bootstrap
        self.prefix = f"test.worker.{uuid.uuid4().hex[:10]}."
        self.tmp_path = tmp_path
        self.settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=self.prefix))
        # The user's CALLWATCH_ settings stay out, but a log level asked for reaches the workers' logs.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_") or k == "CALLWATCH_LOG_LEVEL"}
        self.env.update(CALLWATCH_KAFKA_BOOTSTRAP=bootstrap, CALLWATCH_KAFKA_TOPIC_PREFIX=self.prefix)

    def create_topics(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="test-worker")
        try:
            _topics_module().ensure_topics(admin, self.prefix, -1)
        finally:
            admin.close()

    def delete_topics(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="test-worker")
        try:
            mine = [name for name in admin.list_topics() if name.startswith(self.prefix)]
            if mine:
                admin.delete_topics(mine)
        finally:
            admin.close()

    def callwatch(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(CALLWATCH + list(args), capture_output=True, text=True, timeout=timeout,
                              env=self.env, cwd=REPO)

    def produce(self, lines: list[bytes]) -> None:
        """Events keyed as connectors.kafka_sink writes them (by site); lines that are not events go out as they are. Message time is the time of sending,
        not the event time: the simulated events are from 2024, and the broker would delete them at
        its next retention check (retention.ms is 7 days, measured on message time)."""
        asyncio.run(_produce(self.bootstrap, self.prefix + "events", lines))

    def end_of_stream(self, lines: list[bytes]) -> None:
        from streams.kafka.figures_topic import send_end_of_stream

        last = max(parse_ts(json.loads(line)["ts"]) for line in lines if _is_event(line))
        assert send_end_of_stream(self.settings, last) == 6

    def report(self) -> list[dict[str, Any]]:
        from streams.kafka.figures_topic import read_interval_report

        return read_interval_report(self.settings)


def _is_event(line: bytes) -> bool:
    try:
        return "ts" in json.loads(line)
    except ValueError:
        return False


async def _produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                linger_ms=10, max_batch_size=512 * 1024)
    await producer.start()
    try:
        for line in lines:
            try:
                obj = json.loads(line)
                key = (obj.get("site") or "default").encode()
            except (ValueError, AttributeError):
                key = b"garbage"
            await producer.send(topic, line, key=key)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    made = Stack(kafka_bootstrap, tmp_path)
    made.create_topics()
    try:
        yield made
    finally:
        made.delete_topics()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class WorkerProcess:
    """`callwatch worker` as a user runs it, its output in a log file."""

    def __init__(self, stack: Stack, name: str = "worker", *options: str) -> None:
        self.port = _free_port()
        self.interrupted = False
        self.log_path = stack.tmp_path / f"{name}-{self.port}.log"
        self.process = subprocess.Popen(
            CALLWATCH + ["worker", "--workdir", str(stack.tmp_path / "faust"), "--metrics-port", str(self.port),
                         *options],
            env=stack.env, cwd=REPO, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT)

    def metrics(self) -> dict[str, float]:
        """Samples of /metrics by name with labels, e.g. 'callwatch_events_accepted_total'."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def received(self) -> float:
        try:
            return sum(v for k, v in self.metrics().items() if k.startswith("callwatch_events_received_total"))
        except OSError:
            return 0.0

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def interrupt(self) -> None:
        """SIGINT once, not waiting: several workers stop at the same time (stop_all)."""
        if self.process.poll() is None and not self.interrupted:
            self.interrupted = True
            self.process.send_signal(signal.SIGINT)

    def stop(self) -> None:
        self.interrupt()
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def where_it_waits(self) -> str:
        """A worker that seems stuck: mode's worker writes every asyncio task's stack to its log on
        SIGUSR1; callwatch's own frames (with the line each waits on) say where it waits."""
        if self.process.poll() is not None:
            return ""
        before = len(self.log_path.read_text(errors="replace"))
        os.kill(self.process.pid, signal.SIGUSR1)
        time.sleep(2)
        dump = self.log_path.read_text(errors="replace")[before:].splitlines()
        ours = [f"{line.strip()}: {dump[number + 1].strip()}" for number, line in enumerate(dump[:-1])
                if line.lstrip().startswith("File") and "/streams/" in line]
        return "where the worker's tasks wait:\n" + "\n".join(ours)


def stop_all(workers: list[WorkerProcess]) -> None:
    """Every worker interrupted first, then each waited for: their shutdowns overlap."""
    for worker in workers:
        worker.interrupt()
    for worker in workers:
        worker.stop()


def _wait(predicate: Callable[[], Any], timeout_s: float, what: str, workers: list[WorkerProcess]) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for worker in workers:
            assert worker.process.poll() is None, f"the worker exited ({worker.process.returncode}):\n{worker.log_tail()}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}:\n"
                         + "\n".join(f"{worker.log_tail()}\n{worker.where_it_waits()}" for worker in workers))


def _replay(stack: Stack, path: Path) -> list[dict[str, Any]]:
    done = stack.callwatch("replay", str(path), "--window", "15m")
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _simulate(stack: Stack, path: Path, duration: str, seed: int = 7, start: str = "2024-03-30T00:00:00Z") -> list[bytes]:
    done = stack.callwatch("simulate", "--seed", str(seed), "--start", start, "--duration", duration, "--out", str(path))
    assert done.returncode == 0, done.stderr
    return path.read_bytes().splitlines()


SITES = ("north", "south", "east", "west", "metro", "coast")


def _sites(stack: Stack, path: Path, duration: str, seed: int = 3, start: str = "2024-03-01T00:00:00Z",
           sites: tuple[str, ...] = SITES) -> list[bytes]:
    """Simulated control rooms, one per site (simulated side by side), merged in event time into one file."""
    outs = [path.with_suffix(f".{site}.jsonl") for site in sites]
    running = [subprocess.Popen(CALLWATCH + ["simulate", "--seed", str(seed + number), "--start", start,
                                             "--duration", duration, "--site", site, "--out", str(out)],
                                env=stack.env, cwd=REPO, stderr=subprocess.PIPE, text=True)
               for number, (site, out) in enumerate(zip(sites, outs))]
    lines: list[bytes] = []
    for simulation, out in zip(running, outs):
        _out, errors = simulation.communicate(timeout=300)
        assert simulation.returncode == 0, errors
        lines.extend(out.read_bytes().splitlines())
    lines.sort(key=lambda line: parse_ts(json.loads(line)["ts"]))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def _complete(stack: Stack, expected: int) -> Callable[[], list[dict[str, Any]] | None]:
    def check() -> list[dict[str, Any]] | None:
        rows = stack.report()
        return rows if len(rows) >= expected else None
    return check


def test_a_simulated_day_through_connector_kafka_and_worker_gives_the_replay_report(stack: Stack) -> None:
    """Two simulated days written to Kafka by the simulate connector; the worker's interval rows on
    the figures topic are the replay's rows. Recent days: the connector stamps messages with the
    event time, and the broker deletes messages older than the retention (7 days) by that time."""
    start = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime(time.time() - 3 * 86_400))
    path = stack.tmp_path / "days.jsonl"
    lines = _simulate(stack, path, "2d", start=start)
    connect = stack.callwatch("connect", "simulate", "--seed", "7", "--start", start, "--duration", "2d")
    assert connect.returncode == 0, connect.stderr
    stack.end_of_stream(lines)
    expected = _replay(stack, path)
    worker = WorkerProcess(stack)
    try:
        rows = _wait(_complete(stack, len(expected)), 180, "the interval report", [worker])
        assert rows == expected
        metrics = _wait(lambda: (m := worker.metrics()).get("callwatch_events_accepted_total") == len(lines) and m,
                        30, "the event counters", [worker])
        assert metrics[f"callwatch_events_received_total{{source=kafka:{stack.prefix}events}}"] == len(lines)
        assert metrics[f"callwatch_events_rejected_total{{source=kafka:{stack.prefix}events}}"] == 0
        today = {k: v for k, v in metrics.items() if k.startswith("callwatch_window_calls_offered{") and "window=today" in k}
        assert today and sum(today.values()) > 0  # the board of the stream's last day
        # The counters since the start hold every call of the stream: the report's, summed over its windows.
        for figure in ("offered", "answered", "abandoned"):
            counted = sum(v for k, v in metrics.items() if k.startswith(f"callwatch_calls_{figure}_total{{") and "queue=*" in k)
            assert counted == sum(row[figure] for row in expected if row["queue"] == "*") > 0, figure
        assert 0 <= metrics["callwatch_worker_read_loop_age_seconds"] < 5  # the loop goes round, idle too
    finally:
        worker.stop()
    # Plain text: no terminal spinner (Faust's turned the root logger down to DEBUG to spin on it).
    assert "\x1b[" not in worker.log_path.read_text(errors="replace")


def test_kill_9_in_the_middle_then_a_restart_gives_exactly_the_replay_report(stack: Stack) -> None:
    """About 200,000 events streamed into Kafka while the worker runs; SIGKILL when it is about a
    quarter through, then a restart: no event lost, none counted twice. The second half is written
    after the kill: the worker may read as fast as the producer writes."""
    path = stack.tmp_path / "stream.jsonl"
    lines = _simulate(stack, path, "24d", seed=11, start="2024-03-01T00:00:00Z")
    assert len(lines) > 195_000
    expected = _replay(stack, path)
    half = len(lines) // 2
    producing = threading.Thread(target=stack.produce, args=(lines[:half],))
    # The shortest session timeout: the new worker's group waits that long for the killed one.
    first = WorkerProcess(stack, "first", "--session-timeout", "6s")
    workers = [first]
    try:
        producing.start()
        _wait(lambda: first.received() >= len(lines) // 4, 180, "a quarter of the events", workers)
        killed_at = first.received()
        first.kill9()
        assert killed_at < len(lines)
        second = WorkerProcess(stack, "second", "--session-timeout", "6s")
        workers = [second]
        producing.join(timeout=300)
        assert not producing.is_alive()
        stack.produce(lines[half:])
        stack.end_of_stream(lines)
        rows = _wait(_complete(stack, len(expected)), 300, "the interval report after the restart", workers)
        assert rows == expected
        # /metrics follows at the next publication (at most --publish-every later).
        _wait(lambda: second.metrics().get("callwatch_events_accepted_total") == len(lines), 30,
              "every event accepted once", workers)
    finally:
        stop_all(workers)
        producing.join(timeout=300)


MALFORMED = [
    b"this is not JSON",
    b'{"v": 1, "event_id": "bad-1", "type": "offered", "ts": "2024-03-01T06:10:00Z", "line": "999"}',
    b'{"v": 1, "event_id": "bad-2", "call_id": "x", "type": "answered", "ts": "01/03/2024 06:11", '
    b'"line": "999", "queue": "999-police"}',
    b'{"v": 1, "event_id": "bad-3", "call_id": "y", "type": "offered", "ts": "2024-03-01T06:12:00Z", '
    b'"line": "101", "queue": "101-general", "caller": "07700900123"}',
    b'{"v": 2, "event_id": "bad-4"}',
    b"[1, 2, 3]",
]


@dataclass(frozen=True)
class MixedRun:
    """What one worker made of events with bad, duplicate and late messages among them."""

    prefix: str
    events: list[bytes]
    expected: list[dict[str, Any]]  # the replay's report of the same messages
    rows: list[dict[str, Any]]
    letters: list[tuple[dict[str, str], bytes]]
    metrics: dict[str, float]


@pytest.fixture(scope="module")
def mixed_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MixedRun]:
    """Three sites' events with every kind of malformed message among them, then five duplicates and
    one event three hours behind the newest (late), through one worker: the dead-letter test and the
    late-and-duplicates test each assert their part of this one run."""
    stack = Stack(kafka_bootstrap, tmp_path_factory.mktemp("mixed"))
    stack.create_topics()
    try:
        path = stack.tmp_path / "mixed.jsonl"
        events = _sites(stack, path, "3h", seed=3, start="2024-03-01T06:00:00Z", sites=SITES[:3])
        mixed: list[bytes] = []
        for number, line in enumerate(events):
            mixed.append(line)
            if number % 300 == 150 and number // 300 < len(MALFORMED):
                mixed.append(MALFORMED[number // 300])
        assert len(mixed) == len(events) + len(MALFORMED)
        late = dict(json.loads(events[0]), event_id="late-one")
        mixed += events[-5:] + [json.dumps(late).encode()]
        path.write_bytes(b"\n".join(mixed) + b"\n")
        expected = _replay(stack, path)  # replay rejects the same lines, drops the same duplicates
        stack.produce(mixed)
        stack.end_of_stream(events)
        worker = WorkerProcess(stack)
        try:
            rows = _wait(_complete(stack, len(expected)), 180, "the interval report", [worker])
            rejected = f"callwatch_events_rejected_total{{source=kafka:{stack.prefix}events}}"
            metrics = _wait(lambda: (m := worker.metrics()).get(rejected) == len(MALFORMED)
                            and m.get("callwatch_events_late_total") == 1 and m, 30, "the counters", [worker])
            letters = _dead_letters(stack)
        finally:
            worker.stop()
        yield MixedRun(stack.prefix, events, expected, rows, letters, metrics)
    finally:
        stack.delete_topics()


def test_malformed_messages_are_dead_lettered_with_a_reason_and_the_worker_goes_on(mixed_run: MixedRun) -> None:
    assert mixed_run.rows == mixed_run.expected
    letters = mixed_run.letters
    assert len(letters) == len(MALFORMED)
    reasons = sorted(headers["callwatch-reason"] for headers, _value in letters)  # partitions interleave
    assert [reason.split(":")[0] for reason in reasons] == [
        "invalid call_id", "invalid caller", "invalid event", "invalid ts", "invalid v", "not JSON"], reasons
    assert all(json.loads(value)["reason"] == headers["callwatch-reason"] for headers, value in letters)
    assert b"07700900123" not in b"".join(value for _headers, value in letters)  # numbers are masked
    assert mixed_run.metrics[f"callwatch_events_rejected_total{{source=kafka:{mixed_run.prefix}events}}"] == len(MALFORMED)
    assert mixed_run.metrics["callwatch_events_accepted_total"] == len(mixed_run.events)


def test_late_and_duplicate_events_move_the_exported_counters(mixed_run: MixedRun) -> None:
    assert mixed_run.metrics["callwatch_events_late_total"] == 1
    assert mixed_run.metrics["callwatch_events_duplicate_total"] == 5
    assert mixed_run.metrics["callwatch_events_accepted_total"] == len(mixed_run.events)


def _dead_letters(stack: Stack) -> list[tuple[dict[str, str], bytes]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(stack.prefix + "deadletter", 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        letters: list[tuple[dict[str, str], bytes]] = []
        deadline = time.monotonic() + 30
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500).get(tp, []):
                letters.append(({k: v.decode() for k, v in record.headers}, record.value))
        return letters
    finally:
        consumer.close()


def test_on_the_wall_clock_a_backlog_is_neither_late_nor_missing_from_the_board(stack: Stack) -> None:
    """Calls that waited in Kafka while no worker ran (five minutes old: more than the two minutes of
    allowed lateness) are read in order when a worker starts: none is counted late, and the
    wallboard's 15-minute window shows them. The wall clock moves a partition only once it has read
    what the topic holds for it; before, the first idle loop moved every partition to the clock
    and the whole backlog was late."""
    from streams.domain.events import format_ts

    start_ms = int(time.time() * 1000) - 300_000
    lines = []
    for number in range(40):
        offered_ms = start_ms + number * 1000
        call = {"v": 1, "call_id": f"backlog-{number}", "site": "backlog", "line": "999", "queue": "999-police"}
        lines.append(json.dumps({**call, "event_id": f"o-{number}", "type": "offered", "ts": format_ts(offered_ms)}).encode())
        lines.append(json.dumps({**call, "event_id": f"a-{number}", "type": "answered", "agent": "agent-1",
                                 "ts": format_ts(offered_ms + 4000)}).encode())
    lines.sort(key=lambda line: json.loads(line)["ts"])  # as they happened (the board waits only 0.5 s)
    stack.produce(lines)
    worker = WorkerProcess(stack, "worker", "--clock", "wall")
    try:
        def board() -> dict[str, float] | None:
            try:
                samples = worker.metrics()
            except OSError:
                return None
            settled = (samples.get("callwatch_events_accepted_total") == len(lines)
                       and samples.get("callwatch_window_calls_answered{line=999,queue=*,site=backlog,window=15m}") == 40)
            return samples if settled else None

        samples = _wait(board, 120, "the backlog on the board", [worker])
        assert samples["callwatch_events_late_total"] == 0
        assert samples["callwatch_window_calls_arrived{line=999,queue=*,site=backlog,window=15m}"] == 40
        assert samples["callwatch_window_calls_answered{line=999,queue=*,site=backlog,window=15m}"] == 40
    finally:
        worker.stop()


"""Benchmark: `callwatch worker` end to end on a real broker, side by side in one run with
(a) a raw aiokafka consumer that only decodes the same topic (the floor), twice: with the standard
library's `json.loads` and with callwatch's own typed msgspec decoder (`streams.io.codec`), and
(b) a textbook Faust app that counts the same figures with tumbling windowed tables (the usual way).

A script, not a test: it prints its figures (docs/worker.md keeps the table).

- Throughput: the simulated stream is written to a fresh events topic first; each contender then
  reads it from the start in its own process, one after the other. Rate = events / (time of the
  last figure - time the first event was read); for a worker, the events read after its first
  count on /metrics / (time of the last figure - time of that count). The worker's last figure is
  the last interval row on the figures topic (after the end-of-stream marker), checked against
  `callwatch replay`.
  Then two worker processes started together share the same stream (on topics of their own): how
  the worker scales to a second core; the time their consumer group takes to settle counts.
- Latency at --rate events/s: synthetic calls (offered, answered half a second later) stamped with
  the wall clock; for each offered event, the time from its send to the first scrape of /metrics
  whose arrivals count includes it (p50, p99). The raw consumer: send to decode.
- Memory (--memory): the worker's resident memory after 1 M and after 5 M events of one run.

    .venv/bin/python -m tests.benchmarks.bench_worker              # 1 M events, latency, textbook
    .venv/bin/python -m tests.benchmarks.bench_worker --quick      # 200 k events, shorter latency run
    .venv/bin/python -m tests.benchmarks.bench_worker --memory     # also 5 M events for memory
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from datetime import datetime, timedelta  # at module level: the textbook app's model resolves them here
from pathlib import Path
from typing import Any

from streams.domain.config import FlowConfig

REPO = Path(__file__).resolve().parents[2]
KAFKA_DIR = REPO / "deploy" / "kafka"
CALLWATCH = [sys.executable, "-m", "streams.cli"]
EVENTS_PER_SIMULATED_DAY = 8_400


# --- set-up ----------------------------------------------------------------------------------

def _broker() -> str:
    env = {**os.environ, "PYTHON": sys.executable}
    env.setdefault("CALLWATCH_KAFKA_MAX_LIFETIME_S", "7200")
    done = subprocess.run([str(KAFKA_DIR / "start.sh")], env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"deploy/kafka/start.sh failed:\n{done.stdout}{done.stderr}")
    return os.environ.get("CALLWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:19092")


def _create_topics(bootstrap: str, prefix: str, repo: Path = REPO) -> None:
    """The topics `repo`'s deploy/kafka/topics.py declares (an earlier worker may need others)."""
    from kafka import KafkaAdminClient

    spec = importlib.util.spec_from_file_location("callwatch_deploy_topics", repo / "deploy" / "kafka" / "topics.py")
    assert spec is not None and spec.loader is not None
    topics = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = topics
    spec.loader.exec_module(topics)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-worker")
    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            topics.ensure_topics(admin, prefix, -1)
    finally:
        admin.close()


def _delete_topics(bootstrap: str, prefix: str) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="bench-worker")
    try:
        mine = [name for name in admin.list_topics() if name.startswith(prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def _simulated(target_events: int, cache: Path) -> Path:
    days = max(1, round(target_events / EVENTS_PER_SIMULATED_DAY))
    path = cache / f"simulated-{days}d.jsonl"
    if not path.exists():
        print(f"simulating {days} days (about {target_events:,} events) ...", file=sys.stderr)
        subprocess.run(CALLWATCH + ["simulate", "--seed", "1", "--start", "2023-01-01T00:00:00Z", "--duration",
                                    f"{days}d", "--out", str(path)], check=True, cwd=REPO)
    return path


async def _produce_file(bootstrap: str, topic: str, path: Path) -> tuple[int, int]:
    """Every line as a message keyed like connectors.kafka_sink (message time: now, so that the
    broker's 7-day retention does not delete simulated history). Returns (events, last event ms)."""
    from aiokafka import AIOKafkaProducer

    from streams.domain.events import parse_ts

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    count = last = 0
    try:
        with path.open("rb") as lines:
            for line in lines:
                obj = json.loads(line)
                await producer.send(topic, line.rstrip(b"\n"), key=(obj.get("site") or "default").encode())
                count += 1
                if not count % 1000:
                    last = max(last, parse_ts(obj["ts"]))
            last = max(last, parse_ts(obj["ts"]))
        await producer.flush()
    finally:
        await producer.stop()
    return count, last


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def _memory_mib(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) of a process, MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class Worker:
    def __init__(self, bootstrap: str, prefix: str, workdir: Path, *args: str, env: dict[str, str] | None = None,
                 cwd: Path = REPO) -> None:
        self.port = _free_port()
        self.log = workdir / f"worker-{self.port}.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
        environment.update(CALLWATCH_KAFKA_BOOTSTRAP=bootstrap, CALLWATCH_KAFKA_TOPIC_PREFIX=prefix, **(env or {}))
        self.process = subprocess.Popen(CALLWATCH + ["worker", "--workdir", str(workdir / "faust"),
                                                     "--metrics-port", str(self.port), *args],
                                        env=environment, cwd=cwd, stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def received(self) -> float:
        try:
            return sum(v for k, v in _scrape(self.port).items() if k.startswith("callwatch_events_received_total"))
        except OSError:
            return 0.0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _figure_rows(bootstrap: str, topic: str) -> tuple[int, float]:
    """(interval rows on the figures topic, send time of the newest one in seconds)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        keys: set[bytes] = set()
        newest = 0
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for records in consumer.poll(timeout_ms=500, max_records=50_000).values():
                for record in records:
                    if record.key is not None and not record.key.startswith(b"live|"):
                        keys.add(record.key)
                        newest = max(newest, record.timestamp)
        return len(keys), newest / 1000
    finally:
        consumer.close()


# --- throughput --------------------------------------------------------------------------------

def _throughput_worker(bootstrap: str, prefix: str, events: int, expected_rows: int, workdir: Path,
                       timeout_s: float, processes: int = 1, cwd: Path = REPO) -> dict[str, float]:
    """`processes` workers started together share the partitions (they join one consumer group;
    the time the group takes to settle counts). Memory: the largest of them."""
    workers = [Worker(bootstrap, prefix, workdir, cwd=cwd) for _ in range(processes)]
    try:
        deadline = time.monotonic() + timeout_s
        first, read = _first_count(workers, deadline)
        rows, newest = 0, 0.0
        while rows < expected_rows and time.monotonic() < deadline:
            time.sleep(2)
            rows, newest = _figure_rows(bootstrap, prefix + "figures")
        rss, peak = max(_memory_mib(worker.process.pid) for worker in workers)
        assert rows >= expected_rows, f"worker did not finish (rows {rows}/{expected_rows})"
        return {"events": events - read, "seconds": newest - first, "rss_mib": rss, "peak_mib": peak}
    finally:
        for worker in workers:
            worker.stop()


def _first_count(workers: list[Worker], deadline: float) -> tuple[float, float]:
    """(when, events read by then) at the workers' first count on /metrics. A worker counts at each
    publish (every second while reading a backlog), so its first count already includes up to a
    second of reading: the rate is taken over what it read after it (seen within 50 ms)."""
    while time.monotonic() < deadline:
        now, read = time.time(), sum(worker.received() for worker in workers)
        if read:
            return now, read
        time.sleep(0.05)
    raise AssertionError("the workers read nothing")


RAW_JSON = "raw aiokafka consumer, json.loads (decode only)"
RAW_MSGSPEC = "raw aiokafka consumer, msgspec typed (decode only)"


def _child_raw(bootstrap: str, topic: str, total: int, codec: str) -> None:
    """Decode every message of the topic with `codec` (json: json.loads; msgspec: the pipeline's
    codec, typed for every event, `json` for the one end-of-stream marker); nothing else."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.io import codec as callwatch_codec
    from streams.worker.ingest import WorkerOptions

    decode = json.loads if codec == "json" else callwatch_codec.decode
    batch = WorkerOptions(app_id="bench").batch

    async def run() -> dict[str, float]:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            partitions = [TopicPartition(topic, p) for p in range(6)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            count, first = 0, None
            while count < total:
                # As many records per poll as the worker takes (fewer are faster: docs/benchmarks.md).
                for records in (await consumer.getmany(timeout_ms=500, max_records=batch)).values():
                    if first is None:
                        first = time.time()
                    for record in records:
                        decode(record.value)
                    count += len(records)
            assert first is not None
            return {"events": count, "seconds": time.time() - first}
        finally:
            await consumer.stop()

    print(json.dumps(asyncio.run(run())))


TEXTBOOK_SL_MS = {"999": 10_000}


def _textbook_app(bootstrap: str, prefix: str, total: int, result_path: Path, workdir: Path,
                  metrics_port: int | None) -> Any:
    """The usual way: a Faust agent over the events, call state in a table, and a tumbling 15-minute
    windowed table per figure keyed by site|line|queue (line totals counted by legs)."""
    import faust

    class Event(faust.Record, isodates=True, serializer="json"):  # type: ignore[call-arg]
        v: int
        event_id: str
        type: str
        ts: datetime
        call_id: str = ""
        line: str = ""
        queue: str = ""
        site: str = "default"

    app = faust.App(f"{prefix}textbook-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}", web_enabled=False,
                    topic_disable_leader=True, topic_partitions=6, consumer_auto_offset_reset="earliest",
                    datadir=str(workdir / "textbook"))
    topic = app.topic(prefix + "events", value_type=Event, key_serializer="raw")
    offered_at = app.Table("offered-at", default=lambda: None, partitions=6)
    windowed = {name: app.Table(name, default=int, partitions=6).tumbling(timedelta(minutes=15), expires=timedelta(hours=2))
                .relative_to_field(Event.ts)
                for name in ("arrivals", "answered", "abandoned", "timed-out", "within-sl", "answer-ms")}
    state: dict[str, Any] = {"count": 0, "first": None, "arrivals": 0}
    gauge = None
    if metrics_port:
        from prometheus_client import Gauge, start_http_server

        gauge = Gauge("textbook_calls_arrived", "offered events counted in the windowed table")
        start_http_server(metrics_port, addr="127.0.0.1")

    @app.agent(topic, concurrency=1)
    async def count_figures(stream: Any) -> None:
        async for event in stream:
            if state["first"] is None:
                state["first"] = time.time()
            state["count"] += 1
            if event.type != "agent_state":
                groups = (f"{event.site}|{event.line}|{event.queue}", f"{event.site}|{event.line}|*")
                leg = f"{event.call_id}|{event.queue}"
                if event.type == "offered":
                    offered_at[leg] = event.ts.timestamp()
                    for group in groups:
                        windowed["arrivals"][group] += 1
                    state["arrivals"] += 1
                    if gauge is not None:
                        gauge.set(state["arrivals"])
                elif event.type in ("answered", "abandoned", "timeout") and offered_at[leg] is not None:
                    wait_ms = (event.ts.timestamp() - offered_at[leg]) * 1000
                    name = {"answered": "answered", "abandoned": "abandoned", "timeout": "timed-out"}[event.type]
                    for group in groups:
                        windowed[name][group] += 1
                        if event.type == "answered":
                            windowed["answer-ms"][group] += int(wait_ms)
                            if wait_ms < TEXTBOOK_SL_MS.get(event.line, 30_000):
                                windowed["within-sl"][group] += 1
            if state["count"] >= total:
                result_path.write_text(json.dumps({"events": state["count"], "seconds": time.time() - state["first"]}))

    @app.timer(2.0)
    async def progress() -> None:
        if state["first"] is not None:
            result_path.with_suffix(".progress").write_text(
                json.dumps({"events": state["count"], "seconds": time.time() - state["first"]}))

    return app


def _child_textbook(bootstrap: str, prefix: str, total: int, result: str, workdir: str, port: int) -> None:
    from faust import Worker as FaustWorker

    app = _textbook_app(bootstrap, prefix, total, Path(result), Path(workdir), port or None)
    FaustWorker(app, loglevel="error", quiet=True, redirect_stdouts=False).execute_from_commandline()


def _run_textbook(bootstrap: str, prefix: str, total: int, workdir: Path, timeout_s: float,
                  port: int = 0) -> tuple[subprocess.Popen[bytes], Path]:
    result = workdir / f"textbook-{uuid.uuid4().hex[:6]}.json"
    process = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.bench_worker", "--child", "textbook",
                                bootstrap, prefix, str(total), str(result), str(workdir), str(port)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=(workdir / "textbook.log").open("w"))
    return process, result


def _throughput_textbook(bootstrap: str, prefix: str, total: int, workdir: Path, timeout_s: float) -> dict[str, float]:
    process, result = _run_textbook(bootstrap, prefix, total, workdir, timeout_s)
    try:
        deadline = time.monotonic() + timeout_s
        while not result.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(1)
        rss, peak = _memory_mib(process.pid) if process.poll() is None else (0.0, 0.0)
        path = result if result.exists() else result.with_suffix(".progress")
        figures = json.loads(path.read_text()) if path.exists() else {"events": 0, "seconds": timeout_s}
        figures.update(rss_mib=rss, peak_mib=peak, finished=result.exists())
        return figures
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- latency -----------------------------------------------------------------------------------

class Paced:
    """Synthetic calls at `rate` events per second, stamped with the wall clock: each call offered,
    then answered half a second later (so half the events are offers). Records the send time
    (time.time()) of each offer of the first `seconds`, in order; the traffic goes on `tail_s`
    longer, so that the last measured offers see the steady state, not the end of the stream."""

    def __init__(self, bootstrap: str, topic: str, rate: int, seconds: float, site: str, tail_s: float = 0.0) -> None:
        self.bootstrap, self.topic, self.rate, self.seconds, self.site = bootstrap, topic, rate, seconds, site
        self.tail_s = tail_s
        self.offers: list[tuple[str, float]] = []  # (event_id, sent at)

    def run(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        from aiokafka import AIOKafkaProducer

        from streams.domain.events import format_ts

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=0)
        await producer.start()
        try:
            start = time.time()
            answer_after = self.rate // 2  # events: an answer half a second after its offer
            total = int(self.rate * (self.seconds + self.tail_s))
            measured = int(self.rate * self.seconds)
            for number in range(total):
                due = start + number / self.rate
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                now = time.time()
                call = number // 2 if number % 2 == 0 else (number - answer_after) // 2
                if number % 2 == 0:
                    kind = "offered"
                elif call >= 0:
                    kind = "answered"
                else:
                    continue
                event = {"v": 1, "event_id": f"{kind}-{call}", "call_id": f"call-{call}", "type": kind,
                         "ts": format_ts(int(now * 1000)), "line": "999", "queue": "999-police", "site": self.site}
                if kind == "answered":
                    event["agent"] = "agent-1"
                await producer.send(self.topic, json.dumps(event).encode(), key=self.site.encode())
                if kind == "offered" and number < measured:
                    self.offers.append((event["event_id"], now))
            await producer.flush()
        finally:
            await producer.stop()


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    if not ordered:
        return float("nan"), float("nan")
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _sample(port: int, metric: str) -> float:
    """One metric's value from /metrics, found in the text (parsing the whole page every 20 ms
    would cost this process the time its producer thread needs)."""
    import re

    name, _, labels = metric.partition("{")
    wanted = {tuple(item.split("=", 1)) for item in labels.rstrip("}").split(",") if item}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for match in re.finditer(rf"^{re.escape(name)}(?:{{(.*?)}})? (\S+)$", text, re.MULTILINE):
        found = {tuple(part.split("=", 1)) for part in re.findall(r'(\w+="[^"]*")', match.group(1) or "")}
        if {(k, v.strip('"')) for k, v in found} == wanted:
            return float(match.group(2))
    return 0.0


def _latency_by_scraping(port: int, metric: str, paced: Paced, base: float = 0.0) -> list[float]:
    """Scrape every 20 ms while the paced producer runs; the k-th offer is visible at the first
    scrape whose count (less `base`) reaches k."""
    seen: list[tuple[float, float]] = []  # (scrape time, count)
    producing = threading.Thread(target=paced.run)
    producing.start()
    while producing.is_alive() or (seen and seen[-1][1] < len(paced.offers)):
        try:
            value = _sample(port, metric) - base
        except OSError:
            value = 0.0
        seen.append((time.time(), value))
        if not producing.is_alive() and len(seen) > 1 and seen[-1][0] - seen[0][0] > paced.seconds + 30:
            break
        time.sleep(0.02)
    producing.join()
    latencies: list[float] = []
    index = 0
    for number, (_event_id, sent) in enumerate(paced.offers, 1):
        while index < len(seen) and seen[index][1] < number:
            index += 1
        if index == len(seen):
            break
        latencies.append(seen[index][0] - sent)
    return latencies


def _latency_worker(bootstrap: str, rate: int, seconds: float, workdir: Path, extra: list[str],
                    env: dict[str, str]) -> tuple[float, float, int]:
    prefix = f"bench.lat.{uuid.uuid4().hex[:8]}."
    _create_topics(bootstrap, prefix)
    worker = Worker(bootstrap, prefix, workdir, "--clock", "wall", *extra, env=env)
    try:
        _warm_up(bootstrap, prefix, worker.port)
        site = "bench"
        metric = f"callwatch_window_calls_arrived{{line=999,queue=*,site={site},window=15m}}"
        paced = Paced(bootstrap, prefix + "events", rate, seconds, site, tail_s=5.0)
        latencies = _latency_by_scraping(worker.port, metric, paced)
        p50, p99 = _percentiles(latencies)
        return p50, p99, len(latencies)
    finally:
        worker.stop()
        _delete_topics(bootstrap, prefix)


def _warm_up(bootstrap: str, prefix: str, port: int) -> None:
    """Wait until the worker serves /metrics and holds its partitions (a first event goes through)."""
    paced = Paced(bootstrap, prefix + "events", 20, 1.0, "warmup")
    paced.run()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if _sample(port, "callwatch_window_calls_arrived{line=999,queue=*,site=warmup,window=15m}") > 0:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("the worker did not start within 120 s")


def _latency_textbook(bootstrap: str, rate: int, seconds: float, workdir: Path) -> tuple[float, float, int]:
    prefix = f"bench.lat.{uuid.uuid4().hex[:8]}."
    _create_topics(bootstrap, prefix)
    port = _free_port()
    process, _result = _run_textbook(bootstrap, prefix, 10**12, workdir, 0, port)
    try:
        warm = Paced(bootstrap, prefix + "events", 20, 1.0, "warmup")
        warm.run()
        deadline = time.monotonic() + 120
        base = 0.0
        while time.monotonic() < deadline and base < len(warm.offers):  # every warm-up offer counted
            try:
                base = _sample(port, "textbook_calls_arrived")
            except OSError:
                pass
            time.sleep(0.2)
        paced = Paced(bootstrap, prefix + "events", rate, seconds, "bench", tail_s=5.0)
        latencies = _latency_by_scraping(port, "textbook_calls_arrived", paced, base)
        p50, p99 = _percentiles(latencies)
        return p50, p99, len(latencies)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _delete_topics(bootstrap, prefix)


def _latency_raw(bootstrap: str, rate: int, seconds: float) -> tuple[float, float, int]:
    prefix = f"bench.lat.{uuid.uuid4().hex[:8]}."
    _create_topics(bootstrap, prefix)
    received: dict[str, float] = {}
    ready = threading.Event()
    stop = threading.Event()

    async def consume() -> None:
        from aiokafka import AIOKafkaConsumer

        from streams.io.codec import decode_fields

        consumer = AIOKafkaConsumer(prefix + "events", bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex}",
                                    auto_offset_reset="latest", fetch_max_wait_ms=20)
        await consumer.start()
        try:
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            await consumer.seek_to_end()
            ready.set()
            while not stop.is_set():
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now = time.time()
                    for record in records:
                        received[decode_fields(record.value).event_id] = now
        finally:
            await consumer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(consume()))
    thread.start()
    try:
        ready.wait(60)
        time.sleep(1)
        paced = Paced(bootstrap, prefix + "events", rate, seconds, "bench", tail_s=5.0)
        paced.run()
        time.sleep(2)
    finally:
        stop.set()
        thread.join(30)
        _delete_topics(bootstrap, prefix)
    latencies = [received[event_id] - sent for event_id, sent in paced.offers if event_id in received]
    p50, p99 = _percentiles(latencies)
    return p50, p99, len(latencies)


# --- memory ------------------------------------------------------------------------------------

def _memory_run(bootstrap: str, path: Path, workdir: Path, timeout_s: float) -> list[tuple[int, float, float]]:
    """One worker over the 5 M-event stream: resident memory when it has read 1 M, 2 M, ... events."""
    prefix = f"bench.mem.{uuid.uuid4().hex[:8]}."
    _create_topics(bootstrap, prefix)
    try:
        total, _last = asyncio.run(_produce_file(bootstrap, prefix + "events", path))
        worker = Worker(bootstrap, prefix, workdir)
        samples: list[tuple[int, float, float]] = []
        try:
            marks = [m for m in range(1_000_000, total + 1, 1_000_000)] + [total]
            deadline = time.monotonic() + timeout_s
            while marks and time.monotonic() < deadline:
                received = worker.received()
                if received >= marks[0]:
                    rss, peak = _memory_mib(worker.process.pid)
                    samples.append((int(received), rss, peak))
                    while marks and marks[0] <= received:
                        marks.pop(0)
                time.sleep(0.5)
        finally:
            worker.stop()
        return samples
    finally:
        _delete_topics(bootstrap, prefix)


# --- main --------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="200 k events and a 20 s latency run")
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the throughput run")
    parser.add_argument("--rate", type=int, default=1000, help="events per second of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--textbook-timeout", type=float, default=600.0,
                        help="give the textbook app this long; its rate is then measured on what it did")
    parser.add_argument("--memory", action="store_true", help="also the worker's memory over 5 M events")
    parser.add_argument("--skip", nargs="*", default=[], choices=["raw", "worker", "workers", "textbook", "latency"],
                        help="workers: the run of two worker processes sharing the partitions")
    parser.add_argument("--cache", default=str(REPO / "var" / "bench"))
    parser.add_argument("--baseline", help="a copy of an earlier callwatch (git archive <commit> | tar -x -C DIR) "
                                           "whose worker is measured side by side in the same run")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "raw":
            _child_raw(rest[0], rest[1], int(rest[2]), rest[3])
        else:
            _child_textbook(rest[0], rest[1], int(rest[2]), rest[3], rest[4], int(rest[5]))
        return
    if args.quick:
        args.events, args.latency_seconds = 200_000, 20.0
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    workdir = cache / f"worker-run-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    try:
        _run(args, cache, workdir)
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def _filled_topics(bootstrap: str, path: Path, repo: Path = REPO) -> tuple[str, int]:
    """Fresh topics (their prefix) whose events topic holds the file, then an end-of-stream marker."""
    from streams.settings import KafkaSettings, Settings
    from streams.kafka.figures_topic import send_end_of_stream

    prefix = f"bench.tp.{uuid.uuid4().hex[:8]}."
    _create_topics(bootstrap, prefix, repo)
    started = time.time()
    total, last_ms = asyncio.run(_produce_file(bootstrap, prefix + "events", path))
    print(f"wrote {total:,} events to {prefix}events in {time.time() - started:.0f} s", file=sys.stderr)
    send_end_of_stream(Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)), last_ms)
    return prefix, total


def _run(args: argparse.Namespace, cache: Path, workdir: Path) -> None:
    bootstrap = _broker()
    path = _simulated(args.events, cache)

    prefix, total = _filled_topics(bootstrap, path)
    prefixes = [prefix]
    try:
        replay = subprocess.run(CALLWATCH + ["replay", str(path)], capture_output=True, text=True, cwd=REPO)
        expected_rows = len(replay.stdout.splitlines())
        results: dict[str, dict[str, Any]] = {}
        if "raw" not in args.skip:
            for name, codec in ((RAW_JSON, "json"), (RAW_MSGSPEC, "msgspec")):
                done = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_worker", "--child", "raw",
                                       bootstrap, prefix + "events", str(total), codec], capture_output=True,
                                      text=True, cwd=REPO, timeout=1200)
                results[name] = json.loads(done.stdout)
        if "worker" not in args.skip:
            results["callwatch worker"] = _throughput_worker(bootstrap, prefix, total, expected_rows, workdir, 1800)
            _check_report(bootstrap, prefix, replay.stdout)
        if args.baseline:
            third, _total = _filled_topics(bootstrap, path, Path(args.baseline).resolve())
            prefixes.append(third)
            results[f"callwatch worker of {Path(args.baseline).name}"] = _throughput_worker(
                bootstrap, third, total, expected_rows, workdir, 1800, cwd=Path(args.baseline).resolve())
            _check_report(bootstrap, third, replay.stdout)
        if "textbook" not in args.skip:
            results["textbook Faust (windowed tables)"] = _throughput_textbook(bootstrap, prefix, total, workdir,
                                                                               args.textbook_timeout)
        if "workers" not in args.skip:
            # Topics of their own: the first workers' outcomes and figures would be read again.
            second, _total = _filled_topics(bootstrap, path)
            prefixes.append(second)
            results["callwatch worker, two processes"] = _throughput_worker(bootstrap, second, total, expected_rows,
                                                                            workdir, 1800, processes=2)
            _check_report(bootstrap, second, replay.stdout)
    finally:
        for each in prefixes:
            _delete_topics(bootstrap, each)

    floors = [(label, results[name]) for label, name in (("json", RAW_JSON), ("msgspec", RAW_MSGSPEC))
              if name in results]
    textbook = results.get("textbook Faust (windowed tables)")
    if textbook is not None and not textbook["events"]:
        textbook = None  # it did not get going
    print(f"\nThroughput, {total:,} simulated events, 6 partitions, one process each unless said:\n")
    print("| reader | events/s | vs raw consumer, json | vs raw consumer, msgspec | vs textbook Faust "
          "| resident MiB at end |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, figures in results.items():
        rate = figures["events"] / figures["seconds"] if figures["seconds"] else 0.0
        vs_raw = " | ".join(f"{rate / (floor['events'] / floor['seconds']):.0%}" for _label, floor in floors) \
            if len(floors) == 2 else "- | -"
        vs_textbook = f"{rate / (textbook['events'] / textbook['seconds']):.1f}x" if textbook else "-"
        note = "" if figures.get("finished", True) else f" (stopped after {figures['events']:,} events)"
        rss = f"{figures['rss_mib']:.0f}" if figures.get("rss_mib") else "-"
        print(f"| {name}{note} | {rate:,.0f} | {vs_raw} | {vs_textbook} | {rss} |", flush=True)

    if "latency" not in args.skip:
        print(f"\nLatency at {args.rate:,} events/s for {args.latency_seconds:.0f} s (event sent -> figure on /metrics):\n")
        print("| reader | p50 s | p99 s | offers measured |")
        print("|---|---:|---:|---:|")
        rows = [("raw aiokafka consumer (send -> decoded)", lambda: _latency_raw(bootstrap, args.rate, args.latency_seconds)),
                (f"callwatch worker, defaults (live lateness {FlowConfig().live_lateness_s:g} s, publish every 1 s)",
                 lambda: _latency_worker(bootstrap, args.rate, args.latency_seconds, workdir, [], {})),
                ("callwatch worker, live lateness 0.25 s, publish every 0.25 s",
                 lambda: _latency_worker(bootstrap, args.rate, args.latency_seconds, workdir,
                                         ["--publish-every", "250ms"], {"CALLWATCH_LIVE_LATENESS_S": "0.25"})),
                ("textbook Faust (gauge set per event)",
                 lambda: _latency_textbook(bootstrap, args.rate, args.latency_seconds, workdir))]
        for name, measure in rows:
            p50, p99, count = measure()
            print(f"| {name} | {p50:.3f} | {p99:.3f} | {count:,} |", flush=True)

    if args.memory:
        big = _simulated(5_000_000, cache)
        print("\nWorker memory over one 5 M-event run:\n")
        print("| events read | resident MiB | peak resident MiB |")
        print("|---:|---:|---:|")
        for received, rss, peak in _memory_run(bootstrap, big, workdir, 3600):
            print(f"| {received:,} | {rss:.0f} | {peak:.0f} |", flush=True)


def _check_report(bootstrap: str, prefix: str, replay_output: str) -> None:
    from streams.settings import KafkaSettings, Settings
    from streams.kafka.figures_topic import read_interval_report

    rows = read_interval_report(Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=prefix)))
    expected = [json.loads(line) for line in replay_output.splitlines()]
    print(f"worker report {'==' if rows == expected else '!='} replay report ({len(rows):,} rows)", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The Faust app of `callwatch worker`, built by `create_app`: the ingest service, the tables, the timer
publishing the live board and counters, and Faust's web server serving the wallboard and /metrics."""

from __future__ import annotations

import time
from typing import Any, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from streams.domain.live import BoardSnapshot, side_by_side
from streams.kafka.clients import faust_broker
from streams.kafka.figures_topic import live_rows
from streams.metrics import CONSUMER_LAG, READ_LOOP_AGE, FigureCollector, PipelineStatus
from streams.settings import Settings
from streams.wallboard.server import LatestBoard, add_board_routes

from .ingest import CallIngest, WorkerOptions
from .kafka import CHECKPOINT_MAX_BYTES, CHECKPOINTS_TABLE, MARKS_TABLE, Topology

NEWS_EVERY_S = 0.1


class TableMarks:  # the wallboard's callback marks in a Faust table (they survive a restart)
    def __init__(self, table: Any) -> None:
        self.table = table

    def mark_done(self, site: str, line: str, call_id: str) -> None:
        self.table[f"{site}|{line}|{call_id}"] = "done"

    def is_done(self, site: str, line: str, call_id: str) -> bool:
        return f"{site}|{line}|{call_id}" in self.table


class WorkerCounters(Collector):
    """Every counter the worker keeps, its consumer lag and its loop's age, on /metrics."""

    def __init__(self, ingest: CallIngest) -> None:
        self.ingest = ingest

    def collect(self) -> Iterator[Any]:
        ingest, parts = self.ingest, list(self.ingest.parts.values())
        for name, value, text in (
                ("dead_lettered", ingest.dead_lettered, "Messages sent to the dead-letter topic."),
                ("forwarded", sum(part.counts.forwarded for part in parts),
                 "Events of another partition's site forwarded to the repartition topic."),
                ("deleted_unread", sum(part.counts.deleted_unread for part in parts),
                 "Events the topic's retention deleted before they were read."),
                ("checkpoints", ingest.checkpoints, "Partition checkpoints written."),
                ("checkpoints_skipped", ingest.checkpoints_skipped,
                 "Partition checkpoints not written: the table held a later one (another worker took the partition "
                 "over while this one was paused), or could not be read up to date after a pause."),
                ("rows", ingest.rows, "Interval rows published to the figures topic.")):
            yield CounterMetricFamily(f"callwatch_worker_{name}", text, value=value)
        lag = GaugeMetricFamily(CONSUMER_LAG.name, CONSUMER_LAG.help, labels=list(CONSUMER_LAG.labels))
        for (topic, number), behind in sorted(ingest.lag().items()):
            lag.add_metric([topic, str(number)], behind)
        yield lag
        yield GaugeMetricFamily(READ_LOOP_AGE.name, READ_LOOP_AGE.help, value=ingest.rounds.age(time.monotonic()))
        yield GaugeMetricFamily("callwatch_worker_partitions", "Events partitions this worker holds.", value=len(parts))


def create_app(settings: Settings, options: WorkerOptions, topology: Topology) -> tuple[Any, CallIngest]:
    import faust

    app_id, session_s = options.app_id, options.session_timeout_s
    brokers, credentials = faust_broker(settings.kafka)
    app = faust.App(
        app_id, broker=brokers, broker_credentials=credentials, datadir=options.workdir,
        web_enabled=True, web_bind=options.metrics_host, web_host=options.metrics_host,
        web_port=options.metrics_port, topic_disable_leader=True, producer_max_request_size=CHECKPOINT_MAX_BYTES,
        broker_session_timeout=session_s, broker_heartbeat_interval=session_s / 4)
    ingest = CallIngest(app, settings.kafka, settings.flow, topology, options)
    app.service(ingest)
    # Tables every worker holds whole, written outside any stream, each record applied once read
    # (docs/worker.md): each events partition's checkpoint, and the wallboard's callback marks.
    whole: dict[str, Any] = {"default": None, "partitions": 1, "use_partitioner": True, "recovery_buffer_size": 1}
    ingest.saved = app.GlobalTable(CHECKPOINTS_TABLE, key_type=int, value_type=bytes,
                                   on_changelog_event=ingest.on_saved_record, **whole)
    marks = app.GlobalTable(MARKS_TABLE, key_type=str, value_type=str, **whole)
    board = LatestBoard(settings.flow)
    board.marks = TableMarks(marks)
    add_board_routes(app.web.web_app, board)  # type: ignore[attr-defined]  # faust's aiohttp Web (web_enabled)
    registry = CollectorRegistry()
    collector = FigureCollector(settings.flow, registry=registry)
    registry.register(WorkerCounters(ingest))
    source = f"kafka:{topology.events}"

    @app.page("/metrics")
    async def metrics(view: Any, _request: Any) -> Any:
        return view.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    ticked = [float("inf")]  # the first tick: no pause (Faust starts timers seconds after this)
    published: list[Any] = [0.0, None]  # when, and the boards' progress then

    @app.timer(min(NEWS_EVERY_S, options.publish_every_s))  # type: ignore[untyped-decorator]  # Faust's is untyped
    async def publish_figures() -> None:
        """Every publish period, and as soon as a board has news (at most ten times a second)."""
        clock = time.monotonic()
        ingest.check_pause(clock - ticked[0])
        ticked[0] = clock
        parts = list(ingest.parts.values())
        progress = [(part.board_flow.stream_time_ms, part.board_flow.counts.pending) for part in parts]
        # News at once only from live boards: a board reading a backlog moves hours a second.
        if clock - published[0] < options.publish_every_s and (
                progress == published[1] or any(part.board is None for part in parts)):
            return
        published[:] = [clock, progress]
        ingest.check_rounds()
        ingest.check_topics()
        clock_ms = time.time_ns() // 1_000_000
        newest = max((t for part in parts if (t := part.exact.stream_time_ms) is not None), default=None)
        now_ms = clock_ms if options.wall_clock else newest
        if now_ms is None:  # no partition, or none has events: an empty board, not the last one
            board.publish(BoardSnapshot(clock_ms, {}, {}, {}, {}))
            return
        snapshot = side_by_side([part.board_flow.snapshot(now_ms) for part in parts], now_ms)
        board.publish(snapshot)
        collector.publish(snapshot, PipelineStatus(
            received={source: sum(part.counts.received for part in parts)},
            rejected={source: sum(part.counts.rejected for part in parts)},
            **{name: sum(getattr(part.exact.counts, name) for part in parts)
               for name in ("accepted", "duplicates", "late", "conflicts", "unmatched", "pending")},
            stream_time_s=None if newest is None else newest / 1000,
            processing_lag_s=None if newest is None else max(0.0, (clock_ms - newest) / 1000),
            published_at_s=time.time()))
        await ingest.publish(topology.figures, live_rows(snapshot))

    return app, ingest

"""The Faust app of `callwatch worker`, built by `create_app` (no import-time globals): the
`track_calls` ingest service, the `aggregate_figures` agent with its changelog-backed tables, the
`publish_figures` timer and the Prometheus collector they publish to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.registry import CollectorRegistry

from streams.metrics import READ_LOOP_AGE, FigureCollector, PipelineStatus
from streams.settings import Settings

from . import agents
from .ingest import CallIngest, IngestOptions
from .kafka import CHECKPOINT_MAX_BYTES, Topology, faust_broker, read_range
from .messages import outcomes_partition


@dataclass(frozen=True)
class WorkerOptions:
    app_id: str = ""  # default: <topic prefix>worker; also the consumer groups' and changelogs' prefix
    workdir: str = "var/worker"
    publish_every_s: float = 1.0
    session_timeout_s: float = 10.0  # a dead worker's partitions move on after this long
    live_rows_to_topic: bool = True  # the board's rows on the figures topic too, every publish
    ingest: IngestOptions = field(default_factory=IngestOptions)

    def resolved_app_id(self, settings: Settings) -> str:
        return self.app_id or f"{settings.kafka.topic_prefix}worker"


@dataclass
class WorkerApp:
    app: Any  # faust.App
    ingest: CallIngest
    aggregator: agents.Aggregator
    collector: FigureCollector
    topology: Topology


def create_app(settings: Settings, options: WorkerOptions, topology: Topology,
               registry: CollectorRegistry | None = None) -> WorkerApp:
    import faust

    app_id = options.resolved_app_id(settings)
    brokers, credentials = faust_broker(settings.kafka)
    app = faust.App(
        app_id, broker=brokers, broker_credentials=credentials, datadir=options.workdir,
        web_enabled=False, topic_disable_leader=True, topic_partitions=topology.outcomes_partitions,
        consumer_auto_offset_reset="earliest", producer_max_request_size=CHECKPOINT_MAX_BYTES,
        stream_buffer_maxsize=4096, broker_session_timeout=options.session_timeout_s,
        broker_heartbeat_interval=options.session_timeout_s / 4)
    outcomes = app.topic(topology.outcomes, key_serializer="raw", value_serializer="raw")

    async def send_figure(key: bytes, value: bytes) -> Any:
        """Queue a row; returns what to await for its delivery. Straight to the producer: a Faust
        topic's send costs more than the row it carries."""
        return await app.producer.send(topology.figures, key, value, None, None, None)

    table_options: dict[str, Any] = {"default": None, "partitions": topology.outcomes_partitions,
                                     "schema": faust.Schema(key_serializer="json", value_serializer="json")}
    aggregator = agents.Aggregator(settings.flow, app.Table("window-parts", **table_options),
                                   app.Table("progress", **table_options), send_figure)
    ingest = CallIngest(app, settings.kafka, settings.flow, topology, f"{app_id}-events", options.ingest)
    app.service(ingest)
    collector = FigureCollector(settings.flow, registry=registry)
    wall = options.ingest.wall_clock
    source = f"kafka:{topology.events}"

    if registry is not None:
        from prometheus_client import Gauge

        Gauge(READ_LOOP_AGE.name, READ_LOOP_AGE.help,
              registry=registry).set_function(lambda: ingest.rounds.age(time.monotonic()))

    async def publish(to_topic: bool) -> None:
        """The merged board to the Prometheus collector (and, with `to_topic`, to the figures topic)."""
        ingest.check_rounds()
        aggregator.live_changed = False
        held = {tp.partition for tp in app.consumer.assignment() if tp.topic == topology.outcomes}
        aggregator.live.forget(lambda group: outcomes_partition(group, topology.outcomes_partitions) in held)
        clock_ms = agents.wall_ms()
        now_ms = clock_ms if wall else aggregator.status.stream_time_ms
        if now_ms is None:
            return
        snapshot = aggregator.live.snapshot(now_ms)
        status = ingest.status
        newest = status.stream_time_ms
        collector.publish(snapshot, PipelineStatus(
            received={source: status.received}, rejected={source: status.rejected},
            accepted=status.accepted, duplicates=status.duplicates, late=status.late,
            conflicts=status.conflicts, unmatched=status.unmatched, pending=status.pending,
            stream_time_s=None if newest is None else newest / 1000,
            processing_lag_s=None if newest is None else max(0.0, (clock_ms - newest) / 1000),
            published_at_s=time.time()))
        if to_topic and options.live_rows_to_topic:
            for key, value in agents.live_rows(snapshot):
                await send_figure(key, value)

    async def read_missed(partition: int, start: int, end: int) -> list[bytes | None]:
        return await read_range(settings.kafka, topology.outcomes, partition, start, end)

    agents.register(app, aggregator, outcomes, publish, options.publish_every_s, read_missed)

    return WorkerApp(app, ingest, aggregator, collector, topology)

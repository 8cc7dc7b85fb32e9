"""The embedded pipeline: polls sources, feeds the domain's CallFlows and publishes figures to the
Prometheus collector and the wallboard on a timer, so figures decay when traffic stops.

Two flows run side by side on the same events: the exact flow waits the full allowed lateness and
produces the interval report (identical to `callwatch replay` of the recorded events); the board
flow waits only `live_lateness_s` so the wallboard is seconds, not minutes, behind."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from streams.domain.config import FlowConfig
from streams.domain.events import CallEvent, event_to_dict
from streams.domain.flow import CallFlow
from streams.domain.live import BoardSnapshot
from streams.io.codec import encode
from streams.io.event_lines import Rejection
from streams.metrics import FigureCollector, PipelineStatus

from .sources import Clock, EventSource

log = logging.getLogger("callwatch.run")


@dataclass
class RunOptions:
    interval_s: int = 900
    publish_every_s: float = 1.0
    # The wallboard gets a snapshot this often between full publishes (one swapped reference, never
    # waiting for the server): with the board flow's half-second lateness an event is on the page
    # within a second (docs/benchmarks.md).
    board_every_s: float = 0.2
    publish_board: Callable[[BoardSnapshot], object] | None = None
    batch: int = 5000
    # Optional sinks: each interval row and each accepted event, as a JSON line.
    write_row: Callable[[str], object] | None = None
    record_event: Callable[[str], object] | None = None
    stop_when_exhausted: bool = True


@dataclass
class RunTotals:
    received: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    rows: int = 0


class EmbeddedPipeline:
    def __init__(self, config: FlowConfig, sources: Sequence[EventSource], clock: Clock,
                 collector: FigureCollector, options: RunOptions | None = None) -> None:
        self._sources = list(sources)
        self._clock = clock
        self._collector = collector
        self._options = options or RunOptions()
        self.exact = CallFlow(config, interval_s=self._options.interval_s)
        board_config = dataclasses.replace(config, allowed_lateness_s=min(config.live_lateness_s,
                                                                          config.allowed_lateness_s))
        self.board = CallFlow(board_config, live=True)
        self.totals = RunTotals({s.name: 0 for s in self._sources}, {s.name: 0 for s in self._sources})
        self.stopping = threading.Event()

    def run(self) -> RunTotals:
        """Until stopped (or every source is exhausted): ingest, and publish once per period."""
        next_publish = next_board = 0.0
        options = self._options
        while not self.stopping.is_set():
            now_ms = self._clock.now_ms()
            took = self._ingest_due(now_ms)
            moment = time.monotonic()
            if moment >= next_publish:
                self.publish(now_ms)
                next_publish = moment + options.publish_every_s
                next_board = moment + options.board_every_s
            elif options.publish_board is not None and moment >= next_board:
                self.board.advance(now_ms)
                options.publish_board(self.board.snapshot(now_ms))
                next_board = moment + options.board_every_s
            if options.stop_when_exhausted and all(s.exhausted for s in self._sources):
                break
            if not took:
                self.stopping.wait(0.05)
        self._finish()
        return self.totals

    def _ingest_due(self, now_ms: int) -> int:
        took = 0
        record = self._options.record_event
        for source in self._sources:
            items = source.poll(now_ms, self._options.batch)
            took += len(items)
            self.totals.received[source.name] += len(items)
            for item in items:
                if isinstance(item, Rejection):
                    self.totals.rejected[source.name] += 1
                    log.warning("rejected %s", item)
                    continue
                self._ingest(item)
                if record is not None:
                    record(encode(event_to_dict(item)) + "\n")
        return took

    def _ingest(self, event: CallEvent) -> None:
        status = self.exact.ingest(event)
        if status == "late":
            log.warning("late event %s at %s: counted, not applied", event.event_id, event.occurred_at.isoformat())
        self.board.ingest(event)

    def publish(self, now_ms: int) -> None:
        self._write_rows(self.exact.advance(now_ms))
        self.board.advance(now_ms)
        snapshot = self.board.snapshot(now_ms)
        if self._options.publish_board is not None:
            self._options.publish_board(snapshot)
        counts = self.exact.counts
        newest = self.exact.stream_time_ms
        self._collector.publish(snapshot, PipelineStatus(
            received=dict(self.totals.received), rejected=dict(self.totals.rejected),
            accepted=counts.accepted, duplicates=counts.duplicates, late=counts.late,
            conflicts=counts.conflicts, unmatched=counts.unmatched, pending=counts.pending,
            stream_time_s=None if newest is None else newest / 1000,
            processing_lag_s=None if newest is None else max(0.0, (now_ms - newest) / 1000),
            published_at_s=time.time()))

    def _write_rows(self, rows: list[dict[str, object]]) -> None:
        self.totals.rows += len(rows)
        if self._options.write_row is not None:
            for row in rows:
                self._options.write_row(encode(row) + "\n")

    def _finish(self) -> None:
        # Nothing accepted is dropped on the way out: the buffered events and open windows are
        # flushed into the report, and the last figures stay published until the process exits.
        self._write_rows(self.exact.finish())
        self.publish(self._clock.now_ms())

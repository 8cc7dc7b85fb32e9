"""`callwatch replay`: canonical JSON Lines in, the interval report (SPEC section 4) out. The same
CallFlow as the live pipeline, driven by event time alone, so the output is deterministic."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TextIO

from streams.domain.config import FlowConfig
from streams.domain.events import CallEvent
from streams.domain.flow import CallFlow, FlowCounts
from streams.io.codec import encode_report_row
from streams.io.event_lines import Batch, Rejection


COLLECT_EVERY = 256  # batches between two garbage collections (a batch is one input block)


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    lines: int
    rejected: int
    rows: int
    counts: FlowCounts


def replay_events(items: Iterable[CallEvent | Rejection], config: FlowConfig, window_s: int,
                  write_row: Callable[[str], object],
                  on_reject: Callable[[Rejection], object]) -> ReplaySummary:
    """`replay_batches` for events and rejections one at a time (e.g. read from a topic)."""
    return replay_batches(_batches(items), config, window_s, write_row, on_reject)


def _batches(items: Iterable[CallEvent | Rejection], size: int = 256) -> Iterator[Batch]:
    # Releasing in batches is safe (lateness is judged per event on arrival) and much cheaper.
    events: list[CallEvent] = []
    rejections: list[Rejection] = []
    for count, item in enumerate(items, 1):
        if type(item) is Rejection:
            rejections.append(item)
        else:
            events.append(item)  # type: ignore[arg-type]
        if not count % size:
            yield Batch(events, rejections, 0)
            events, rejections = [], []
    if events or rejections:
        yield Batch(events, rejections, 0)


def replay_batches(batches: Iterable[Batch], config: FlowConfig, window_s: int,
                   write_row: Callable[[str], object],
                   on_reject: Callable[[Rejection], object]) -> ReplaySummary:
    """`replay_events` for input read in blocks (streams/io/event_lines.py): the same report, with
    the per-event work of the loop left to the orderer's own loop."""
    flow = CallFlow(config, interval_s=window_s)
    ingest_all, advance = flow.ingest_all, flow.advance_rows
    lines = rejected = rows = 0
    # The domain's state holds no reference cycles, so reference counting frees it all; the cyclic
    # collector's passes over every young event and record cost about a tenth of the replay. It
    # runs after every COLLECT_EVERY batches instead, which still bounds memory were a cycle made.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for count, batch in enumerate(batches, 1):
            events = batch.events
            lines += len(events)
            if batch.rejections:
                lines += len(batch.rejections)
                rejected += len(batch.rejections)
                for rejection in batch.rejections:
                    on_reject(rejection)
            ingest_all(events)
            for row in advance():
                write_row(encode_report_row(row) + "\n")
                rows += 1
            if not count % COLLECT_EVERY:
                gc.collect()
    finally:
        if collecting:
            gc.enable()
    for row in flow.finish_rows():
        write_row(encode_report_row(row) + "\n")
        rows += 1
    return ReplaySummary(lines, rejected, rows, flow.counts)


def report_rejection(stream: TextIO, limit: int = 100, command: str = "replay") -> Callable[[Rejection], None]:
    """Print the first `limit` rejections, then only count (a broken file must not flood a terminal)."""
    shown = 0

    def report(rejection: Rejection) -> None:
        nonlocal shown
        shown += 1
        if shown <= limit:
            stream.write(f"callwatch {command}: rejected {rejection}\n")
        elif shown == limit + 1:
            stream.write(f"callwatch {command}: more rejections follow; only counting them now\n")

    return report

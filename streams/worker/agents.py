"""The worker's Faust agent and timer. `aggregate_figures` merges what the partitions that track calls
send on the outcomes topic: window parts wait in a changelog-backed table until every source's
watermark has passed the window, then become interval rows on the figures topic; wallboard parts
go into a LiveMerge. `publish_figures` puts the merged board on /metrics (and the figures topic)
every second, so figures decay when traffic stops."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from streams.domain.config import FlowConfig
from streams.domain.records import LiveMerge, report_row
from streams.domain.state import restore_tally
from streams.io.codec import encode, encode_report_row

from .messages import LIVE, PARTS, WATERMARK, BadOutcome, Outcome, decode_outcome, figure_key, live_key

log = logging.getLogger("callwatch.worker")


@dataclass
class AggregateStatus:
    messages: int = 0
    rows: int = 0  # interval rows published
    late_parts: int = 0  # parts of windows already published: counted, dropped
    bad_outcomes: int = 0
    skipped_by_faust: int = 0  # messages Faust's stream skipped after a rebalance, read directly
    stream_time_ms: int | None = None  # newest stream time any source reported


def _entry_key(partition: int, source: int, windows: list[tuple[int, int, list[Any]]]) -> str:
    return json.dumps([partition, source, windows[0][0], windows[-1][1]], separators=(",", ":"))


class Aggregator:
    """The state behind `aggregate_figures`, in two Faust tables co-partitioned with the outcomes
    topic. `parts`: each parts message not yet published, as it came (one table write per message,
    not per part); a message sent again after a restart may be cut differently, so parts are told
    apart by (window, source) when published. `progress`, per outcomes partition: each source's
    watermark, and `done`, the end up to which windows are published."""

    def __init__(self, config: FlowConfig, parts: Any, progress: Any,
                 send_figure: Callable[[bytes, bytes], Awaitable[Awaitable[Any]]]) -> None:
        self.config = config
        self.parts = parts
        self.progress = progress
        self.send_figure = send_figure
        self.live = LiveMerge(config)
        self.live_changed = False  # wallboard news not yet published
        self.status = AggregateStatus()

    async def on_outcome(self, partition: int, value: bytes | None) -> None:
        self.status.messages += 1
        try:
            outcome = decode_outcome(value)
        except BadOutcome as error:
            self.status.bad_outcomes += 1
            log.warning("outcomes partition %d: %s", partition, error)
            return
        if outcome.stream_time_ms is not None and (self.status.stream_time_ms is None
                                                   or outcome.stream_time_ms > self.status.stream_time_ms):
            self.status.stream_time_ms = outcome.stream_time_ms
        if outcome.kind == PARTS:
            self._keep_parts(partition, outcome)
        elif outcome.kind == WATERMARK:
            await self._watermark(partition, outcome)
        elif outcome.kind == LIVE:
            for update in outcome.updates:
                self.live.update(outcome.source, update)
            self.live_changed = True

    def _keep_parts(self, partition: int, outcome: Outcome) -> None:
        done = self.progress.get(f"{partition}|done")
        windows = [window for window in outcome.windows if done is None or window[1] > done]
        if len(windows) != len(outcome.windows):  # sent again after a restart, or late
            self.status.late_parts += len(outcome.windows) - len(windows)
            log.info("outcomes partition %d: parts of %d windows from source %d ending at or before %d, "
                     "already published: dropped", partition, len(outcome.windows) - len(windows),
                     outcome.source, done)
        if windows:
            self.parts[_entry_key(partition, outcome.source, windows)] = windows

    async def _watermark(self, partition: int, outcome: Outcome) -> None:
        key = f"{partition}|wm|{outcome.source}"
        if outcome.watermark_ms <= self.progress.get(key, -1):
            return
        self.progress[key] = outcome.watermark_ms
        marks = [self.progress.get(f"{partition}|wm|{source}") for source in range(outcome.sources)]
        if any(mark is None for mark in marks):
            return  # a source that has not reported yet may still hold parts of any window
        frontier = min(marks)
        done = self.progress.get(f"{partition}|done")
        if done is not None and frontier <= done:
            return
        await self._publish_windows(partition, frontier)
        self.progress[f"{partition}|done"] = frontier

    async def _publish_windows(self, partition: int, frontier: int) -> None:
        """Rows of every window ending at or before the frontier, in report order; then the parts
        they used are forgotten (after the rows are sent: a crash in between sends them again)."""
        # window -> (group, source) -> tally: a part that came twice (a message sent again after a
        # restart, cut differently) counts once
        final: dict[tuple[int, int], dict[tuple[tuple[str, str, str], int], Any]] = {}
        changed: dict[str, list[Any]] = {}
        sent: list[Awaitable[Any]] = []
        for key in list(self.parts.keys()):
            held, source, _first, _last = json.loads(key)
            if held != partition:
                continue
            entry = self.parts[key]
            keep = []
            for start, end, groups in entry:
                if end <= frontier:
                    window = final.setdefault((start, end), {})
                    for site, line, queue, tally in groups:
                        window[((site, line, queue), source)] = tally
                else:
                    keep.append([start, end, groups])
            if len(keep) != len(entry):
                changed[key] = keep
        for (start, end), by_part in sorted(final.items()):
            tallies: dict[tuple[str, str, str], list[Any]] = {}
            for (group, _source), tally in by_part.items():
                tallies.setdefault(group, []).append(restore_tally(tally))
            for group, parts in sorted(tallies.items()):
                row = report_row(start, end, group, parts, self.config)
                if row is not None:
                    sent.append(await self.send_figure(figure_key(start, group).encode(),
                                                       encode_report_row(row).encode()))
                    self.status.rows += 1
        # The rows must be in Kafka before the table forgets their parts and records them as done:
        # Faust writes a table's changelog by its own route, and a crash that kept the changelog
        # records but not the rows would lose the rows for good.
        for delivery in sent:
            await delivery
        for key, keep in changed.items():
            if keep:
                self.parts[key] = keep
            else:
                del self.parts[key]


def live_rows(snapshot: Any) -> list[tuple[bytes, bytes]]:
    """The board as figures-topic messages: one row per rolling window (and today) and group."""
    rows = []
    for window, by_group in snapshot.figures.items():
        for group, figures in by_group.items():
            row = {"window": window, "site": group[0], "line": group[1], "queue": group[2],
                   "at_ms": snapshot.now_ms, **figures}
            rows.append((live_key(window, group).encode(), encode(row).encode()))
    return rows


def register(app: Any, aggregator: Aggregator, outcomes: Any, publish: Callable[[bool], Awaitable[None]],
             publish_every_s: float, read_missed: Callable[[int, int, int], Awaitable[list[bytes | None]]]) -> None:
    """Attach the agent and the timer to the Faust app. The timer publishes every period (so figures
    decay when nothing arrives); wallboard news is also published as it comes, at most ten times a
    second, so the board does not wait for the timer."""
    news = _NewsPublisher(publish, NEWS_EVERY_S)

    @app.agent(outcomes, concurrency=1, name="aggregate_figures")
    async def aggregate_figures(stream: Any) -> None:
        async for event in stream.events():
            partition, offset = event.message.partition, event.message.offset
            # The offset handled last is kept in the changelog-backed progress table, so it follows
            # the partition to whichever worker holds it next. faust-streaming sometimes starts or
            # resumes a partition after a rebalance past messages it had fetched but not handed over
            # (and commits past them; seen here on 0.15.3 with aiokafka 0.14): read those ourselves,
            # in order, before this one. Handling a message twice changes nothing (parts replace
            # themselves, watermarks only move forward).
            previous = aggregator.progress.get(f"{partition}|offset")
            if previous is not None and offset > previous + 1:
                missed = await read_missed(partition, previous + 1, offset)
                log.warning("outcomes partition %d: Faust skipped offsets %d to %d; read %d of them directly",
                            partition, previous + 1, offset - 1, len(missed))
                aggregator.status.skipped_by_faust += len(missed)
                for value in missed:
                    await aggregator.on_outcome(partition, value)
            delay = time.time() - event.message.timestamp
            if delay > 0.5:
                log.info("outcomes partition %d offset %d: %.3f s after it was sent", partition, offset, delay)
            await aggregator.on_outcome(partition, event.value)
            aggregator.progress[f"{partition}|offset"] = offset
            if aggregator.live_changed:
                await news.changed()

    @app.timer(publish_every_s, name="publish_figures")
    async def publish_figures() -> None:
        news.published()
        await publish(True)


NEWS_EVERY_S = 0.1  # wallboard news reaches /metrics at most this often


class _NewsPublisher:
    """Publishes news at once, or, if the last publication was under `every_s` ago, as soon as
    that has passed (never waiting for the next message or the timer, which may be a second away)."""

    def __init__(self, publish: Callable[[bool], Awaitable[None]], every_s: float) -> None:
        self._publish = publish
        self._every_s = every_s
        self._last = 0.0
        self._due: asyncio.Task[None] | None = None

    def published(self) -> None:
        self._last = time.monotonic()

    async def changed(self) -> None:
        wait = self._last + self._every_s - time.monotonic()
        if wait <= 0:
            self.published()
            await self._publish(False)
        elif self._due is None or self._due.done():
            self._due = asyncio.ensure_future(self._later(wait))

    async def _later(self, wait: float) -> None:
        await asyncio.sleep(wait)
        if time.monotonic() - self._last >= self._every_s:  # the timer may have published meanwhile
            self.published()
            await self._publish(False)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000

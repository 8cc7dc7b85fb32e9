"""One call flow: orders events, tracks call legs and feeds the interval report and the live board.
Replay, the embedded pipeline and the Faust worker all drive this same object."""

from __future__ import annotations

from dataclasses import dataclass

from .call_legs import CallTracker, Record
from .config import FlowConfig
from .events import CallEvent
from .interval_report import IntervalReport, ReportRow
from .live import BoardSnapshot, LiveBoard
from .ordering import ACCEPTED, EventOrderer


@dataclass(frozen=True, slots=True)
class FlowCounts:
    accepted: int
    duplicates: int
    late: int
    conflicts: int
    unmatched: int
    lost: int
    pending: int


class CallFlow:
    def __init__(self, config: FlowConfig, interval_s: int | None = None, live: bool = False) -> None:
        self.config = config
        self._orderer = EventOrderer(config.allowed_lateness_ms)
        self.tracker = CallTracker(config.max_wait_ms)
        self._report = IntervalReport(interval_s, config) if interval_s else None
        self._board = LiveBoard(config, self.tracker) if live else None
        self._processed_until_ms: int | None = None

    def ingest(self, event: CallEvent) -> str:
        """Take one event; returns 'accepted', 'duplicate' or 'late'. Accepted events are processed
        once the lateness allows (see `advance`)."""
        return self._orderer.offer(event)

    def ingest_all(self, events: list[CallEvent]) -> None:
        """`ingest` each event, only counting the outcomes (a file replay's batches)."""
        self._orderer.offer_all(events)

    def advance(self, now_ms: int | None = None) -> list[dict[str, object]]:
        """Process every event the watermark releases (pushed to `now_ms` if given, e.g. by a live
        clock) and return the interval rows that became final."""
        return [row.as_dict() for row in self.advance_rows(now_ms)]

    def advance_rows(self, now_ms: int | None = None) -> list[ReportRow]:
        """`advance`, the rows as ReportRows (a replay encodes them without building dicts)."""
        released = self._orderer.release(now_ms)
        if released:
            self._process(released)
        if now_ms is not None:
            self._move_to(now_ms - self.config.allowed_lateness_ms)
        if self._report is not None and self._processed_until_ms is not None:
            return self._report.rows_until(self._processed_until_ms)
        return []

    def finish(self) -> list[dict[str, object]]:
        """End of a finite stream: process what is buffered and return every remaining row."""
        return [row.as_dict() for row in self.finish_rows()]

    def finish_rows(self, until_ms: int | None = None) -> list[ReportRow]:
        """`finish`, the rows as ReportRows. `until_ms`: the stream's last event time when this flow
        saw only part of the stream (one partition of it): its lost legs close up to there too, as
        the whole stream's last event would have closed them."""
        self._process(self._orderer.drain())
        if until_ms is not None:
            self._move_to(until_ms)
        if self._report is not None:
            return self._report.remaining_rows()
        return []

    def snapshot(self, now_ms: int) -> BoardSnapshot:
        if self._board is None:
            raise RuntimeError("this flow was built without a live board")
        return self._board.snapshot(now_ms)

    @property
    def counts(self) -> FlowCounts:
        ordering, tracking = self._orderer.counts, self.tracker.counts
        return FlowCounts(ordering.accepted, ordering.duplicates, ordering.late, tracking.conflicts,
                          tracking.unmatched, tracking.lost, self._orderer.pending)

    @property
    def stream_time_ms(self) -> int | None:
        return self._orderer.newest_ms

    def _process(self, events: list[CallEvent]) -> None:
        if not events:
            return
        tracker, report, board = self.tracker, self._report, self._board
        records: list[Record] = []
        if board is None:
            tracker.apply_all(events, records)
        else:
            tracker.apply_all(events, records, board.enders)
            board.observe_all(events)
        if report is not None:
            report.add(records)
        if board is not None:
            board.add(records)
        self._processed_until_ms = events[-1].occurred_ms

    def _move_to(self, until_ms: int) -> None:
        # Time passing without events still closes lost legs and finishes windows.
        if self._processed_until_ms is not None and until_ms <= self._processed_until_ms:
            return
        records: list[Record] = []
        self.tracker.expire(until_ms, records)
        if self._report is not None:
            self._report.add(records)
        if self._board is not None:
            self._board.add(records)
        self._processed_until_ms = until_ms


def accepted(status: str) -> bool:
    return status == ACCEPTED

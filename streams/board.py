"""`callwatch board`: what the live board showed at given instants of a recorded stream (SPEC
section 4, "Live board"), as JSON Lines or a table. The same LiveBoard as the live wallboard, fed
as if every event up to the instant had arrived on time and none after it.

The input goes through an orderer with the configured lateness (duplicates dropped, later events
counted as late, as a replay does); the events it releases in order feed a board flow one instant
at a time, each instant once everything up to it has been released."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator

from streams.domain.call_legs import LINE_TOTAL
from streams.domain.config import FlowConfig
from streams.domain.events import CallEvent, format_ts
from streams.domain.flow import CallFlow
from streams.domain.live import BoardSnapshot
from streams.domain.ordering import EventOrderer
from streams.io.codec import encode
from streams.io.event_lines import Batch, Rejection

NOW = "now"
NOW_FIELDS = ("waiting", "longest_wait_s", "data_age_s")


@dataclass(frozen=True, slots=True)
class BoardSummary:
    lines: int
    rejected: int
    late: int
    duplicates: int
    read_to_end: bool  # False: reading stopped once the last instant was shown


def board_snapshots(batches: Iterable[Batch], config: FlowConfig, instants_ms: Iterable[int],
                    on_reject: Callable[[Rejection], object]) -> tuple[Iterator[BoardSnapshot], Callable[[], BoardSummary]]:
    """The board at each instant (in time order), and a function giving the input's counts once
    the snapshots have been taken."""
    counts = {"lines": 0, "rejected": 0}
    orderer = EventOrderer(config.allowed_lateness_ms)
    ended = [False]

    def snapshots() -> Iterator[BoardSnapshot]:
        board = CallFlow(_in_order(config), live=True)
        released: deque[CallEvent] = deque()
        reading = iter(batches)

        def feed(until_ms: int) -> None:
            """The released events up to `until_ms` go to the board as they come (every later
            one is at or after the orderer's watermark, so none is late for the board flow), and
            the board takes their records in: memory follows the windows, not the gap between
            two instants."""
            due: list[CallEvent] = []
            while released and released[0].occurred_ms <= until_ms:
                due.append(released.popleft())
            if due:
                board.ingest_all(due)
                board.finish()  # processes them all, those exactly at the instant too
                board.snapshot(due[-1].occurred_ms)

        for at_ms in sorted(set(instants_ms)):
            # Read until every event at or before the instant is out of the orderer (or input ends).
            while not ended[0] and (orderer.released_before_ms is None or orderer.released_before_ms <= at_ms):
                batch = next(reading, None)
                if batch is None:
                    ended[0] = True
                    released.extend(orderer.drain())
                    break
                counts["lines"] += len(batch.events) + len(batch.rejections)
                counts["rejected"] += len(batch.rejections)
                for rejection in batch.rejections:
                    on_reject(rejection)
                orderer.offer_all(batch.events)
                released.extend(orderer.release())
                feed(at_ms)
            feed(at_ms)
            board.advance(at_ms)  # legs waiting longer than max_wait before the instant are lost
            yield board.snapshot(at_ms)

    def summary() -> BoardSummary:
        ordering = orderer.counts
        return BoardSummary(counts["lines"], counts["rejected"], ordering.late, ordering.duplicates, ended[0])

    return snapshots(), summary


def _in_order(config: FlowConfig) -> FlowConfig:
    """The board flow gets events already in order: no lateness of its own."""
    return replace(config, allowed_lateness_s=0)


def snapshot_rows(snapshot: BoardSnapshot) -> list[dict[str, object]]:
    """One row per group and window (the rolling windows, today, then `now`), groups in order."""
    at = format_ts(snapshot.now_ms)
    rows: list[dict[str, object]] = []
    for group in sorted(snapshot.data_age_s):
        site, line, queue = group
        for window, by_group in snapshot.figures.items():
            rows.append({"at": at, "site": site, "line": line, "queue": queue, "window": window,
                         **by_group[group]})
        now = snapshot.queues[group]  # every group seen has one
        rows.append({"at": at, "site": site, "line": line, "queue": queue, "window": NOW,
                     "waiting": now.waiting, "longest_wait_s": round(now.longest_wait_s, 3),
                     "data_age_s": round(snapshot.data_age_s[group], 3)})
    return rows


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(encode(row) + "\n" for row in rows)


# Columns of the table: heading, row field, width, how to show the value.
def _percent(value: object) -> str:
    return "" if value is None else f"{float(value) * 100:.1f} %"  # type: ignore[arg-type]


def _plain(value: object) -> str:
    return "" if value is None else str(value)


def _seconds(value: object) -> str:
    return "" if value is None else f"{float(value):.1f}"  # type: ignore[arg-type]


_COLUMNS: tuple[tuple[str, str, Callable[[object], str]], ...] = (
    ("site", "site", _plain), ("line", "line", _plain), ("queue", "queue", _plain),
    ("window", "window", _plain), ("arrivals", "arrivals", _plain), ("offered", "offered", _plain),
    ("answered", "answered", _plain), ("abandoned", "abandoned", _plain),
    ("service level", "service_level", _percent), ("abandonment", "abandonment_rate", _percent),
    ("ASA s", "asa_s", _seconds), ("p90 s", "answer_p90_s", _seconds),
    ("waiting", "waiting", _plain), ("longest wait s", "longest_wait_s", _seconds),
    ("data age s", "data_age_s", _seconds),
)
_LEFT = {"site", "line", "queue", "window"}


def table(rows: list[dict[str, object]]) -> str:
    """The rows of one instant as an aligned table under a heading naming the instant; line
    totals (queue `*`) show as `* (line)`."""
    if not rows:
        return ""
    cells = [[heading for heading, _, _ in _COLUMNS]]
    for row in rows:
        cells.append([show(row.get(name)) if not (name == "queue" and row[name] == LINE_TOTAL) else "* (line)"
                      for _, name, show in _COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(_COLUMNS))]
    lines = [f"at {rows[0]['at']}"]
    for line in cells:
        lines.append("  ".join(cell.ljust(width) if name in _LEFT else cell.rjust(width)
                               for cell, width, (_, name, _) in zip(line, widths, _COLUMNS)).rstrip())
    return "\n".join(lines) + "\n\n"

"""The worker's health: whether its reading loop still goes round and where it waits (a stalled loop
reads nothing while the timers go on), and library log lines at most once a minute."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

STALL_AFTER_S = 120.0  # a round can wait for a rebalance's restore, never this long


@dataclass
class RoundWatch:
    """When the loop last finished a round; before the first, the start (one that never gets to
    reading is a stall too)."""

    since: float  # monotonic seconds: the start, then the end of the last round
    stall_after_s: float = STALL_AFTER_S
    rounds: int = 0
    _reported: float | None = field(default=None, repr=False)  # when the stall reported began

    def finished_round(self, now: float) -> None:
        self.since = now
        self.rounds += 1

    def age(self, now: float) -> float:
        return max(0.0, now - self.since)

    def stall_to_report(self, now: float) -> float | None:
        """The age of a stall not reported yet (once per stall), else None."""
        if self.age(now) < self.stall_after_s or self._reported == self.since:
            return None
        self._reported = self.since
        return self.age(now)


def where_it_waits(task: asyncio.Task[object] | None, frames: int = 6) -> str:
    """The innermost frames of a task's chain of awaits, 'file:line in function', innermost first
    (Task.get_stack shows only the outermost coroutine: the chain is walked through cr_await)."""
    if task is None or task.done():
        return "(not running)"
    chain: list[str] = []
    awaited: object = task.get_coro()
    while (frame := getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)) is not None:
        chain.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " <- ".join(reversed(chain[-frames:])) or "(no frames)"


class OncePerMinute(logging.Filter):
    """A library's log line of one kind (logger and template) at most once a minute, saying how many
    were held back (with the broker gone, aiokafka and Faust wrote 2,000 a second). Ours all pass."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("callwatch"):
            return True
        key, now = (record.name, record.msg), self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} like it in the last minute not shown)"
        self._last[key] = (now, 0)
        return True

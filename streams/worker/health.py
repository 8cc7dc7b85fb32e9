"""Whether the worker's reading of the events topic is still going round. Its loop finishes a round
at least every tenth of a second when all is well (an empty poll included); a loop that stops
finishing rounds while the worker otherwise runs (its timers still publish, so no other alert fires)
reads no more events, silently. It happened once: an aiokafka batch that waited forever for a
leader (docs/worker.md, "The producer tracks every topic it writes to"). Now the worker says so, with
where the loop waits, and /metrics shows how long ago it last finished a round."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable

STALL_AFTER_S = 120.0  # a round can wait for a rebalance's loading of checkpoints, never this long


@dataclass
class RoundWatch:
    """When the loop last finished a round (or the worker started, before the first round: a start
    that never gets to reading is a stall too), and whether the current stall was reported yet."""

    started: float  # monotonic seconds
    stall_after_s: float = STALL_AFTER_S
    rounds: int = 0
    _last: float | None = field(default=None, repr=False)
    _reported: float | None = field(default=None, repr=False)  # the _since of the stall reported

    def finished_round(self, now: float) -> None:
        self._last = now
        self.rounds += 1

    @property
    def _since(self) -> float:
        """The last round, or the start before the first one."""
        return self.started if self._last is None else self._last

    def age(self, now: float) -> float:
        return max(0.0, now - self._since)

    def stall_to_report(self, now: float) -> float | None:
        """The age of a stall not reported yet (once per stall), else None."""
        if self.age(now) < self.stall_after_s or self._reported == self._since:
            return None
        self._reported = self._since
        return self.age(now)


def where_it_waits(task: asyncio.Task[object] | None, frames: int = 6) -> str:
    """The innermost frames of a task's chain of awaits, 'file:line in function', innermost first.
    (Task.get_stack shows only the outermost coroutine of a suspended task: the chain is walked
    through each coroutine's cr_await.)"""
    if task is None or task.done():
        return "(not running)"
    chain: list[str] = []
    awaited: object = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
        if frame is None:
            break
        chain.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return " <- ".join(reversed(chain[-frames:])) or "(no frames)"


class OncePerMinute(logging.Filter):
    """Lets a library's log line of one kind (logger and message template) through at most once a
    minute, saying how many it held back: a worker whose broker went away got about 2,000 error lines
    a second from aiokafka and Faust (247 MB of log in 20 minutes). The worker's own lines pass."""

    def __init__(self, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("callwatch"):
            return True
        key = (record.name, record.msg)
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._last[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} like it in the last minute not shown)"
        self._last[key] = (now, 0)
        return True


def quiet_repeats(logger: logging.Logger) -> None:
    """OncePerMinute on every handler of `logger` (the root logger, once the worker has set it up)."""
    for handler in logger.handlers:
        handler.addFilter(OncePerMinute())

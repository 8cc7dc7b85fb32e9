"""What travels on the outcomes topic from the partitions that track calls to the aggregators, and
the keys of the figures topic. JSON values, compact; every message names its source partition.

- parts: one source's tallies of the groups of one outcomes partition, for one or more windows
  (every group of a window at once); groups are placed by `outcomes_partition`, so every part of a
  group meets in one aggregator. Parts sent again are identical (they replace the first ones).
- watermark: a source has emitted every part of the windows ending at or before `t`; sent to every
  outcomes partition, after the parts it covers (Kafka keeps a producer's order in a partition).
- live: a source's wallboard parts (GroupNow) for the groups of one outcomes partition.
- tick: nothing; sent with live news to the outcomes partitions that got none, because Faust's
  consumer waits up to 1.5 s (its fixed fetch_max_wait_ms) on quiet partitions before it fetches
  again from busy ones."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any

from streams.domain.interval_report import format_window_bound
from streams.domain.records import GroupNow, WindowPart, group_now_state, restore_group_now
from streams.domain.state import tally_state

Group = tuple[str, str, str]

PARTS, WATERMARK, LIVE, TICK = "parts", "wm", "live", "tick"
LIVE_KEY_PREFIX = "live|"


def group_key(group: Group) -> str:
    return "|".join(group)


def outcomes_partition(group: Group, partitions: int) -> int:
    """The aggregator partition of a group: chosen here (not by a client's partitioner) so that
    every producer, whatever its library, sends a group's parts to the same place."""
    return zlib.crc32(group_key(group).encode("utf-8")) % partitions


def figure_key(window_start_ms: int, group: Group) -> str:
    """Key of an interval row on the (compacted) figures topic: "window_start|site|line|queue"."""
    return f"{format_window_bound(window_start_ms)}|{group_key(group)}"


def live_key(window: str, group: Group) -> str:
    """Key of a live row (rolling window or today) on the figures topic."""
    return f"{LIVE_KEY_PREFIX}{window}|{group_key(group)}"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def encode_parts(source: int, sources: int, parts: list[WindowPart]) -> bytes:
    windows: dict[tuple[int, int], list[Any]] = {}
    for part in parts:
        windows.setdefault((part.start_ms, part.end_ms), []).append([*part.group, tally_state(part.tally)])
    return _dumps({"k": PARTS, "src": source, "n": sources,
                   "p": [[start, end, groups] for (start, end), groups in windows.items()]})


def encode_watermark(source: int, sources: int, watermark_ms: int, stream_time_ms: int | None) -> bytes:
    return _dumps({"k": WATERMARK, "src": source, "n": sources, "t": watermark_ms, "st": stream_time_ms})


def encode_tick(sources: int) -> bytes:
    return _dumps({"k": TICK, "src": -1, "n": sources})


def encode_live(source: int, sources: int, stream_time_ms: int | None, updates: list[GroupNow]) -> bytes:
    return _dumps({"k": LIVE, "src": source, "n": sources, "st": stream_time_ms,
                   "u": [group_now_state(update) for update in updates]})


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decoded outcomes message; fields not used by its kind are left empty."""

    kind: str
    source: int
    sources: int
    # parts: (window start, window end, the window's groups as [site, line, queue, tally state])
    windows: tuple[tuple[int, int, list[Any]], ...] = ()
    watermark_ms: int = 0
    stream_time_ms: int | None = None
    updates: tuple[GroupNow, ...] = ()


class BadOutcome(ValueError):
    """An outcomes message this worker cannot read (another version, or not ours)."""


def decode_outcome(value: bytes | None) -> Outcome:
    try:
        obj = json.loads(value or b"")
        kind, source, sources = obj["k"], int(obj["src"]), int(obj["n"])
        if kind == PARTS:
            return Outcome(kind, source, sources,
                           windows=tuple((int(start), int(end), list(groups)) for start, end, groups in obj["p"]))
        if kind == WATERMARK:
            return Outcome(kind, source, sources, watermark_ms=int(obj["t"]), stream_time_ms=obj.get("st"))
        if kind == LIVE:
            return Outcome(kind, source, sources, stream_time_ms=obj.get("st"),
                           updates=tuple(restore_group_now(values) for values in obj["u"]))
        if kind == TICK:
            return Outcome(kind, source, sources)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise BadOutcome(f"unreadable outcomes message: {error}") from None
    raise BadOutcome(f"unknown outcomes message kind {kind!r}")

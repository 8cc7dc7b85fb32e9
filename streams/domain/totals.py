"""Cumulative counts per group since the flow started (what the exporter publishes as Prometheus
`_total` counters, so `increase()` works over any range) and an answer-time histogram, from the
records the live board tallies. Outcomes are counted by `Tally.add_outcome`, so a total means
exactly what the windowed figure of the same name means; answer times go into histogram buckets
as they come (a running total cannot keep them all).

In the distributed pipeline each source keeps its own RunningTotals (saved with its checkpoint) and
the aggregator adds the sources' GroupTotals up (`added`); a source restored from an older
checkpoint recounts what it replays, so the aggregator keeps each source's larger value
(`at_least`) and a counter never falls back, which Prometheus would take for a restart."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, fields
from itertools import accumulate
from typing import Callable, Final, Iterable

from .call_legs import LegClosed, Record
from .config import FlowConfig
from .figures import Tally
from .state import Json, restore_tally, tally_state

Group = tuple[str, str, str]

# police.uk's answer-time band edges: a histogram with them can be compared with the publication.
POLICE_UK_EDGES_S: Final = (10.0, 60.0)
# A spread for the rest, from a quick answer to a caller who gave up waiting on 101.
OTHER_EDGES_S: Final = (2.0, 5.0, 15.0, 20.0, 30.0, 45.0, 90.0, 120.0, 300.0, 600.0, 1200.0)


def answer_time_buckets(config: FlowConfig) -> tuple[float, ...]:
    """Upper bounds in seconds of the answer-time histogram's buckets (Prometheus `le`: answers at
    or under the bound): the police.uk band edges, every configured line's service-level threshold
    and a spread of others. One set for every group, so series of different lines add up."""
    thresholds = {rules.sl_threshold_s for rules in config.lines.values()} | {config.other_lines.sl_threshold_s}
    return tuple(sorted({*POLICE_UK_EDGES_S, *OTHER_EDGES_S, *(float(t) for t in thresholds)}))


@dataclass(frozen=True, slots=True)
class GroupTotals:
    """One group's counts since the flow started; fields named as in the interval report."""

    arrivals: int
    offered: int
    answered: int
    abandoned: int
    short_abandoned: int
    timed_out: int
    transferred: int
    lost: int
    answered_within_sl: int
    band_lt10: int
    band_10_60: int
    band_ge60: int
    answer_time_sum_s: float
    # (upper bound in seconds, answers at or under it), ascending and cumulative as Prometheus
    # histograms are; the +Inf bucket is `answered`.
    answer_time_buckets: tuple[tuple[float, int], ...]


_COUNTS: Final = tuple(f.name for f in fields(GroupTotals))[:-2]
_in_field_order: Final[Callable[..., GroupTotals]] = GroupTotals  # counts, sum, buckets


def _combined(a: GroupTotals, b: GroupTotals, how: Callable[[float, float], float],
              if_buckets_differ: GroupTotals) -> GroupTotals:
    counts = (int(how(getattr(a, name), getattr(b, name))) for name in _COUNTS)
    if [bound for bound, _ in a.answer_time_buckets] != [bound for bound, _ in b.answer_time_buckets]:
        # Sources configured with other SL thresholds (a rolling restart after a change): their
        # histograms cannot be combined, so one is kept whole; the counts still are.
        return _in_field_order(*counts, if_buckets_differ.answer_time_sum_s, if_buckets_differ.answer_time_buckets)
    return _in_field_order(*counts, how(a.answer_time_sum_s, b.answer_time_sum_s),
                           tuple((bound, int(how(x, y))) for (bound, x), (_, y) in zip(a.answer_time_buckets,
                                                                                        b.answer_time_buckets)))


def added(a: GroupTotals, b: GroupTotals) -> GroupTotals:
    """The totals of two sources together (with the first one's histogram if theirs differ)."""
    return _combined(a, b, lambda x, y: x + y, a)


def at_least(older: GroupTotals, newer: GroupTotals) -> GroupTotals:
    """Each count the larger of two readings of one source (one of them from before a restore;
    the newer one's histogram if their buckets differ)."""
    return _combined(older, newer, max, newer)


def totals_state(totals: GroupTotals) -> list[Json]:
    return [*(getattr(totals, name) for name in _COUNTS), totals.answer_time_sum_s,
            [list(bucket) for bucket in totals.answer_time_buckets]]


def restore_totals(values: list[Json]) -> GroupTotals:
    *counts, sum_s, buckets = values
    return _in_field_order(*(int(count) for count in counts), float(sum_s),
                           tuple((float(bound), int(count)) for bound, count in buckets))


@dataclass(slots=True)
class _Running:
    tally: Tally  # its answer_ms stays empty: answer times are bucketed as they come
    buckets: list[int]  # answers per bucket (not cumulative); the last one is over every bound
    answer_ms_total: int = 0


class RunningTotals:
    """Counts records per group as they come (in any order: nothing here depends on time)."""

    def __init__(self, config: FlowConfig) -> None:
        self._config = config
        self._bounds_s = answer_time_buckets(config)
        self._bounds_ms = tuple(round(bound * 1000) for bound in self._bounds_s)
        self._groups: dict[Group, _Running] = {}

    def add(self, records: Iterable[Record]) -> None:
        groups, line_config, bounds_ms = self._groups, self._config.line, self._bounds_ms
        for record in records:
            group = (record.site, record.line, record.queue)
            running = groups.get(group)
            if running is None:
                running = groups[group] = _Running(Tally(), [0] * (len(bounds_ms) + 1))
            if type(record) is not LegClosed:
                running.tally.arrivals += 1
                continue
            wait_ms = record.closed_ms - record.offered_ms
            running.tally.add_outcome(record.outcome, wait_ms, line_config(record.line))
            if running.tally.answer_ms:
                running.tally.answer_ms.clear()
                running.buckets[bisect_left(bounds_ms, wait_ms)] += 1
                running.answer_ms_total += wait_ms

    def snapshot(self) -> dict[Group, GroupTotals]:
        """Every group's totals now, as values a scrape can read while counting goes on."""
        return {group: self._totals(running) for group, running in self._groups.items()}

    def of(self, group: Group) -> GroupTotals | None:
        running = self._groups.get(group)
        return None if running is None else self._totals(running)

    def state(self) -> dict[str, Json]:
        return {"bounds_s": list(self._bounds_s),
                "groups": [[*group, tally_state(r.tally), r.buckets, r.answer_ms_total]
                           for group, r in self._groups.items()]}

    def restore(self, state: dict[str, Json]) -> None:
        """Counts as saved; the histogram too unless its buckets have changed since (a line's SL
        threshold was reconfigured): then it starts again from zero, as after a restart."""
        same_buckets = [float(b) for b in state["bounds_s"]] == list(self._bounds_s)
        empty = [0] * (len(self._bounds_s) + 1)
        self._groups = {(site, line, queue): _Running(restore_tally(tally), list(buckets) if same_buckets else empty[:],
                                                      int(answer_ms) if same_buckets else 0)
                        for site, line, queue, tally, buckets, answer_ms in state["groups"]}

    def _totals(self, running: _Running) -> GroupTotals:
        tally = running.tally
        cumulative = accumulate(running.buckets[:-1])
        return GroupTotals(
            tally.arrivals, tally.offered, tally.answered, tally.abandoned, tally.short_abandoned, tally.timed_out,
            tally.transferred, tally.lost, tally.answered_within_sl, tally.band_lt10, tally.band_10_60,
            tally.band_ge60, running.answer_ms_total / 1000, tuple(zip(self._bounds_s, cumulative)))

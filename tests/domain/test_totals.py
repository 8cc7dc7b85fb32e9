"""The board's running totals (what the exporter publishes as `_total` counters and the answer-time
histogram) equal a brute-force count of the reference's records (tests/domain/reference.py, no
code shared with the domain), at any instant, whatever the arrival order within the lateness, and
so do the worker's (partitions' totals added up, across a restore from a checkpoint)."""

from __future__ import annotations

import json
import zlib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streams.domain import CallFlow, CallTracker, FlowConfig, LineConfig, parse_event
from streams.domain.ordering import EventOrderer
from streams.domain.records import LiveMerge, LiveTallies, group_now_state, restore_group_now
from streams.domain.totals import added, answer_time_buckets, at_least

try:
    from . import reference
    from . import test_properties as props
except ImportError:  # tests/domain is not a package: pytest put this folder on sys.path
    import reference  # type: ignore[no-redef]
    import test_properties as props  # type: ignore[no-redef]

COUNTS = ("arrivals", "offered", "answered", "abandoned", "short_abandoned", "timed_out", "transferred", "lost",
          "answered_within_sl", "band_lt10", "band_10_60", "band_ge60")


def expected_totals(events: list[dict[str, Any]], max_wait_s: float, rules: dict[str, reference.Rule],
                    bounds_s: tuple[float, ...]) -> dict[tuple[str, str, str], dict[str, Any]]:
    records = reference.walk(events, max_wait_s).records
    groups = sorted({(r.site, r.line, r.queue) for r in records})
    expected = {}
    for group in groups:
        mine = [r for r in records if (r.site, r.line, r.queue) == group]
        figures = reference.figures(mine, rules.get(group[1], reference.OTHERS))
        answers = [r.wait_ms for r in mine if r.outcome == "answered"]
        row: dict[str, Any] = {name: figures[name] for name in COUNTS}
        row["answer_time_sum_s"] = sum(answers) / 1000
        row["answer_time_buckets"] = tuple((bound, len([w for w in answers if w <= bound * 1000]))
                                           for bound in bounds_s)
        expected[group] = row
    return expected


@props.FAST
@given(props.streams(), st.dictionaries(st.sampled_from(props.LINES), props.rules), st.sampled_from([5, 60, 3600]),
       props.latenesses_s, st.data())
def test_totals_equal_a_brute_force_count_at_any_instant(
        events: list[dict[str, Any]], line_rules: dict[str, reference.Rule], max_wait_s: int, lateness_s: int,
        data: st.DataObject) -> None:
    # An instant: an event's own time (an event exactly then counts) or any time around them.
    times = sorted(reference.to_ms(event["ts"]) for event in events)
    at_ms = data.draw(st.one_of(st.sampled_from(times), st.integers(times[0] - 1, times[-1] + 1)))
    seen = [event for event in events if reference.to_ms(event["ts"]) <= at_ms]
    jitters = data.draw(st.lists(st.integers(0, lateness_s * 1000 - 1), min_size=len(seen), max_size=len(seen)))
    lines = {**FlowConfig().lines} | {name: LineConfig(sl_formula=rule.formula, sl_threshold_s=rule.threshold_s,
                              short_abandon_s=rule.short_abandon_s) for name, rule in line_rules.items()}
    config = FlowConfig(allowed_lateness_s=lateness_s, max_wait_s=max_wait_s, lines=lines)
    flow = CallFlow(config, live=True)
    for event in props.within_lateness(seen, jitters):
        flow.ingest(parse_event(event))
        flow.advance()
    flow.finish()
    bounds_s = answer_time_buckets(config)
    totals = flow.snapshot(at_ms).totals
    actual = {group: {name: getattr(t, name) for name in (*COUNTS, "answer_time_buckets")}
              | {"answer_time_sum_s": round(t.answer_time_sum_s, 3)} for group, t in totals.items()}
    expected = expected_totals(seen, max_wait_s, {**reference.DEFAULT_RULES, **line_rules}, bounds_s)
    for row in expected.values():
        row["answer_time_sum_s"] = round(row["answer_time_sum_s"], 3)
    assert set(actual) == set(expected)
    for group, row in expected.items():
        for name, value in row.items():
            assert actual[group][name] == value, (group, name)


def test_buckets_hold_the_police_uk_band_edges_and_every_line_threshold():
    config = FlowConfig(lines={"999": LineConfig(sl_threshold_s=10, sl_formula="answered"),
                               "101": LineConfig(sl_threshold_s=30), "fire": LineConfig(sl_threshold_s=7.5)},
                        other_lines=LineConfig(sl_threshold_s=25))
    bounds = answer_time_buckets(config)
    assert list(bounds) == sorted(set(bounds))
    assert {10.0, 60.0, 30.0, 7.5, 25.0} <= set(bounds)
    assert all(isinstance(bound, float) for bound in bounds)


def test_totals_never_go_down_as_time_passes_and_the_day_turns():
    """Rolling windows and today fall back; the totals do not (a counter that fell would look
    like a restart to Prometheus)."""
    flow = CallFlow(FlowConfig(allowed_lateness_s=0), live=True)
    group = ("default", "101", "*")
    for call, (offered, answered) in enumerate((("2024-03-01T23:50:00Z", "2024-03-01T23:50:10Z"),
                                                ("2024-03-02T00:10:00Z", "2024-03-02T00:11:05Z"))):
        for kind, ts in (("offered", offered), ("answered", answered)):
            flow.ingest(parse_event({"v": 1, "event_id": f"{call}{kind}", "call_id": f"c{call}", "type": kind,
                                     "ts": ts, "line": "101", "queue": "q", "agent": "a"}))
    flow.finish()
    later = flow.snapshot(reference.to_ms("2024-03-02T03:00:00Z"))
    assert later.figures["60m"][group]["answered"] == 0 and later.figures["today"][group]["answered"] == 1
    totals = later.totals[group]
    assert (totals.arrivals, totals.answered, totals.answer_time_sum_s) == (2, 2, 75.0)
    buckets = dict(totals.answer_time_buckets)
    assert (buckets[5.0], buckets[15.0], buckets[60.0], buckets[90.0]) == (0, 1, 1, 2)
    # Prometheus buckets hold answers at or under their bound; police.uk's bands are strict: an
    # answer at exactly 10 s is in the 10 s bucket and in the 10-60 s band.
    assert buckets[10.0] == 1 and (totals.band_lt10, totals.band_10_60, totals.band_ge60) == (0, 1, 1)


@props.FAST
@given(props.streams(), st.integers(2, 4), st.data())
def test_partitions_totals_merged_equal_the_brute_force_count_and_never_fall_back_on_a_restore(
        events: list[dict[str, Any]], partitions: int, data: st.DataObject) -> None:
    """The worker's way: each partition counts its own calls (LiveTallies, saved with its checkpoint),
    the aggregator adds the partitions up (LiveMerge). A partition restored from its checkpoint
    replays what followed: the merged totals stay where they were meanwhile, then end exact; so
    do those of a new aggregator (a worker restart) told by the partitions what they hold."""
    config = FlowConfig(allowed_lateness_s=0, max_wait_s=3600)
    parsed = sorted((parse_event(event) for event in events), key=lambda e: e.occurred_ms)
    by_partition: list[list[Any]] = [[] for _ in range(partitions)]
    for event in parsed:
        by_partition[zlib.crc32((event.call_id or "").encode()) % partitions].append(event)
    now_ms = parsed[-1].occurred_ms
    merge = LiveMerge(config)
    held: list[LiveTallies] = []

    def send(number: int, tallies: LiveTallies, full: bool = False, to: LiveMerge = merge) -> None:
        for update in tallies.updates(now_ms, full):
            to.update(number, restore_group_now(json.loads(json.dumps(group_now_state(update)))))

    for number, mine in enumerate(by_partition):
        orderer, tracker = EventOrderer(0), CallTracker(config.max_wait_ms)
        for event in mine:
            orderer.offer(event)
        records: list[Any] = []
        for event in orderer.drain():
            tracker.apply(event, records)
        cut = data.draw(st.integers(0, len(records)))
        tallies = LiveTallies(config)
        tallies.add(records[:cut])
        send(number, tallies)
        checkpoint = json.loads(json.dumps(tallies.state()))
        tallies.add(records[cut:])
        send(number, tallies)
        before = merge.snapshot(now_ms).totals
        restored = LiveTallies(config)
        restored.restore(checkpoint)
        send(number, restored, full=True)
        assert merge.snapshot(now_ms).totals == before  # the older reading does not pull them back
        restored.add(records[cut:])  # the replay after the restore
        send(number, restored)
        held.append(LiveTallies(config))
        held[-1].restore(json.loads(json.dumps(restored.state())))
    new_merge = LiveMerge(config)
    for number, tallies in enumerate(held):
        send(number, tallies, full=True, to=new_merge)
    expected = expected_totals(events, 3600, reference.DEFAULT_RULES, answer_time_buckets(config))
    for merged in (merge.snapshot(now_ms).totals, new_merge.snapshot(now_ms).totals):
        assert set(merged) == set(expected)
        for group, row in expected.items():
            for name, value in row.items():
                actual = getattr(merged[group], name)
                assert (round(actual, 3) if name == "answer_time_sum_s" else actual) == \
                    (round(value, 3) if name == "answer_time_sum_s" else value), (group, name)


def test_sources_with_other_histogram_buckets_still_add_up_their_counts():
    """A rolling restart after an SL threshold changed: two sources' histograms have other buckets.
    Nothing fails; counts add up and one histogram is kept whole."""
    def totals_of(config: FlowConfig) -> Any:
        flow = CallFlow(config, live=True)
        for kind, ts in (("offered", "2024-03-01T09:00:00Z"), ("answered", "2024-03-01T09:00:08Z")):
            flow.ingest(parse_event({"v": 1, "event_id": kind, "call_id": "c", "type": kind, "ts": ts,
                                     "line": "fire", "queue": "q", "agent": "a"}))
        flow.finish()
        return flow.snapshot(reference.to_ms("2024-03-01T09:01:00Z")).totals[("default", "fire", "q")]

    before = totals_of(FlowConfig(other_lines=LineConfig(sl_threshold_s=25)))
    after = totals_of(FlowConfig(other_lines=LineConfig(sl_threshold_s=8)))
    assert 25.0 in dict(before.answer_time_buckets) and 8.0 in dict(after.answer_time_buckets)
    both = added(before, after)
    assert both.answered == 2 and both.answer_time_buckets == before.answer_time_buckets
    newest = at_least(before, after)
    assert newest.answered == 1 and newest.answer_time_buckets == after.answer_time_buckets

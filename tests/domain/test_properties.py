"""Property-based tests: the domain's interval report equals the brute-force reference of SPEC
section 3 (tests/domain/reference.py), whatever the arrival order within the allowed lateness,
with duplicates, late events, lost legs, clock changes and every service-level formula."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.domain import CallFlow, FlowConfig, FlowCounts, LineConfig, parse_event

try:
    from . import reference
except ImportError:  # tests/domain is not a package: pytest put this folder on sys.path
    import reference  # type: ignore[no-redef]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
BASE_MS = reference.to_ms("2024-03-01T08:55:00Z")  # a few windows of every size are crossed
SITES = ("default", "north")
LINES = ("999", "101", "fire")
QUEUES = ("a", "b", "c")  # shared by every line: a leg is a call's time in one queue
OFFSETS_MIN = (0, 0, 0, 60, -300, 330)

# CALLWATCH_PROPERTY_EXAMPLES=5000 for a deep search; the default keeps the file well under a minute.
EXAMPLES = int(os.environ.get("CALLWATCH_PROPERTY_EXAMPLES", "150"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=max(EXAMPLES // 3, 10), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# Waits clustered on the thresholds and bands (5, 10, 30, 60 s) where off-by-one errors live.
waits_ms = st.one_of(
    st.sampled_from([0, 1, 999, 4_999, 5_000, 9_999, 10_000, 29_999, 30_000, 59_999, 60_000]),
    st.integers(0, 90).map(lambda s: s * 1000),
    st.integers(0, 150_000),
)
gaps_ms = st.sampled_from([0, 0, 1, 500, 2_000, 15_000, 90_000])


def stamp(at_ms: int, offset_min: int) -> str:
    """RFC 3339 with millisecond precision in the given UTC offset."""
    moment = (EPOCH + timedelta(milliseconds=at_ms)).astimezone(timezone(timedelta(minutes=offset_min)))
    text = moment.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@dataclass
class Draft:
    """An event before it gets its id and textual timestamp."""

    type: str
    at_ms: int
    call_id: str = ""
    site: str = "default"
    line: str = ""
    queue: str = ""
    agent: str | None = None
    state: str | None = None


@st.composite
def calls(draw: st.DrawFn, call_id: str, first_ms: st.SearchStrategy[int]) -> list[Draft]:
    """One call: a chain of legs (offer, optional outcome, transfer to the next queue), with some
    repeated offers, conflicting second outcomes and `ended` events."""
    at_ms = draw(first_ms)
    site = draw(st.sampled_from(SITES))
    line, queue = draw(st.sampled_from(LINES)), draw(st.sampled_from(QUEUES))
    drafts: list[Draft] = []

    def add(kind: str, when_ms: int, **more: Any) -> None:
        drafts.append(Draft(kind, when_ms, call_id, site, line, queue, **more))

    for _ in range(draw(st.integers(1, 4))):
        add("offered", at_ms)
        if draw(st.integers(0, 9)) == 0:
            add("offered", at_ms + draw(waits_ms))  # repeated offer
        outcome = draw(st.sampled_from(["answered", "answered", "abandoned", "timeout", "transferred",
                                        "transferred", None]))
        if outcome is None:
            break
        outcome_ms = at_ms + draw(waits_ms)
        add(outcome, outcome_ms, agent="ag1" if outcome == "answered" else None)
        if draw(st.integers(0, 5)) == 0:  # a second terminal event: a conflict, or the real first
            add(draw(st.sampled_from(["answered", "abandoned", "timeout", "transferred"])),
                at_ms + draw(waits_ms))
        if outcome == "answered" and draw(st.booleans()):
            add("ended", outcome_ms + draw(waits_ms))
            if draw(st.integers(0, 5)) == 0:
                add("ended", outcome_ms + draw(waits_ms))
        if outcome != "transferred" or draw(st.integers(0, 7)) == 0:
            break  # done, or a transfer whose next offer never comes
        if draw(st.booleans()):
            line = draw(st.sampled_from(LINES))
            if draw(st.integers(0, 3)) == 0:
                site = draw(st.sampled_from(SITES))
        queue = draw(st.sampled_from(QUEUES))
        at_ms = outcome_ms + draw(gaps_ms)
    return drafts


@st.composite
def streams(draw: st.DrawFn, first_ms: st.SearchStrategy[int] | None = None,
            max_calls: int = 10) -> list[dict[str, Any]]:
    """Canonical v1 event objects of a small centre, in generation order (not sorted)."""
    if first_ms is None:
        # Whole seconds half of the time, so events tie in time.
        first_ms = st.builds(lambda s, ms: BASE_MS + s * 1000 + ms, st.integers(0, 1_800),
                             st.sampled_from([0, 0, 0, 250, 999]))
    drafts: list[Draft] = []
    for number in range(draw(st.integers(1, max_calls))):
        drafts.extend(draw(calls(f"c{number}", first_ms)))
    times = [draft.at_ms for draft in drafts]
    for _ in range(draw(st.integers(0, 3))):  # events for calls (or queues) never offered
        kind = draw(st.sampled_from(["answered", "abandoned", "timeout", "transferred", "ended"]))
        drafts.append(Draft(kind, draw(st.sampled_from(times)), draw(st.sampled_from(["ghost", "c0"])),
                            line=draw(st.sampled_from(LINES)), queue=draw(st.sampled_from(QUEUES + ("z",)))))
    for _ in range(draw(st.integers(0, 3))):  # agents change state; some name a call
        drafts.append(Draft("agent_state", draw(st.sampled_from(times)),
                            draw(st.sampled_from(["", "c0", "ghost"])), agent="ag1",
                            state=draw(st.sampled_from(["available", "busy", "wrapup", "away"]))))
    # Ids in an order unrelated to time, so event_id tie-breaks are exercised.
    ids = draw(st.permutations(range(len(drafts))))
    events = []
    for draft, number in zip(drafts, ids):
        obj: dict[str, Any] = {"v": 1, "event_id": f"e{number:03d}", "type": draft.type,
                               "ts": stamp(draft.at_ms, draw(st.sampled_from(OFFSETS_MIN)))}
        if draft.call_id:
            obj["call_id"] = draft.call_id
        if draft.type == "agent_state":
            obj.update(agent=draft.agent, state=draft.state)
        else:
            obj.update(line=draft.line, queue=draft.queue)
        if draft.site != "default" or draw(st.booleans()):
            obj["site"] = draft.site
        if draft.type == "answered":
            obj["agent"] = draft.agent
        events.append(obj)
    return events


def by_time(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted by event time only: ties stay in generation order, not the processing order."""
    return sorted(events, key=lambda event: reference.to_ms(event["ts"]))


def within_lateness(events: list[dict[str, Any]], jitters_ms: list[int]) -> list[dict[str, Any]]:
    """An arrival order where no event comes more than the lateness behind the newest seen."""
    order = sorted(range(len(events)), key=lambda i: reference.to_ms(events[i]["ts"]) + jitters_ms[i])
    return [events[i] for i in order]


def run(events: list[dict[str, Any]], config: FlowConfig, size_s: int) -> tuple[list[dict[str, Any]], FlowCounts]:
    flow = CallFlow(config, interval_s=size_s)
    rows: list[dict[str, Any]] = []
    for obj in events:
        flow.ingest(parse_event(obj))
        rows.extend(flow.advance())
    rows.extend(flow.finish())
    return rows, flow.counts


def assert_rows(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    for row in actual:
        assert tuple(row) == reference.REPORT_FIELDS
        assert isinstance(row["sl_threshold_s"], float)
    assert actual == expected


window_sizes = st.sampled_from([60, 300, 900, 3600, 86_400])
latenesses_s = st.sampled_from([1, 5, 120])


@FAST
@given(streams(), window_sizes)
def test_sorted_stream_gives_the_reference_rows(events: list[dict[str, Any]], size_s: int) -> None:
    rows, counts = run(by_time(events), FlowConfig(allowed_lateness_s=120, max_wait_s=3600), size_s)
    assert_rows(rows, reference.report(events, size_s))
    # The stream spans less than max_wait, so no call is forgotten and every count is comparable.
    walked = reference.walk(events, 3600)
    assert (counts.accepted, counts.duplicates, counts.late, counts.pending) == (len(events), 0, 0, 0)
    assert (counts.conflicts, counts.unmatched, counts.lost) == (walked.conflicts, walked.unmatched, 0)


@FAST
@given(streams(), window_sizes, latenesses_s, st.data())
def test_any_order_within_the_lateness_gives_the_same_rows(
        events: list[dict[str, Any]], size_s: int, lateness_s: int, data: st.DataObject) -> None:
    jitters = data.draw(st.lists(st.integers(0, lateness_s * 1000 - 1), min_size=len(events),
                                 max_size=len(events)))
    config = FlowConfig(allowed_lateness_s=lateness_s, max_wait_s=3600)
    rows, counts = run(within_lateness(events, jitters), config, size_s)
    assert counts.late == 0
    assert_rows(rows, reference.report(events, size_s))


@FAST
@given(streams(), window_sizes, latenesses_s, st.data())
def test_duplicates_are_counted_and_change_nothing(
        events: list[dict[str, Any]], size_s: int, lateness_s: int, data: st.DataObject) -> None:
    copies = data.draw(st.lists(st.sampled_from(events), min_size=1, max_size=len(events) + 3))
    stream = events + [dict(event) for event in copies]
    jitters = data.draw(st.lists(st.integers(0, lateness_s * 1000 - 1), min_size=len(stream),
                                 max_size=len(stream)))
    config = FlowConfig(allowed_lateness_s=lateness_s, max_wait_s=3600)
    rows, counts = run(within_lateness(stream, jitters), config, size_s)
    assert (counts.duplicates, counts.late, counts.accepted) == (len(copies), 0, len(events))
    assert_rows(rows, reference.report(events, size_s))


@FAST
@given(streams(), window_sizes, latenesses_s, st.data())
def test_events_later_than_the_lateness_are_counted_and_not_applied(
        events: list[dict[str, Any]], size_s: int, lateness_s: int, data: st.DataObject) -> None:
    ordered = by_time(events)
    lateness_ms = lateness_s * 1000
    newest_ms = reference.to_ms(ordered[-1]["ts"])
    candidates = [i for i, event in enumerate(ordered) if reference.to_ms(event["ts"]) + lateness_ms < newest_ms]
    assume(candidates)
    delayed = set(data.draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=5)))
    on_time = [event for i, event in enumerate(ordered) if i not in delayed]
    # Each delayed event arrives just after the first on-time event more than the lateness newer.
    carried: dict[int, list[dict[str, Any]]] = {}
    for i in sorted(delayed):
        due_ms = reference.to_ms(ordered[i]["ts"]) + lateness_ms
        carrier = next(k for k, event in enumerate(on_time) if reference.to_ms(event["ts"]) > due_ms)
        carried.setdefault(carrier, []).append(ordered[i])
    arrival = []
    for k, event in enumerate(on_time):
        arrival.append(event)
        arrival.extend(carried.get(k, []))
    rows, counts = run(arrival, FlowConfig(allowed_lateness_s=lateness_s, max_wait_s=3600), size_s)
    assert counts.late == len(delayed)
    assert counts.accepted == len(on_time)
    assert_rows(rows, reference.report(on_time, size_s))


CLOCK_CHANGES = (
    ("Europe/London", "2024-03-31T00:00:00Z", "2024-03-31T23:00:00Z"),   # 23 h
    ("Europe/London", "2024-10-26T23:00:00Z", "2024-10-28T00:00:00Z"),   # 25 h
    ("America/New_York", "2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z"),  # 23 h
    ("America/New_York", "2024-11-03T04:00:00Z", "2024-11-04T05:00:00Z"),  # 25 h
)


@SLOW
@given(st.sampled_from(CLOCK_CHANGES), st.sampled_from([3600, 900, 86_400]), st.data())
def test_days_with_a_clock_change(change: tuple[str, str, str], size_s: int, data: st.DataObject) -> None:
    tz, day_start, day_end = change
    start_ms, end_ms = reference.to_ms(day_start), reference.to_ms(day_end)
    # Calls all over the local day (and a little either side), at whole minutes or not.
    first_ms = st.builds(lambda m, ms: start_ms + m * 60_000 + ms,
                         st.integers(-30, (end_ms - start_ms) // 60_000 + 30), st.sampled_from([0, 0, 123]))
    events = data.draw(streams(first_ms, max_calls=25))
    rows, counts = run(by_time(events), FlowConfig(max_wait_s=3600, tz=tz), size_s)
    assert counts.late == 0
    assert_rows(rows, reference.report(events, size_s, tz=tz))
    if size_s == 86_400:
        for row in rows:
            if row["window_start"] == day_start:
                assert row["window_end"] == day_end
    for row in rows:
        length_ms = reference.to_ms(row["window_end"]) - reference.to_ms(row["window_start"])
        assert length_ms in ((end_ms - start_ms, 86_400_000) if size_s == 86_400 else (size_s * 1000,))


@FAST
@given(streams(), st.sampled_from([60, 900]), st.sampled_from([1, 5, 10, 30, 60]), latenesses_s, st.data())
def test_lost_legs(events: list[dict[str, Any]], size_s: int, max_wait_s: int, lateness_s: int,
                   data: st.DataObject) -> None:
    jitters = data.draw(st.lists(st.integers(0, lateness_s * 1000 - 1), min_size=len(events),
                                 max_size=len(events)))
    walked = reference.walk(events, max_wait_s)
    config = FlowConfig(allowed_lateness_s=lateness_s, max_wait_s=max_wait_s)
    rows, counts = run(within_lateness(events, jitters), config, size_s)
    assert_rows(rows, reference.report(events, size_s, max_wait_s=max_wait_s))
    assert counts.lost == walked.lost
    # Calls done for longer than max_wait are forgotten: their later events (conflicts, and even
    # a proper `ended`) become unmatched, so only bounds hold here.
    assert counts.conflicts <= walked.conflicts
    assert counts.conflicts + counts.unmatched >= walked.conflicts + walked.unmatched


rules = st.builds(
    reference.Rule,
    st.sampled_from(["answered", "offered", "positive"]),
    st.sampled_from([5.0, 10.0, 20, 30.0, 7.5, 60.0]),
    st.sampled_from([0.0, 2.0, 5.0, 10, 45.0]),
)


@FAST
@given(streams(), st.sampled_from([300, 3600]), st.dictionaries(st.sampled_from(LINES), rules))
def test_service_level_formulas(events: list[dict[str, Any]], size_s: int,
                                line_rules: dict[str, reference.Rule]) -> None:
    lines = {name: LineConfig(sl_formula=rule.formula, sl_threshold_s=rule.threshold_s,
                              short_abandon_s=rule.short_abandon_s) for name, rule in line_rules.items()}
    rows, _ = run(by_time(events), FlowConfig(lines=lines), size_s)
    assert_rows(rows, reference.report(events, size_s, rules=line_rules))

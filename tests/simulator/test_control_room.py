"""The control-room simulator: deterministic, canonical, in event-time order, and realistic enough
that the figures behave as a supervisor would expect (healthy normally, breached by a surge)."""

from __future__ import annotations

import collections
import inspect
import itertools
import json
import math
import re
from datetime import datetime, timezone
from typing import Iterable

import pytest

from streams.domain.config import FlowConfig
from streams.domain.events import parse_event, parse_ts
from streams.domain.flow import CallFlow
from streams.simulator import SCENARIOS, Scenario, UnknownScenario, simulate, simulate_to_lines
from streams.simulator.demand import (LINE_101, LINE_999, LocalClock, arrival_rate_per_h, hourly_arrivals,
                                      is_night_out)
from streams.simulator.staffing import QUEUE_101, QUEUE_101_CRIME, QUEUE_999, QUEUE_999_OVERFLOW, Shift

HOUR_S = 3600
QUARTER_MS = 900_000


def at(text: str) -> int:
    return parse_ts(text)


TUESDAY_NOON = at("2024-03-05T12:00:00Z")   # GMT: local time is UTC
TUESDAY_MIDNIGHT = at("2024-03-05T00:00:00Z")
TUESDAY_AFTERNOON = at("2024-03-05T13:00:00Z")


def events(seed: int, start_ms: int, hours: float, scenario: str | Scenario = "normal") -> list[dict[str, object]]:
    return list(simulate(seed, start_ms, hours * HOUR_S, scenario))


def interval_rows(stream: Iterable[dict[str, object]], interval_s: int = 900) -> list[dict[str, object]]:
    flow = CallFlow(FlowConfig(), interval_s=interval_s)
    rows: list[dict[str, object]] = []
    for obj in stream:
        flow.ingest(parse_event(obj))
        rows.extend(flow.advance())
    rows.extend(flow.finish())
    return rows


def line_totals(rows: list[dict[str, object]], line: str) -> dict[str, collections.Counter[str]]:
    """window_start -> the counts of the line-total row (queue '*')."""
    totals: dict[str, collections.Counter[str]] = {}
    for row in rows:
        if row["line"] == line and row["queue"] == "*":
            counts = totals.setdefault(str(row["window_start"]), collections.Counter())
            for name in ("arrivals", "offered", "answered", "abandoned", "short_abandoned",
                         "answered_within_sl", "timed_out"):
                value = row[name]
                assert isinstance(value, int)
                counts[name] += value
    return totals


def summed(totals: dict[str, collections.Counter[str]], windows: Iterable[str] | None = None) -> collections.Counter[str]:
    result: collections.Counter[str] = collections.Counter()
    for window in (totals if windows is None else windows):
        result.update(totals.get(window, collections.Counter()))
    return result


def service_level(counts: collections.Counter[str]) -> float:
    return counts["answered_within_sl"] / counts["answered"]


def abandonment(counts: collections.Counter[str]) -> float:
    return counts["abandoned"] / counts["offered"]


def window_start(instant_ms: int) -> str:
    return datetime.fromtimestamp(instant_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def windows_between(from_ms: int, until_ms: int) -> list[str]:
    return [window_start(ms) for ms in range(from_ms, until_ms, QUARTER_MS)]


# -- determinism and the event contract


def test_same_seed_gives_identical_events_and_another_seed_different_ones() -> None:
    first = events(7, TUESDAY_NOON, 1)
    assert first == events(7, TUESDAY_NOON, 1)
    assert [e["ts"] for e in first] != [e["ts"] for e in events(8, TUESDAY_NOON, 1)]


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    longer = events(3, TUESDAY_NOON, 2)
    shorter = events(3, TUESDAY_NOON, 1)
    assert shorter == longer[:len(shorter)]
    end = at("2024-03-05T13:00:00Z")
    assert all(parse_ts(e["ts"]) < end for e in shorter)
    assert parse_ts(longer[len(shorter)]["ts"]) >= end


def test_every_event_is_canonical_in_time_order_with_unique_ids() -> None:
    stream = events(1, TUESDAY_MIDNIGHT, 24)
    parsed = [parse_event(obj) for obj in stream]
    times = [event.occurred_ms for event in parsed]
    assert times == sorted(times)
    assert len({event.event_id for event in parsed}) == len(parsed)
    for event in parsed:
        assert event.source == "simulate" and event.site == "default"
        if event.type == "agent_state":
            assert re.fullmatch(r"agent-\d{3}", event.agent or "") and event.call_id == ""
        else:
            assert re.fullmatch(r"h:[0-9a-f]{16}", event.caller or "")
            assert event.line in (LINE_999, LINE_101)
            assert event.queue in (QUEUE_999, QUEUE_999_OVERFLOW, QUEUE_101, QUEUE_101_CRIME)
            assert (event.agent is not None) == (event.type in ("answered", "ended"))


def test_every_call_is_offered_first_and_reaches_one_outcome_per_leg() -> None:
    legs: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for obj in events(2, TUESDAY_NOON, 6, "surge"):
        if obj["type"] != "agent_state":
            legs[(str(obj["call_id"]), str(obj["queue"]))].append(str(obj["type"]))
    for types in legs.values():
        assert types[0] == "offered"
        outcomes = [t for t in types if t in ("answered", "abandoned", "timeout", "transferred")]
        assert len(outcomes) <= 1
        if "ended" in types:
            assert types[-2:] == ["answered", "ended"]


def test_ids_differ_between_runs_that_could_be_merged() -> None:
    def ids(**kwargs: object) -> set[object]:
        arguments: dict[str, object] = {"seed": 1, "start_ms": TUESDAY_NOON, "duration_s": 600.0}
        arguments.update(kwargs)
        return {e["event_id"] for e in simulate(**arguments)}  # type: ignore[arg-type]

    base = ids()
    assert not base & ids(seed=2)
    assert not base & ids(start_ms=TUESDAY_NOON + 86_400_000)
    assert not base & ids(site="north")


def test_json_lines_are_compact_and_decode_to_the_same_events() -> None:
    lines = list(simulate_to_lines(4, TUESDAY_NOON, 600))
    assert [json.loads(line) for line in lines] == events(4, TUESDAY_NOON, 600 / HOUR_S)
    assert all(", " not in line and ": " not in line for line in lines)


def test_events_are_generated_lazily() -> None:
    a_year = simulate(1, TUESDAY_NOON, 365 * 86_400)
    first = next(a_year)
    assert inspect.isgenerator(a_year)
    assert first["type"] == "agent_state" and first["ts"] == "2024-03-05T12:00:00.000Z"


def test_an_endless_run_for_a_live_source() -> None:
    first = list(itertools.islice(simulate(1, TUESDAY_NOON, math.inf), 2000))
    assert first == events(1, TUESDAY_NOON, 24)[:2000]


def test_the_call_flow_takes_every_event_cleanly() -> None:
    flow = CallFlow(FlowConfig(), interval_s=900)
    for obj in simulate(2, TUESDAY_NOON, 6 * HOUR_S, "surge"):
        flow.ingest(parse_event(obj))
        list(flow.advance())
    list(flow.finish())
    counts = flow.counts
    assert (counts.duplicates, counts.late, counts.conflicts, counts.unmatched, counts.lost) == (0, 0, 0, 0, 0)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(UnknownScenario, match="normal, surge"):
        simulate(1, TUESDAY_NOON, 60, "riot")
    with pytest.raises(ValueError, match="duration"):
        simulate(1, TUESDAY_NOON, -1)
    with pytest.raises(ValueError):
        Scenario("bad", surge_multiplier_999=0.5)
    assert list(simulate(1, TUESDAY_NOON, 0)) == []


# -- realism: demand


def test_hourly_volumes_follow_the_day() -> None:
    stream = events(5, TUESDAY_MIDNIGHT, 48)  # Tuesday and Wednesday, GMT
    arrivals: collections.Counter[tuple[str, int]] = collections.Counter()
    first_offers = set()
    for obj in stream:
        if obj["type"] == "offered" and obj["call_id"] not in first_offers:
            first_offers.add(obj["call_id"])
            arrivals[(str(obj["line"]), int(str(obj["ts"])[11:13]))] += 1

    def per_hour(line: str, hours: range) -> float:
        return sum(arrivals[(line, hour)] for hour in hours) / (2 * len(hours))

    assert 20 <= per_hour(LINE_999, range(16, 20)) <= 40
    assert 40 <= per_hour(LINE_101, range(15, 19)) <= 80
    assert per_hour(LINE_999, range(4, 6)) < 12
    assert per_hour(LINE_101, range(4, 6)) < 10


def test_friday_and_saturday_nights_are_busier() -> None:
    assert is_night_out(4, 22) and is_night_out(5, 2) and not is_night_out(2, 22)
    tuesday_night = hourly_arrivals(LINE_999, 1, 22)
    assert hourly_arrivals(LINE_999, 4, 22) > tuesday_night
    assert hourly_arrivals(LINE_999, 5, 22) > tuesday_night


def test_arrival_rate_ramps_between_hours_and_across_midnight() -> None:
    assert arrival_rate_per_h(LINE_101, 1, 9.0) == hourly_arrivals(LINE_101, 1, 9)
    halfway = arrival_rate_per_h(LINE_101, 1, 8.5)
    assert halfway == pytest.approx((hourly_arrivals(LINE_101, 1, 8) + hourly_arrivals(LINE_101, 1, 9)) / 2)
    # Sunday 23:30 ramps towards Monday 00:00.
    assert arrival_rate_per_h(LINE_999, 6, 23.5) == pytest.approx(
        (hourly_arrivals(LINE_999, 6, 23) + hourly_arrivals(LINE_999, 0, 0)) / 2)


def test_local_clock_follows_british_summer_time() -> None:
    from zoneinfo import ZoneInfo

    clock = LocalClock(ZoneInfo("Europe/London"))
    assert clock.read(at("2024-03-05T04:30:00Z")) == (1, 4.5)
    assert clock.read(at("2024-07-05T04:30:00Z")) == (4, 5.5)


# -- realism: the figures a supervisor sees


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_normal_scenario_is_healthy(seed: int) -> None:
    rows = interval_rows(simulate(seed, TUESDAY_NOON, 6 * HOUR_S))
    assert service_level(summed(line_totals(rows, LINE_999))) >= 0.9
    assert abandonment(summed(line_totals(rows, LINE_101))) < 0.05


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_surge_breaches_both_targets_then_recovers(seed: int) -> None:
    start = TUESDAY_AFTERNOON
    rows = interval_rows(simulate(seed, start, 5 * HOUR_S, "surge"))
    calls_999, calls_101 = line_totals(rows, LINE_999), line_totals(rows, LINE_101)
    assert any(c["answered"] and service_level(c) < 0.9 for c in calls_999.values())
    assert any(c["offered"] and abandonment(c) > 0.05 for c in calls_101.values())
    # The surge ends 90 minutes in; the last two hours are the aftermath.
    surge_hour = windows_between(start + 1_800_000, start + 5_400_000)
    final_hour = windows_between(start + 4 * HOUR_S * 1000, start + 5 * HOUR_S * 1000)
    last_two_hours = windows_between(start + 3 * HOUR_S * 1000, start + 5 * HOUR_S * 1000)
    assert service_level(summed(calls_999, surge_hour)) < 0.9
    assert service_level(summed(calls_999, final_hour)) >= 0.9
    assert abandonment(summed(calls_101, last_two_hours)) < abandonment(summed(calls_101, surge_hour))


@pytest.mark.parametrize("seed", [1, 2])
def test_abandonment_emerges_from_waiting(seed: int) -> None:
    start = TUESDAY_AFTERNOON
    surge = SCENARIOS["surge"]
    surge_from = start + round(surge.surge_start_s * 1000)
    surge_until = surge_from + round(surge.surge_duration_s * 1000)
    rows = interval_rows(simulate(seed, start, 5 * HOUR_S, surge))
    during = windows_between(surge_from, surge_until)
    outside = [w for w in windows_between(start, start + 5 * HOUR_S * 1000) if w not in during]
    calls_999, calls_101 = line_totals(rows, LINE_999), line_totals(rows, LINE_101)
    # 101 starves while every handler answers 999 first.
    assert abandonment(summed(calls_101, during)) > max(0.05, 2 * abandonment(summed(calls_101, outside)))
    # 999 callers who hang up within seconds (misdials) do so whatever the queue; the others give
    # up only when the wait outlasts their patience, which happens in the surge.
    waited_999 = abandonment_after_waiting(summed(calls_999, during))
    assert waited_999 > max(0.03, 3 * abandonment_after_waiting(summed(calls_999, outside)))
    # The same hour without the incident: same callers, same staff, (almost) nobody gives up.
    normal = line_totals(interval_rows(simulate(seed, start, 5 * HOUR_S)), LINE_999)
    assert abandonment_after_waiting(summed(normal, during)) < waited_999 / 3


def abandonment_after_waiting(counts: collections.Counter[str]) -> float:
    return (counts["abandoned"] - counts["short_abandoned"]) / (counts["offered"] - counts["short_abandoned"])


def test_surge_is_the_normal_run_until_it_begins() -> None:
    def without_ids(stream: Iterable[dict[str, object]], until_ms: int) -> list[dict[str, object]]:
        return [{k: v for k, v in e.items() if k not in ("event_id", "call_id")}
                for e in stream if parse_ts(e["ts"]) < until_ms]

    surge_from = TUESDAY_NOON + 1_800_000
    normal = without_ids(simulate(6, TUESDAY_NOON, 2 * HOUR_S), surge_from)
    surged = without_ids(simulate(6, TUESDAY_NOON, 2 * HOUR_S, "surge"), surge_from)
    assert normal == surged and normal


def test_surge_timing_and_size_are_parameters() -> None:
    early_short = Scenario("drill", surge_start_s=0, surge_duration_s=900, surge_multiplier_999=8.0)

    def offers_999(scenario: Scenario | str) -> int:
        return sum(1 for e in simulate(2, TUESDAY_NOON, 900, scenario)
                   if e["type"] == "offered" and e["queue"] == QUEUE_999)

    assert offers_999(early_short) > 4 * offers_999("normal")


@pytest.mark.parametrize("seed", [1, 2])
def test_a_day_has_transfers_timeouts_and_every_agent_state(seed: int) -> None:
    stream = events(seed, TUESDAY_MIDNIGHT, 24)
    types = collections.Counter(str(e["type"]) for e in stream)
    states = collections.Counter(str(e["state"]) for e in stream if e["type"] == "agent_state")
    assert types["timeout"] > 0
    assert set(states) == {"available", "busy", "wrapup", "away", "logged_out"}
    offered = {(e["call_id"], e["queue"]): parse_ts(e["ts"]) for e in stream if e["type"] == "offered"}
    for line in (LINE_999, LINE_101):
        waits_ms = [parse_ts(e["ts"]) - offered[(e["call_id"], e["queue"])]
                    for e in stream if e["type"] == "abandoned" and e["line"] == line]
        assert any(wait_ms < 5000 for wait_ms in waits_ms), "short abandons (misdials) exist"
    calls_101 = {e["call_id"] for e in stream if e["type"] == "offered" and e["line"] == LINE_101}
    transfers_101 = [e for e in stream if e["type"] == "transferred" and e["line"] == LINE_101]
    assert 0.01 <= len(transfers_101) / len(calls_101) <= 0.04
    for transfer in (e for e in stream if e["type"] == "transferred"):
        follow = [e for e in stream if e["type"] == "offered" and e["call_id"] == transfer["call_id"]
                  and e["ts"] == transfer["ts"] and e["queue"] != transfer["queue"]]
        assert len(follow) == 1
        assert (transfer["queue"], follow[0]["queue"]) in {(QUEUE_101, QUEUE_101_CRIME), (QUEUE_999, QUEUE_999_OVERFLOW)}


def test_overflow_happens_after_a_long_999_wait() -> None:
    stream = events(1, TUESDAY_AFTERNOON, 2, "surge")
    offered = {(e["call_id"], e["queue"]): parse_ts(e["ts"]) for e in stream if e["type"] == "offered"}
    overflows = [e for e in stream if e["type"] == "transferred" and e["queue"] == QUEUE_999]
    assert overflows
    for e in overflows:
        assert parse_ts(e["ts"]) - offered[(e["call_id"], QUEUE_999)] == 45_000


def test_handlers_answer_only_when_free_and_wrap_up_after_each_call() -> None:
    state: dict[str, str] = {}
    for e in events(3, TUESDAY_NOON, 8):
        agent = str(e.get("agent"))
        if e["type"] == "answered":
            assert state[agent] == "available"
        elif e["type"] == "agent_state":
            new = str(e["state"])
            previous = state.get(agent)
            allowed = {None: {"available"}, "available": {"busy", "away", "logged_out"},
                       "busy": {"wrapup"}, "wrapup": {"available", "away", "logged_out"},
                       "away": {"available", "logged_out"}, "logged_out": {"available"}}
            assert new in allowed[previous], (agent, previous, new)
            state[agent] = new


def test_shifts_start_at_local_time_across_the_clock_change() -> None:
    # Clocks go forward at 01:00 UTC on Sunday 31 March 2024: the early shift's 07:00 is 06:00 UTC.
    logins = [e["ts"] for e in simulate(1, at("2024-03-30T00:00:00Z"), 2 * 86_400)
              if e.get("agent") == "agent-001" and e.get("state") == "available"
              and str(e["ts"]).endswith(":00:00.000Z")]
    assert "2024-03-30T07:00:00.000Z" in logins and "2024-03-31T06:00:00.000Z" in logins


def test_a_shift_must_start_once_a_day() -> None:
    with pytest.raises(ValueError, match="start hour"):
        Shift("ambiguous", start_hour=1, hours=8, handlers_999=1, blended=0, handlers_101=0)


def test_fall_back_day_is_in_order() -> None:
    stream = list(itertools.islice(simulate(2, at("2024-10-26T22:00:00Z"), 6 * HOUR_S), 100_000))
    times = [parse_ts(e["ts"]) for e in stream]
    assert times == sorted(times) and len(stream) > 100

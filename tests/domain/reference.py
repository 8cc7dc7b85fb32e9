"""A brute-force reference of SPEC section 3 (figures, line totals, lost legs, windows), written
apart from streams.domain and using only the standard library, so the property tests compare two
independent readings of the contract. Slow and literal on purpose: plain lists, no indexes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

# The report columns, in order, as written in SPEC section 3 ("Interval report").
REPORT_FIELDS = (
    "window_start", "window_end", "site", "line", "queue", "arrivals", "offered", "answered",
    "abandoned", "short_abandoned", "timed_out", "transferred", "lost", "answered_within_sl",
    "sl_threshold_s", "sl_formula", "service_level", "abandonment_rate",
    "abandonment_rate_excl_short", "asa_s", "answer_p50_s", "answer_p90_s", "answer_p95_s",
    "answer_max_s", "abandon_wait_mean_s", "band_lt10", "band_10_60", "band_ge60",
)

# Ties in event time are processed in this order of type, then by event_id.
TYPE_ORDER = ("offered", "answered", "abandoned", "timeout", "transferred", "ended", "agent_state")
TERMINAL = {"answered": "answered", "abandoned": "abandoned", "timeout": "timed_out",
            "transferred": "transferred"}
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Rule:
    """A line's service-level rule."""

    formula: str
    threshold_s: float
    short_abandon_s: float


EMERGENCY = Rule("answered", 10.0, 5.0)
OTHERS = Rule("offered", 30.0, 5.0)
DEFAULT_RULES = {"999": EMERGENCY, "101": OTHERS}


@dataclass
class Leg:
    call_id: str
    site: str
    line: str
    queue: str
    offered_ms: int
    outcome: str | None = None
    closed_ms: int = 0
    ended: bool = False


@dataclass
class LineCall:
    call_id: str
    site: str
    line: str
    first_offered_ms: int
    closed: bool = False


@dataclass
class Record:
    """An arrival (outcome None) or an outcome of a leg or line-call, at `at_ms`."""

    site: str
    line: str
    queue: str
    at_ms: int
    outcome: str | None = None
    wait_ms: int = 0


@dataclass
class Walk:
    records: list[Record]
    conflicts: int
    unmatched: int
    lost: int


def to_ms(ts: str) -> int:
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert moment.tzinfo is not None
    return (moment - EPOCH) // timedelta(milliseconds=1)


def first_of_each_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop later events with an event_id already seen."""
    kept: list[dict[str, Any]] = []
    for event in events:
        if all(other["event_id"] != event["event_id"] for other in kept):
            kept.append(event)
    return kept


def processing_order(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: (to_ms(e["ts"]), TYPE_ORDER.index(e["type"]), e["event_id"]))


def walk(events: list[dict[str, Any]], max_wait_s: float) -> Walk:
    """Apply the call-leg rules to the events one by one in processing order."""
    max_wait_ms = round(max_wait_s * 1000)
    legs: list[Leg] = []
    line_calls: list[LineCall] = []
    records: list[Record] = []
    result = Walk(records, conflicts=0, unmatched=0, lost=0)

    def close(leg: Leg, outcome: str, at_ms: int) -> None:
        leg.outcome = outcome
        leg.closed_ms = at_ms
        records.append(Record(leg.site, leg.line, leg.queue, at_ms, outcome, at_ms - leg.offered_ms))
        if outcome == "transferred":
            return
        for line_call in line_calls:
            if (line_call.call_id, line_call.site, line_call.line) == (leg.call_id, leg.site, leg.line) \
                    and not line_call.closed:
                line_call.closed = True
                records.append(Record(leg.site, leg.line, "*", at_ms, outcome,
                                      at_ms - line_call.first_offered_ms))

    for event in processing_order(first_of_each_id(events)):
        now_ms = to_ms(event["ts"])
        # Any event moves stream time: legs open for more than max_wait before it are lost, closed
        # at their deadline (in deadline order).
        overdue = [leg for leg in legs if leg.outcome is None and leg.offered_ms + max_wait_ms < now_ms]
        for leg in sorted(overdue, key=lambda leg: leg.offered_ms):
            result.lost += 1
            close(leg, "lost", leg.offered_ms + max_wait_ms)

        kind = event["type"]
        if kind == "agent_state":
            continue
        call_id, queue = event["call_id"], event["queue"]
        calls_legs = [leg for leg in legs if leg.call_id == call_id]
        in_queue = [leg for leg in calls_legs if leg.queue == queue]
        open_in_queue = [leg for leg in in_queue if leg.outcome is None]

        if kind == "offered":
            if open_in_queue:
                result.conflicts += 1  # offered again to a queue the call is waiting in
                continue
            site, line = event.get("site", "default"), event["line"]
            open_line_calls = [lc for lc in line_calls
                               if (lc.call_id, lc.site, lc.line) == (call_id, site, line) and not lc.closed]
            on_line = [leg for leg in calls_legs if (leg.site, leg.line) == (site, line)]
            if open_line_calls and all(leg.outcome is not None for leg in on_line) \
                    and max(leg.closed_ms for leg in on_line) + max_wait_ms < now_ms:
                # It left the line by a transfer more than max_wait ago: back now, it is a new call.
                open_line_calls[0].closed = True
                open_line_calls = []
            legs.append(Leg(call_id, site, line, queue, now_ms))
            records.append(Record(site, line, queue, now_ms))
            if not open_line_calls:
                line_calls.append(LineCall(call_id, site, line, now_ms))
                records.append(Record(site, line, "*", now_ms))
        elif kind == "ended":
            if not in_queue:
                result.unmatched += 1
            elif in_queue[-1].outcome != "answered" or in_queue[-1].ended:
                result.conflicts += 1
            else:
                in_queue[-1].ended = True
        elif open_in_queue:
            close(open_in_queue[0], TERMINAL[kind], now_ms)
        elif in_queue:
            result.conflicts += 1  # the leg already had its outcome
        else:
            result.unmatched += 1  # call or queue never offered
    return result


def local_midnight_ms(day: date, tz: ZoneInfo) -> int:
    return (datetime.combine(day, time(0), tzinfo=tz) - EPOCH) // timedelta(milliseconds=1)


def windows_of_day(day: date, size_s: int, tz: ZoneInfo) -> list[tuple[int, int]]:
    """The tumbling windows of one local day: the day itself, or from its midnight in steps of the
    size, the last one cut at the next midnight."""
    start = local_midnight_ms(day, tz)
    end = local_midnight_ms(day + timedelta(days=1), tz)
    if size_s == 86_400:
        return [(start, end)]  # a day is a local day, 23 or 25 hours at clock changes
    windows = []
    low = start
    while low < end:
        windows.append((low, min(low + size_s * 1000, end)))
        low += size_s * 1000
    return windows


def window_of(at_ms: int, size_s: int, tz: ZoneInfo) -> tuple[int, int]:
    local_day = (EPOCH + timedelta(milliseconds=at_ms)).astimezone(tz).date()
    for window in windows_of_day(local_day, size_s, tz):
        if window[0] <= at_ms < window[1]:
            return window
    raise AssertionError(f"no window of {local_day} holds {at_ms}")


def rfc3339_utc(at_ms: int) -> str:
    moment = EPOCH + timedelta(milliseconds=at_ms)
    assert moment.microsecond == 0, "window bounds are whole seconds"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator > 0 else None


def seconds(ms: float) -> float:
    return round(ms / 1000, 3)


def nearest_rank(values: list[int], percent: int) -> int:
    """The smallest value with at least `percent` % of the values at or below it."""
    for value in sorted(values):
        if sum(1 for other in values if other <= value) * 100 >= percent * len(values):
            return value
    raise AssertionError("no values")


def figures(records: list[Record], rule: Rule) -> dict[str, Any]:
    arrivals = [r for r in records if r.outcome is None]
    answers = [r.wait_ms for r in records if r.outcome == "answered"]
    abandons = [r.wait_ms for r in records if r.outcome == "abandoned"]
    timed_out = [r for r in records if r.outcome == "timed_out"]
    threshold_ms = rule.threshold_s * 1000
    offered = len(answers) + len(abandons) + len(timed_out)
    short = len([w for w in abandons if w < rule.short_abandon_s * 1000])
    within = len([w for w in answers if w < threshold_ms])
    if rule.formula == "answered":
        service_level = ratio(within, len(answers))
    elif rule.formula == "offered":
        service_level = ratio(within, offered - short)
    else:
        service_level = ratio(within + len([w for w in abandons if w < threshold_ms]), offered)
    return {
        "arrivals": len(arrivals),
        "offered": offered,
        "answered": len(answers),
        "abandoned": len(abandons),
        "short_abandoned": short,
        "timed_out": len(timed_out),
        "transferred": len([r for r in records if r.outcome == "transferred"]),
        "lost": len([r for r in records if r.outcome == "lost"]),
        "answered_within_sl": within,
        "sl_threshold_s": float(rule.threshold_s),
        "sl_formula": rule.formula,
        "service_level": service_level,
        "abandonment_rate": ratio(len(abandons), offered),
        "abandonment_rate_excl_short": ratio(len(abandons) - short, offered - short),
        "asa_s": seconds(sum(answers) / len(answers)) if answers else None,
        "answer_p50_s": seconds(nearest_rank(answers, 50)) if answers else None,
        "answer_p90_s": seconds(nearest_rank(answers, 90)) if answers else None,
        "answer_p95_s": seconds(nearest_rank(answers, 95)) if answers else None,
        "answer_max_s": seconds(max(answers)) if answers else None,
        "abandon_wait_mean_s": seconds(sum(abandons) / len(abandons)) if abandons else None,
        "band_lt10": len([w for w in answers if w < 10_000]),
        "band_10_60": len([w for w in answers if 10_000 <= w < 60_000]),
        "band_ge60": len([w for w in answers if w >= 60_000]),
    }


def report(events: list[dict[str, Any]], size_s: int, tz: str = "Europe/London",
           max_wait_s: float = 3600.0, rules: dict[str, Rule] | None = None) -> list[dict[str, Any]]:
    """Every interval report row the events give, in report order."""
    zone = ZoneInfo(tz)
    rules = DEFAULT_RULES if rules is None else rules
    records = walk(events, max_wait_s).records
    keyed = [((window_of(r.at_ms, size_s, zone), r.site, r.line, r.queue), r) for r in records]
    keys = []
    for key, _ in keyed:
        if key not in keys:
            keys.append(key)
    rows = []
    for key in keys:
        window, site, line, queue = key
        mine = [record for other, record in keyed if other == key]
        row = {"window_start": rfc3339_utc(window[0]), "window_end": rfc3339_utc(window[1]),
               "site": site, "line": line, "queue": queue}
        row.update(figures(mine, rules.get(line, OTHERS)))
        assert tuple(row) == REPORT_FIELDS
        rows.append(row)
    return sorted(rows, key=lambda row: (row["window_start"], row["site"], row["line"], row["queue"]))


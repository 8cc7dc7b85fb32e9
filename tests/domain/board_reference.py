"""A brute-force reference of the live board (SPEC section 4, "Live board"), apart from
streams.domain: its own reading of event times, its own call-leg rules (walked call by call, not
as one stream), recomputed from scratch for every instant. Only the figure formulas of SPEC
section 3 come from reference.py (another test module, itself apart from the domain).

The board at instant T sees the distinct events with time <= T. Per call, in (time, type,
event_id) order: an offer opens a leg in its queue (not when one is open there already); a
terminal event closes the call's open leg in its queue; a leg still open max_wait after its offer
is lost then (at its deadline), before any later event, and at T if the deadline is before T. A
call's line-call on a (site, line) starts at its first offer there and ends at the first outcome
other than a transfer of one of its legs there; an offer after it ended, or after the call left the
line by transfer more than max_wait before, starts a new one."""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

try:
    from . import reference
except ImportError:  # tests/domain is not a package: pytest put this folder on sys.path
    import reference  # type: ignore[no-redef]

RANK = {name: rank for rank, name in enumerate(
    ("offered", "answered", "abandoned", "timeout", "transferred", "ended", "agent_state"))}
OUTCOME = {"answered": "answered", "abandoned": "abandoned", "timeout": "timed_out", "transferred": "transferred"}


def millis(ts: str) -> int:
    moment = datetime.fromisoformat(ts.replace("Z", "+00:00").replace("z", "+00:00"))
    return calendar.timegm(moment.astimezone(timezone.utc).timetuple()) * 1000 + moment.microsecond // 1000


@dataclass
class Stint:
    """A leg: a call's time in one queue."""

    site: str
    line: str
    queue: str
    start: int
    end: int | None = None
    how: str | None = None


@dataclass
class LineStay:
    """A call's time on one line (a line-call), through transfers between the line's queues."""

    site: str
    line: str
    start: int
    end: int | None = None
    how: str | None = None
    end_queue: str = ""
    left_at: int | None = None  # when a leg of it was last transferred away


@dataclass
class CallStory:
    call_id: str
    caller: str | None = None
    stints: list[Stint] = field(default_factory=list)
    stays: list[LineStay] = field(default_factory=list)

    def stay_on(self, site: str, line: str) -> LineStay | None:
        mine = [stay for stay in self.stays if (stay.site, stay.line) == (site, line)]
        return mine[-1] if mine else None


@dataclass
class Board:
    figures: dict[str, dict[tuple[str, str, str], dict[str, Any]]]
    waiting: dict[tuple[str, str, str], tuple[int, float]]
    data_age_s: dict[tuple[str, str, str], float]
    callbacks: dict[tuple[str, str], list[tuple[str, str, int, float, str | None]]]


def follow(call_id: str, events: list[dict[str, Any]], at_ms: int, max_wait_ms: int) -> CallStory:
    """One call's legs and line-calls as they stood at `at_ms` (events already cut at it)."""
    story = CallStory(call_id)
    def finish(stint: Stint, how: str, when: int) -> None:
        stint.end, stint.how = when, how
        stay = story.stay_on(stint.site, stint.line)
        if stay is None or stay.end is not None:
            return
        if how == "transferred":
            stay.left_at = when
        else:
            stay.end, stay.how, stay.end_queue = when, how, stint.queue

    def lose_overdue(before: int) -> None:
        for stint in story.stints:  # offered in time order, so deadlines come in order too
            if stint.end is None and stint.start + max_wait_ms < before:
                finish(stint, "lost", stint.start + max_wait_ms)

    for event in sorted(events, key=lambda e: (millis(e["ts"]), RANK[e["type"]], e["event_id"])):
        when, kind = millis(event["ts"]), event["type"]
        if event.get("caller") is not None:
            story.caller = event["caller"]
        lose_overdue(when)
        open_here = [s for s in story.stints if s.queue == event.get("queue") and s.end is None]
        if kind == "offered":
            if open_here:
                continue
            site, line = event.get("site", "default"), event["line"]
            stay = story.stay_on(site, line)
            still_there = any(s.end is None and (s.site, s.line) == (site, line) for s in story.stints)
            if stay is None or stay.end is not None or (
                    not still_there and stay.left_at is not None and when - stay.left_at > max_wait_ms):
                story.stays.append(LineStay(site, line, when))
            story.stints.append(Stint(site, line, event["queue"], when))
        elif kind in OUTCOME and open_here:
            finish(open_here[0], OUTCOME[kind], when)
    lose_overdue(at_ms)
    return story


def board(events: list[dict[str, Any]], at_ms: int, *, tz: str = "Europe/London", max_wait_s: float = 3600,
          windows_s: tuple[int, ...] = (900, 3600), rules: dict[str, reference.Rule] | None = None,
          callback_window_s: float = 4 * 3600) -> Board:
    rules = reference.DEFAULT_RULES if rules is None else rules
    distinct: dict[str, dict[str, Any]] = {}
    for event in events:
        distinct.setdefault(event["event_id"], event)
    seen = [event for event in distinct.values() if millis(event["ts"]) <= at_ms]

    newest: dict[tuple[str, str, str], int] = {}
    for event in seen:
        if event["type"] == "agent_state":
            continue
        site = event.get("site", "default")
        for group in ((site, event["line"], event["queue"]), (site, event["line"], "*")):
            newest[group] = max(newest.get(group, millis(event["ts"])), millis(event["ts"]))

    by_call: dict[str, list[dict[str, Any]]] = {}
    for event in seen:
        if event["type"] != "agent_state":
            by_call.setdefault(event["call_id"], []).append(event)
    stories = [follow(call_id, mine, at_ms, round(max_wait_s * 1000)) for call_id, mine in by_call.items()]

    # What happened when: (group, time, outcome or None for an arrival, wait in ms).
    happenings: list[tuple[tuple[str, str, str], int, str | None, int]] = []
    for story in stories:
        for stint in story.stints:
            happenings.append(((stint.site, stint.line, stint.queue), stint.start, None, 0))
            if stint.end is not None:
                happenings.append(((stint.site, stint.line, stint.queue), stint.end, stint.how, stint.end - stint.start))
        for stay in story.stays:
            happenings.append(((stay.site, stay.line, "*"), stay.start, None, 0))
            if stay.end is not None:
                happenings.append(((stay.site, stay.line, "*"), stay.end, stay.how, stay.end - stay.start))

    zone = ZoneInfo(tz)
    local = datetime.fromtimestamp(at_ms / 1000, zone)
    midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
    midnight_ms = calendar.timegm(midnight.astimezone(timezone.utc).timetuple()) * 1000
    spans = {(f"{w // 60}m" if w % 60 == 0 else f"{w}s"): (at_ms - w * 1000, False) for w in windows_s}
    spans["today"] = (midnight_ms, True)
    figures: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {}
    for label, (low, low_included) in spans.items():
        figures[label] = {}
        for group in newest:
            inside = [reference.Record(*group, when, outcome, wait) for other, when, outcome, wait in happenings
                      if other == group and (low <= when if low_included else low < when) and when <= at_ms]
            figures[label][group] = reference.figures(inside, rules.get(group[1], reference.OTHERS))

    waiting: dict[tuple[str, str, str], tuple[int, float]] = {}
    for group in newest:
        site, line, queue = group
        if queue != "*":
            starts = [s.start for story in stories for s in story.stints
                      if (s.site, s.line, s.queue) == group and s.end is None]
        else:
            starts = []
            for story in stories:
                stay = story.stay_on(site, line)
                if stay is not None and stay.end is None and any(
                        s.end is None and (s.site, s.line) == (site, line) for s in story.stints):
                    starts.append(stay.start)
        waiting[group] = (len(starts), (at_ms - min(starts)) / 1000 if starts else 0.0)

    callbacks: dict[tuple[str, str], list[tuple[str, str, int, float, str | None]]] = {}
    since = at_ms - round(callback_window_s * 1000)
    for site, line, _queue in newest:
        listed = []
        for story in stories:
            for stay in story.stays:
                if (stay.site, stay.line) != (site, line) or stay.how != "abandoned":
                    continue
                assert stay.end is not None
                if not since < stay.end <= at_ms:
                    continue
                rang_back = story.caller is not None and any(
                    other.caller == story.caller and again.how == "answered" and again.start > stay.end
                    for other in stories for again in other.stays if (again.site, again.line) == (site, line))
                if not rang_back:
                    listed.append((story.call_id, stay.end_queue, stay.end, (stay.end - stay.start) / 1000, story.caller))
        callbacks[(site, line)] = sorted(listed, key=lambda item: item[2], reverse=True)

    return Board(figures, waiting, {g: (at_ms - t) / 1000 for g, t in newest.items()}, callbacks)

"""The JSON view of the board (version 1): built from a real CallFlow's snapshot; lines in the
control room's order, agents summed per line, stale lines flagged with since when, callers to call
back without anything that identifies them, and a clear error for a site or line it has not."""

from __future__ import annotations

import json

import pytest

from streams.domain.config import FlowConfig
from streams.domain.flow import CallFlow
from streams.wallboard.status import StatusMemory
from streams.wallboard.view import UnknownBoard, board_view, select, sl_in_words

from .conftest import START_MS, call_event

CONFIG = FlowConfig(allowed_lateness_s=0)


def snapshot_of(events, now_ms):
    flow = CallFlow(CONFIG, live=True)
    for event in sorted(events, key=lambda e: e.occurred_ms):
        flow.ingest(event)
    flow.advance(now_ms)
    return flow.snapshot(now_ms)


def view_of(events, now_ms, done=frozenset(), stale_after_s=300.0):
    return board_view(snapshot_of(events, now_ms), CONFIG, lambda s, l, c: (s, l, c) in done, StatusMemory(),
                      stale_after_s)


def test_a_view_carries_its_version_lines_in_order_with_rules_figures_queues_and_colours():
    t = START_MS
    events = [
        call_event("offered", "c1", t, line="101", queue="101-general"),
        call_event("answered", "c1", t + 40_000, line="101", queue="101-general"),
        call_event("offered", "c2", t + 1000, line="999", queue="999-police"),
        call_event("answered", "c2", t + 4000, line="999", queue="999-police"),
        call_event("offered", "c3", t + 2000, line="999", queue="999-overflow"),
        call_event("offered", "c4", t + 3000, line="other", queue="other-q"),
    ]
    view = view_of(events, t + 60_000)
    assert view["version"] == 1 and view["at"] == "2024-03-01T08:01:00.000Z" and view["windows"] == ["15m", "60m", "today"]
    [site] = view["sites"]
    assert [line["line"] for line in site["lines"]] == ["999", "101", "other"]
    line999 = site["lines"][0]
    assert line999["rules"]["sl_formula"] == "answered" and line999["rules"]["sl_target"] == 0.9
    assert line999["rules"]["sl_in_words"] == "calls answered in under 10 s ÷ calls answered"
    assert [q["queue"] for q in line999["queues"]] == ["999-overflow", "999-police"]
    assert line999["windows"]["15m"]["service_level"] == 1.0 and line999["status"]["service_level"]["15m"] == "green"
    assert line999["waiting"] == 1 and line999["longest_wait_s"] == 58.0 and line999["status"]["longest_wait_s"] == "red"
    line101 = site["lines"][1]
    assert line101["windows"]["15m"]["service_level"] == 0.0 and line101["status"]["service_level"]["15m"] == "red"
    assert "sl_formula" not in line101["windows"]["15m"]  # given once, under rules
    json.dumps(view, allow_nan=False)


def test_agents_are_summed_per_line_and_per_queue():
    t = START_MS
    events = [call_event("agent_state", "", t, queue="999-police", agent=f"a{i}", state=state)
              for i, state in enumerate(["available", "busy", "busy"])]
    events += [call_event("agent_state", "", t, queue="999-overflow", agent="a9", state="busy")]
    view = view_of([call_event("offered", "c1", t, queue="999-police")] + events, t + 1000)
    line = view["sites"][0]["lines"][0]
    assert line["agents"]["available"] == 1 and line["agents"]["busy"] == 3
    police = next(q for q in line["queues"] if q["queue"] == "999-police")
    assert police["agents"]["busy"] == 2


def test_a_line_without_events_for_the_stale_data_time_is_stale_since_its_last_event():
    t = START_MS
    events = [call_event("offered", "c1", t, line="999"), call_event("offered", "c2", t + 300_000, line="101",
                                                                      queue="101-general")]
    view = view_of(events, t + 300_500)
    line999, line101 = view["sites"][0]["lines"]
    assert line999["stale"] and line999["last_event_at"] == "2024-03-01T08:00:00.000Z" and line999["data_age_s"] == 300.5
    assert not line101["stale"]


def test_callers_to_call_back_carry_no_caller_hash_and_drop_once_marked_done():
    t = START_MS
    secret = "h:0123456789abcdef"
    events = [call_event("offered", "c1", t, caller=secret), call_event("abandoned", "c1", t + 20_000, caller=secret),
              call_event("offered", "c2", t + 1000, caller="h:feed"), call_event("abandoned", "c2", t + 9000, caller="h:feed")]
    view = view_of(events, t + 30_000)
    callbacks = view["sites"][0]["lines"][0]["callbacks"]
    assert [c["call_id"] for c in callbacks] == ["c1", "c2"]  # newest abandon first
    assert callbacks[0] == {"call_id": "c1", "queue": "999-police", "abandoned_at": "2024-03-01T08:00:20.000Z",
                            "wait_s": 20.0}
    assert "h:" not in json.dumps(view)
    view = view_of(events, t + 30_000, done={("default", "999", "c1")})
    line = view["sites"][0]["lines"][0]
    assert [c["call_id"] for c in line["callbacks"]] == ["c2"] and line["callbacks_done"] == 1


def test_selecting_an_unknown_site_or_line_says_what_exists():
    view = view_of([call_event("offered", "c1", START_MS)], START_MS + 1000)
    assert select(view, "default", "999")["sites"][0]["lines"][0]["line"] == "999"
    with pytest.raises(UnknownBoard) as error:
        select(view, "elsewhere")
    assert error.value.known == {"default": ["999"]} and "elsewhere" in error.value.what
    with pytest.raises(UnknownBoard):
        select(view, "default", "101")


def test_each_formula_is_said_in_words():
    lines = CONFIG.lines
    assert "not counting callers who hung up within 5 s" in sl_in_words(lines["101"])
    from dataclasses import replace
    assert sl_in_words(replace(lines["101"], sl_formula="positive")).startswith("calls answered in under 30 s or abandoned")

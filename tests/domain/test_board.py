"""The live board (what `callwatch board` and the wallboard show at an instant T) equals the
brute-force reference of SPEC section 4 (tests/domain/board_reference.py, no code shared with the
domain) at arbitrary instants and at instants equal to event times, window edges and deadlines:
rolling windows, today (also on 23- and 25-hour days), waiting and longest wait (queues and line
totals, across transfers), decay when traffic stops, data age and the callers to call back."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from streams.board import board_snapshots
from streams.domain import FlowConfig, parse_event
from streams.domain.live import BoardSnapshot
from streams.io.event_lines import Batch

try:
    from . import board_reference
    from . import test_properties as props
except ImportError:  # tests/domain is not a package: pytest put this folder on sys.path
    import board_reference  # type: ignore[no-redef]
    import test_properties as props  # type: ignore[no-redef]

CALLERS = ("h:aa", "h:bb", "h:cc", None)


def with_callers(events: list[dict[str, Any]], callers: dict[str, str | None]) -> list[dict[str, Any]]:
    """The same events, each call's carrying its caller's hash (or none)."""
    out = []
    for event in events:
        caller = callers.get(event.get("call_id", ""))
        out.append({**event, "caller": caller} if event["type"] != "agent_state" and caller else event)
    return out


def boards(events: list[dict[str, Any]], config: FlowConfig, instants: list[int],
           cuts: list[int] | None = None) -> list[BoardSnapshot]:
    """What `callwatch board` shows at the instants (in time order), the input read in batches."""
    parsed = [parse_event(event) for event in events]
    edges = sorted({0, len(parsed), *(c % (len(parsed) + 1) for c in cuts or [])})
    batches = [Batch(parsed[a:b], [], 0) for a, b in zip(edges, edges[1:])]
    snapshots, summary = board_snapshots(batches, config, instants, on_reject=lambda r: None)
    taken = list(snapshots)
    assert summary().late == 0
    return taken


def assert_board(snapshot: BoardSnapshot, expected: board_reference.Board, where: str = "") -> None:
    assert set(snapshot.data_age_s) == set(expected.data_age_s), where
    assert snapshot.data_age_s == expected.data_age_s, where
    assert snapshot.figures.keys() == expected.figures.keys(), where
    for label, rows in expected.figures.items():
        assert snapshot.figures[label] == rows, (where, label)
    waiting = {group: (now.waiting, now.longest_wait_s) for group, now in snapshot.queues.items()}
    assert waiting == expected.waiting, where
    assert set(snapshot.callbacks) == set(expected.callbacks), where
    for line, listed in expected.callbacks.items():
        shown = snapshot.callbacks[line]
        assert [c.abandoned_ms for c in shown] == [item[2] for item in listed], (where, line)  # newest first
        assert sorted((c.call_id, c.queue, c.abandoned_ms, c.wait_s, c.caller) for c in shown) == sorted(listed), \
            (where, line)


def instants_around(draw: st.DrawFn, events: list[dict[str, Any]], windows_s: tuple[int, ...],
                    max_wait_s: int) -> list[int]:
    """Event times, and times where a boundary lies: a window's length after an event (the event
    leaves the window then), a millisecond either side, deadlines, and long after the traffic."""
    times = sorted(board_reference.millis(e["ts"]) for e in events)
    offsets = [0, 1, -1, max_wait_s * 1000, max_wait_s * 1000 + 1]
    offsets += [w * 1000 + d for w in windows_s for d in (-1, 0, 1)]
    edge = st.builds(lambda t, d: t + d, st.sampled_from(times), st.sampled_from(offsets))
    anywhere = st.integers(times[0] - 1_000, times[-1] + 2 * 3_600_000)
    return draw(st.lists(st.one_of(st.sampled_from(times), edge, anywhere), min_size=1, max_size=6))


windows = st.sampled_from([(900, 3600), (60, 300), (30,), (3600, 900)])


@props.FAST
@given(props.streams(), windows, st.sampled_from([60, 600, 3600]), st.sampled_from([60, 900, 14_400]),
       props.latenesses_s, st.data())
def test_the_board_equals_the_reference_at_any_instant(
        events: list[dict[str, Any]], windows_s: tuple[int, ...], max_wait_s: int, callback_window_s: int,
        lateness_s: int, data: st.DataObject) -> None:
    callers = data.draw(st.dictionaries(st.sampled_from([f"c{n}" for n in range(10)]), st.sampled_from(CALLERS)))
    events = with_callers(events, callers)
    jitters = data.draw(st.lists(st.integers(0, lateness_s * 1000 - 1), min_size=len(events), max_size=len(events)))
    arrival = props.within_lateness(events, jitters)
    instants = sorted(instants_around(data.draw, events, windows_s, max_wait_s))
    config = FlowConfig(allowed_lateness_s=lateness_s, max_wait_s=max_wait_s, rolling_windows_s=windows_s,
                        callback_window_s=callback_window_s)
    cuts = data.draw(st.lists(st.integers(0, len(events)), max_size=3))
    for at_ms, snapshot in zip(sorted(set(instants)), boards(arrival, config, instants, cuts), strict=True):
        assert snapshot.now_ms == at_ms
        expected = board_reference.board(events, at_ms, max_wait_s=max_wait_s, windows_s=windows_s,
                                         callback_window_s=callback_window_s)
        assert_board(snapshot, expected, props.stamp(at_ms, 0))


LONDON_CHANGES = [change for change in props.CLOCK_CHANGES if change[0] == "Europe/London"]


@props.SLOW
@given(st.sampled_from(LONDON_CHANGES), st.data())
def test_today_on_days_of_23_and_25_hours(change: tuple[str, str, str], data: st.DataObject) -> None:
    tz, day_start, day_end = change
    start_ms, end_ms = board_reference.millis(day_start), board_reference.millis(day_end)
    first_ms = st.builds(lambda m, ms: start_ms + m * 60_000 + ms,
                         st.integers(-30, (end_ms - start_ms) // 60_000 + 30), st.sampled_from([0, 0, 123]))
    events = data.draw(props.streams(first_ms, max_calls=20))
    # Instants either side of both midnights, an hour into the day (where the clock changes), and anywhere.
    near = st.sampled_from([start_ms - 1, start_ms, start_ms + 1, end_ms - 1, end_ms, end_ms + 1,
                            start_ms + 3_600_000, start_ms + 2 * 3_600_000])
    instants = data.draw(st.lists(st.one_of(near, st.integers(start_ms - 3_600_000, end_ms + 3_600_000)),
                                  min_size=1, max_size=5))
    config = FlowConfig(tz=tz, max_wait_s=3600)
    for at_ms, snapshot in zip(sorted(set(instants)), boards(props.by_time(events), config, instants), strict=True):
        expected = board_reference.board(events, at_ms, tz=tz)
        assert_board(snapshot, expected, props.stamp(at_ms, 0))


# --- examples: each rule on its own --------------------------------------------------------------

def event(kind: str, ts: str, call: str, queue: str = "101-general", line: str = "101", **more: Any) -> dict[str, Any]:
    return {"v": 1, "event_id": f"{call}-{kind}-{queue}-{ts}", "call_id": call, "type": kind, "ts": ts,
            "line": line, "queue": queue, **more}


def at(text: str) -> int:
    return board_reference.millis(text)


LINE = ("default", "101", "*")
GENERAL = ("default", "101", "101-general")
CRIME = ("default", "101", "101-crime")


def test_a_transfer_does_not_restart_a_line_totals_wait() -> None:
    events = [event("offered", "2024-03-01T09:00:00Z", "a"),
              event("transferred", "2024-03-01T09:00:17Z", "a"),
              event("offered", "2024-03-01T09:00:17Z", "a", queue="101-crime")]
    [snapshot] = boards(events, FlowConfig(), [at("2024-03-01T09:01:47Z")])
    assert snapshot.queues[LINE].longest_wait_s == 107.0  # waiting since 09:00:00, not since the transfer
    assert snapshot.queues[CRIME].longest_wait_s == 90.0
    assert (snapshot.queues[LINE].waiting, snapshot.queues[CRIME].waiting, snapshot.queues[GENERAL].waiting) == (1, 1, 0)


def test_an_event_exactly_at_the_instant_is_in_and_one_a_window_back_is_out() -> None:
    events = [event("offered", "2024-03-01T09:00:00Z", "a"), event("answered", "2024-03-01T09:00:05Z", "a")]
    first, exact, edge, after = boards(events, FlowConfig(), [at("2024-03-01T09:00:04.999Z"), at("2024-03-01T09:00:05Z"),
                                                            at("2024-03-01T09:15:05Z"), at("2024-03-01T09:15:05.001Z")])
    assert first.figures["15m"][LINE]["answered"] == 0 and first.queues[LINE].waiting == 1
    assert exact.figures["15m"][LINE]["answered"] == 1 and exact.queues[LINE].waiting == 0
    assert exact.data_age_s[LINE] == 0.0
    assert edge.figures["15m"][LINE]["answered"] == 0  # 09:15:05 - 15m = 09:00:05: excluded
    assert edge.figures["15m"][LINE]["arrivals"] == 0
    assert edge.figures["60m"][LINE]["answered"] == 1
    assert after.figures["today"][LINE]["answered"] == 1


def test_figures_decay_to_zero_and_every_group_keeps_its_row() -> None:
    events = [event("offered", "2024-03-01T09:00:00Z", "a"), event("abandoned", "2024-03-01T09:00:40Z", "a")]
    busy, quiet = boards(events, FlowConfig(), [at("2024-03-01T09:01:00Z"), at("2024-03-01T11:00:00Z")])
    assert busy.figures["60m"][GENERAL]["abandonment_rate"] == 1.0
    for window in ("15m", "60m"):
        assert quiet.figures[window][GENERAL]["offered"] == 0
        assert quiet.figures[window][GENERAL]["abandonment_rate"] is None
    assert quiet.figures["today"][GENERAL]["abandoned"] == 1
    assert quiet.data_age_s[GENERAL] == 2 * 3600 - 40


def test_callers_who_rang_back_and_were_answered_leave_the_callback_list() -> None:
    events = [event("offered", "2024-03-01T09:00:00Z", "a", caller="h:11"),
              event("abandoned", "2024-03-01T09:00:30Z", "a", caller="h:11"),
              event("offered", "2024-03-01T09:00:10Z", "b", caller="h:22"),
              event("abandoned", "2024-03-01T09:00:50Z", "b", caller="h:22"),
              event("offered", "2024-03-01T09:02:00Z", "a2", queue="101-crime", caller="h:11"),
              event("answered", "2024-03-01T09:02:20Z", "a2", queue="101-crime", caller="h:11"),
              event("offered", "2024-03-01T09:03:00Z", "b2", caller="h:22"),
              event("abandoned", "2024-03-01T09:03:09Z", "b2", caller="h:22"),
              event("offered", "2024-03-01T09:04:00Z", "c"),
              event("abandoned", "2024-03-01T09:04:03Z", "c")]
    before, after = boards(events, FlowConfig(callback_window_s=3600),
                           [at("2024-03-01T09:02:19.999Z"), at("2024-03-01T09:05:00Z")])
    assert [c.call_id for c in before.callbacks[("default", "101")]] == ["b", "a"]
    listed = after.callbacks[("default", "101")]
    # a rang back and was answered: gone; b rang back and gave up again: both calls stay; c has no hash
    assert [(c.call_id, c.queue, c.wait_s) for c in listed] == [("c", "101-general", 3.0), ("b2", "101-general", 9.0),
                                                                ("b", "101-general", 40.0)]
    [later] = boards(events, FlowConfig(callback_window_s=3600), [at("2024-03-01T10:00:50Z")])
    assert [c.call_id for c in later.callbacks[("default", "101")]] == ["c", "b2"]  # b abandoned exactly an hour before: out


def test_a_call_waiting_in_two_queues_is_one_call_on_the_line_until_answered_in_one() -> None:
    events = [event("offered", "2024-03-01T09:00:00Z", "a"),
              event("offered", "2024-03-01T09:00:05Z", "a", queue="101-crime"),
              event("answered", "2024-03-01T09:00:20Z", "a")]
    waiting, answered = boards(events, FlowConfig(), [at("2024-03-01T09:00:10Z"), at("2024-03-01T09:00:30Z")])
    assert (waiting.queues[GENERAL].waiting, waiting.queues[CRIME].waiting, waiting.queues[LINE].waiting) == (1, 1, 1)
    assert waiting.queues[LINE].longest_wait_s == 10.0
    # Answered in one queue: the caller no longer waits, though the other queue still offers the call.
    assert (answered.queues[CRIME].waiting, answered.queues[LINE].waiting) == (1, 0)
    assert answered.queues[LINE].longest_wait_s == 0.0


def test_a_call_back_must_come_after_the_abandon() -> None:
    events = [event("offered", "2024-03-01T09:00:00Z", "a", caller="h:11"),
              event("abandoned", "2024-03-01T09:00:30Z", "a", caller="h:11"),
              event("offered", "2024-03-01T09:00:30Z", "b", queue="101-crime", caller="h:11"),  # the same instant
              event("answered", "2024-03-01T09:00:40Z", "b", queue="101-crime", caller="h:11"),
              event("offered", "2024-03-01T09:01:00Z", "c", caller="h:33"),
              event("abandoned", "2024-03-01T09:01:10Z", "c", caller="h:33"),
              event("offered", "2024-03-01T09:01:10.001Z", "d", caller="h:33"),
              event("answered", "2024-03-01T09:01:11Z", "d", caller="h:33")]
    [snapshot] = boards(events, FlowConfig(), [at("2024-03-01T09:02:00Z")])
    assert [c.call_id for c in snapshot.callbacks[("default", "101")]] == ["a"]


def test_the_board_holds_only_what_its_windows_need() -> None:
    """Long after the traffic, nothing of it is held: not the records of the rolling windows, not
    the waiting legs, not the abandons or callers of the callback list (memory follows the
    windows, not the stream)."""
    from streams.domain import CallFlow

    events = [event("offered", "2024-03-01T09:00:00Z", "a", caller="h:11"),
              event("abandoned", "2024-03-01T09:00:30Z", "a", caller="h:11"),
              event("offered", "2024-03-01T09:01:00Z", "b", caller="h:22"),
              event("abandoned", "2024-03-01T09:01:30Z", "b", caller="h:22"),
              event("offered", "2024-03-01T09:02:00Z", "b2", caller="h:22"),
              event("answered", "2024-03-01T09:02:05Z", "b2", caller="h:22")]
    flow = CallFlow(FlowConfig(allowed_lateness_s=0, callback_window_s=600), live=True)
    flow.ingest_all([parse_event(e) for e in events])
    flow.finish()
    board = flow._board
    assert board is not None
    flow.snapshot(at("2024-03-01T09:03:00Z"))
    assert board._callbacks._of_caller and board._callbacks._abandons[("default", "101")]
    quiet = flow.snapshot(at("2024-03-01T11:00:00Z"))
    assert quiet.callbacks == {("default", "101"): ()}
    assert not board._callbacks._of_caller and not board._callbacks._abandons[("default", "101")]
    assert all(not window._held for window in board._rolling)
    assert not any(board._waiting.values()) and not board._incoming
    # A snapshot asked for an earlier instant shows the latest one: the board does not go back.
    assert flow.snapshot(at("2024-03-01T09:03:00Z")).now_ms == at("2024-03-01T11:00:00Z")

"""A partition's wallboard (streams/worker/partition.py) follows the exact flow until the partition
has read everything, then runs on its own (`go_live`). Going live at any point must leave the board
exactly where a board live from the start would be; while following, the board is the exact flow's
(the allowed lateness behind, and with every event the exact flow takes)."""

from __future__ import annotations

import json

import pytest

from streams.domain import FlowConfig, parse_ts
from streams.domain.events import format_ts
from streams.simulator import simulate
from streams.worker.partition import Message, PartitionFlow

START_MS = parse_ts("2024-03-30T22:00:00Z")  # a night with a clock change: "today" restarts twice
BATCH = 250


@pytest.fixture(scope="module")
def messages() -> list[Message]:
    events = sorted(simulate(21, START_MS, 26 * 3600), key=lambda event: parse_ts(str(event["ts"])))
    return [Message(offset, json.dumps(event).encode()) for offset, event in enumerate(events)]


def _board(flow: PartitionFlow) -> list[object]:
    """Everything the board would send now, whole."""
    at_ms = flow.stream_time_ms
    assert at_ms is not None
    return flow.live_updates(at_ms, full=True)


@pytest.mark.parametrize("live_at", [0.1, 0.45, 0.8])
def test_a_board_that_went_live_late_shows_what_one_live_all_along_shows(messages: list[Message],
                                                                        live_at: float) -> None:
    live_from = int(len(messages) * live_at)
    always = PartitionFlow(0, FlowConfig(), 900, wall_clock=False)
    always.go_live()
    late = PartitionFlow(0, FlowConfig(), 900, wall_clock=False)
    compared = 0
    for first in range(0, len(messages), BATCH):
        batch = messages[first:first + BATCH]
        assert not always.take(batch) and not late.take(batch)
        if late.next_offset >= live_from:
            late.go_live()
        assert always.advance().parts == late.advance().parts
        if late.board_is_live:
            assert _board(late) == _board(always)
            compared += 1
    assert always._board.counts.late == 0, "the premise: no event late for the live board"
    assert compared >= 5
    assert _board(late) == _board(always)
    assert late.stream_time_ms == always.stream_time_ms


def test_a_following_board_counts_what_only_the_exact_flow_takes(messages: list[Message]) -> None:
    """An offer 30 s behind the newest event is too late for a live board (0.5 s) but not for the
    interval report (2 min): a following board has it, a live one does not."""
    values = [message.value or b"" for message in messages]
    half = len(values) // 2
    newest = max(parse_ts(json.loads(value)["ts"]) for value in values[:half])
    values.insert(half, json.dumps({
        "v": 1, "event_id": "late-1", "call_id": "late-call-1", "type": "offered", "ts": format_ts(newest - 30_000),
        "site": "default", "line": "999", "queue": "999-late"}).encode())
    # and ten minutes more: the exact flow (and a board following it) releases the late offer
    until = next(i for i in range(half, len(values)) if parse_ts(json.loads(values[i])["ts"]) > newest + 600_000)
    stream = [Message(offset, value) for offset, value in enumerate(values[:until])]
    late_group = ("default", "999", "999-late")
    for live in (False, True):
        flow = PartitionFlow(0, FlowConfig(), 900, wall_clock=False)
        if live:
            flow.go_live()
        assert not flow.take(stream)
        flow.advance()
        waiting = {update.group: update.waiting for update in _board(flow)}
        assert waiting.get(late_group, 0) == (0 if live else 1)
        assert flow.exact_counts[2] == 0  # on time for the interval report either way
        assert (flow._board.counts.late == 1) is live

"""The outcomes topic's messages (streams/worker/messages.py): what is encoded decodes to the same, and
what is not an outcome is refused with a reason."""

from __future__ import annotations

import pytest

from streams.domain.figures import Tally
from streams.domain.records import GroupNow, WindowPart
from streams.domain.state import restore_tally
from streams.worker.messages import (
    LIVE, PARTS, TICK, WATERMARK, BadOutcome, decode_outcome, encode_live, encode_parts, encode_tick,
    encode_watermark)

GROUPS = [("default", "999", "*"), ("default", "999", "999-police"), ("default", "999", "999-overflow"),
          ("default", "101", "*"), ("default", "101", "101-general"), ("default", "101", "101-crime-report")]
DAY_START_MS = 1_709_251_200_000  # 2024-03-01T00:00:00Z
WINDOW_MS = 900_000


def test_parts_decode_to_what_was_encoded() -> None:
    tally = Tally(arrivals=3, answered=2, abandoned=1, answer_ms=[1200, 4000])
    parts = [WindowPart(DAY_START_MS, DAY_START_MS + WINDOW_MS, GROUPS[1], tally),
             WindowPart(DAY_START_MS, DAY_START_MS + WINDOW_MS, GROUPS[0], tally),
             WindowPart(DAY_START_MS + WINDOW_MS, DAY_START_MS + 2 * WINDOW_MS, GROUPS[1], Tally(arrivals=1))]
    outcome = decode_outcome(encode_parts(4, 6, parts))
    assert (outcome.kind, outcome.source, outcome.sources) == (PARTS, 4, 6)
    assert [(start, end) for start, end, _groups in outcome.windows] == [
        (DAY_START_MS, DAY_START_MS + WINDOW_MS), (DAY_START_MS + WINDOW_MS, DAY_START_MS + 2 * WINDOW_MS)]
    assert [(tuple(entry[:3]), restore_tally(entry[3])) for entry in outcome.windows[0][2]] == [
        (GROUPS[1], tally), (GROUPS[0], tally)]
    assert restore_tally(outcome.windows[1][2][0][3]) == Tally(arrivals=1)


def test_watermarks_and_ticks_round_trip() -> None:
    watermark = decode_outcome(encode_watermark(2, 6, DAY_START_MS, DAY_START_MS + 5))
    assert (watermark.kind, watermark.source, watermark.watermark_ms, watermark.stream_time_ms) == (
        WATERMARK, 2, DAY_START_MS, DAY_START_MS + 5)
    assert decode_outcome(encode_tick(6)).kind == TICK


def test_wallboard_news_decodes_to_what_was_encoded() -> None:
    update = GroupNow(GROUPS[1], ((DAY_START_MS, Tally(arrivals=2, answered=1, answer_ms=[900])),),
                      (DAY_START_MS, Tally(arrivals=7)), 1, DAY_START_MS + 5_000, DAY_START_MS + 9_000,
                      (("available", 3), ("busy", 2)))
    outcome = decode_outcome(encode_live(3, 6, DAY_START_MS + 9_000, [update]))
    assert (outcome.kind, outcome.source, outcome.stream_time_ms) == (LIVE, 3, DAY_START_MS + 9_000)
    assert outcome.updates == (update,)


@pytest.mark.parametrize("value", [b"", b"not json", b"[1]", b'{"k":"parts"}', b'{"k":"other","src":1,"n":6}', None])
def test_what_is_not_an_outcome_is_refused_with_a_reason(value: bytes | None) -> None:
    with pytest.raises(BadOutcome, match="outcomes message"):
        decode_outcome(value)

"""Reading events in blocks gives what reading the input line by line in text mode gives (the way
replay read it before blocks): the same events, the same rejections with the same line numbers and
reasons, whatever the block size and line ends, over one input or several."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.domain.events import CallEvent, InvalidEvent, parse_event
from streams.io.event_lines import Rejection, batches_of, decode_in_order, read_blocks

GOOD = ('{"v":1,"event_id":"e%d","call_id":"c1","type":"offered","ts":"2024-03-01T09:00:0%d.250Z",'
        '"line":"999","queue":"q","note":"ünïcode"}')


def tricky_bytes() -> bytes:
    lines = [GOOD % (n, n % 10) for n in range(12)]
    return b"".join([
        lines[0].encode() + b"\n",
        b"\n",                                   # blank: skipped, but counted for numbering
        b"  \t \n",                              # whitespace only: skipped too
        lines[1].encode() + b"\r\n",             # CR LF
        lines[2].encode() + b"\r",               # a lone CR ends a line in text mode
        b'{"v": 1, "event_id": "x", "call_id": \r\n',  # cut short, error at the line end
        b"\xef\xbb\xbf" + lines[3].encode() + b"\n",  # a byte-order mark: not JSON
        b'{"v": 1, "type": "offered", "event_id": "\xff\xfe"}\n',  # invalid UTF-8: replaced
        lines[4].encode() + b"\n",
        b'{"v": 1, "type": {"nested": 1}}\n',
        b"[" * 100_000 + b"\n",                  # too deep for the decoder
        b"\x0c\n",                               # form feed: blank to str.strip(), not to JSON
        lines[5].encode() + b"\n",
        lines[6].encode(),                       # no final line end
    ])


def reference(path: Path) -> list[CallEvent | Rejection]:
    """Line by line in text mode, as replay read its input before blocks."""
    out: list[CallEvent | Rejection] = []
    with open(path, encoding="utf-8", errors="replace") as stream:
        for number, raw in enumerate(stream, 1):
            try:
                out.append(parse_event(json.loads(raw)))
            except InvalidEvent as error:
                out.append(Rejection(str(path), number, f"invalid {error}", raw))
            except (ValueError, RecursionError) as error:
                if raw.strip():
                    out.append(Rejection(str(path), number, f"not JSON: {str(error).splitlines()[0]}", raw))
    return out


def flattened(batches: object) -> tuple[list[CallEvent], list[Rejection]]:
    events: list[CallEvent] = []
    rejections: list[Rejection] = []
    for batch in batches:  # type: ignore[attr-defined]
        events += batch.events
        rejections += batch.rejections
    return events, rejections


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 4096, 1 << 20])
def test_blocks_read_like_text_mode_lines(tmp_path: Path, block_bytes: int) -> None:
    path = tmp_path / "tricky.jsonl"
    path.write_bytes(tricky_bytes())
    expected = reference(path)
    events, rejections = flattened(batches_of(decode_in_order(read_blocks([str(path)], block_bytes))))
    assert events == [item for item in expected if isinstance(item, CallEvent)]
    assert rejections == [item for item in expected if isinstance(item, Rejection)]
    assert [event.event_id for event in events] == ["e0", "e1", "e2", "e4", "e5", "e6"]
    assert [event.extra for event in events] == [{"note": "ünïcode"}] * 6
    assert [(r.line_number, r.reason[:12]) for r in rejections] == [
        (6, "not JSON: Ex"), (7, "not JSON: Un"), (8, "invalid call"), (10, "invalid type"), (11, "not JSON: ma")]


def test_several_inputs_are_numbered_each_from_its_first_line(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(tricky_bytes())
    second.write_bytes(tricky_bytes().replace(b"\r", b""))
    paths = [str(first), str(second), str(first)]  # the same file twice: numbered from 1 again
    events, rejections = flattened(batches_of(decode_in_order(read_blocks(paths, 64))))
    expected = [*reference(first), *reference(second), *reference(first)]
    assert events == [item for item in expected if isinstance(item, CallEvent)]
    assert [(r.origin, r.line_number, r.reason) for r in rejections] == [
        (r.origin, r.line_number, r.reason) for r in expected if isinstance(r, Rejection)]
    assert [r.line_number for r in rejections][:5] == [r.line_number for r in rejections][-5:] == [6, 7, 8, 10, 11]

"""The canonical JSON Lines file source: import to the end, following through the one file follower
(appended lines, rotation, truncation) synchronised by readiness (the sink's events, the follower
at the end of its file), stdin, and fuzzing of the line reader."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import InvalidRecord
from connectors.file_source import FileConnector, event_of_line
from tests.connectors.following import Following
from tests.connectors.sinks import CollectingSink
from tests.pipeline.helpers import callwatch


def event(n: int) -> dict[str, Any]:
    return {"v": 1, "event_id": f"e-{n}", "call_id": f"c-{n}", "type": "offered",
            "ts": f"2024-03-01T09:00:{n % 60:02d}.000Z", "line": "999", "queue": "q"}


def lines(*numbers: int) -> str:
    return "".join(json.dumps(event(n)) + "\n" for n in numbers)


def test_import_reads_to_the_end_and_dead_letters_bad_lines_masked(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(lines(1, 2) + "{oops 07700 900123\n\n[1, 2]\n" + json.dumps(event(3)))  # no final newline
    sink = CollectingSink("file")
    FileConnector(str(path), follow=False).run(sink, threading.Event())
    assert sink.ids() == ["e-1", "e-2", "e-3"]
    assert [(d.reason.split(":")[0], d.location) for d in sink.dead] == [
        ("not JSON", f"{path}:3"), ("not a JSON object", f"{path}:5")]
    assert "900123" not in sink.dead[0].payload


def test_following_takes_appended_rotated_and_truncated_files_without_loss_or_repeat(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(lines(1, 2))
    with Following(FileConnector(str(path), follow=True, poll_s=0.01), CollectingSink("file")) as following:
        following.wait_count(2)
        with path.open("a") as stream:
            stream.write(lines(3) + json.dumps(event(4))[:20])  # half a line: not taken yet
            stream.flush()
            following.settle()
            assert following.sink.ids() == ["e-1", "e-2", "e-3"]
            stream.write(json.dumps(event(4))[20:] + "\n")
        following.wait_count(4)
        os.rename(path, tmp_path / "events.jsonl.1")  # rotated: the new file starts empty
        path.write_text(lines(5))
        following.wait_count(5)
        path.write_text(lines(6))  # truncated and rewritten in place (copytruncate)
        following.wait_count(6)
        following.settle()
    assert following.sink.ids() == [f"e-{n}" for n in range(1, 7)]
    assert following.sink.dead == []


def test_stdin_is_read_to_its_end(tmp_path: Path) -> None:
    done = callwatch("connect", "file", "-", "--out", "-", stdin=lines(1, 2).encode())
    assert done.returncode == 0, done.stderr.decode()
    assert [json.loads(line)["event_id"] for line in done.stdout.decode().splitlines()] == ["e-1", "e-2"]
    refused = callwatch("connect", "file", "-", "--follow", "--out", "-")
    assert refused.returncode == 2 and refused.stderr.count(b"\n") == 1 and b"stdin" in refused.stderr


@settings(max_examples=300)
@given(st.text(max_size=200) | st.builds(json.dumps, st.dictionaries(st.text(max_size=5), st.integers())))
def test_any_line_is_an_object_or_a_rejection_with_a_reason(line: str) -> None:
    result = event_of_line(line, 7)
    assert isinstance(result, dict) or (isinstance(result, InvalidRecord) and result.reason and result.location == 7)

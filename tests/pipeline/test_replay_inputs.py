"""`callwatch replay` over large, messy inputs: several files and stdin give the same report, every
bad line rejected by file and line; progress is reported; Ctrl-C and a closed output pipe stop it
with the right status."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from streams.io.event_lines import BLOCK_BYTES, read_event_batches

from .helpers import CALLWATCH, callwatch, simulated_events


@pytest.fixture(scope="module")
def big_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated days: about 5 MiB, so ten blocks."""
    path = simulated_events(tmp_path_factory.mktemp("inputs"), duration="3d", seed=5)
    assert path.stat().st_size > 8 * BLOCK_BYTES
    return path


BAD = {
    "not_json": "{not json",
    "no_id": '{"v": 1, "type": "answered"}',
    "list_type": '{"v": 1, "type": ["offered"]}',
    "bad_ts": ('{"v": 1, "event_id": "x-1", "call_id": "c", "type": "offered", "ts": "yesterday", '
               '"line": "999", "queue": "q"}'),
    "cut_short": '{"v": 1, "event_id": "x-2", "call_id": ',
}


def messy_files(events: Path, folder: Path) -> tuple[list[Path], dict[tuple[str, int], str]]:
    """The events split over three files with bad, blank and whitespace lines, CR LF line ends in
    one and no final line end in another; returns the files and where each bad line is."""
    lines = events.read_text().splitlines()
    third = len(lines) // 3
    parts = [lines[:third], lines[third:2 * third], lines[2 * third:]]
    expected: dict[tuple[str, int], str] = {}
    files = []
    for number, part in enumerate(parts):
        body = list(part)
        for k, (name, bad) in enumerate(BAD.items()):
            at = (k + 1) * len(body) // (len(BAD) + 1) + number  # spread over the file's blocks
            body.insert(at, bad)
        body.insert(3, "")
        body.insert(7, "   \t")
        path = folder / f"part-{number}.jsonl"
        end = "\r\n" if number == 1 else "\n"
        text = end.join(body) + ("" if number == 2 else end)
        path.write_bytes(text.encode())
        for index, line in enumerate(body):
            for name, bad in BAD.items():
                if line == bad:
                    expected[(str(path), index + 1)] = name
        files.append(path)
    return files, expected


def test_several_files_give_the_report_of_the_clean_input_and_every_bad_line_by_file_and_line(
        big_events: Path, tmp_path: Path) -> None:
    files, expected = messy_files(big_events, tmp_path)
    messy = callwatch("replay", *map(str, files), "--window", "5m")
    assert messy.returncode == 1, messy.stderr.decode()
    err = messy.stderr.decode()
    for (path, number), name in expected.items():
        assert f"{path}:{number}: " in err, (path, number, name)
    assert f"{files[0]}:" in err and f"{files[2]}:" in err
    assert err.count("rejected ") == len(expected) == 3 * len(BAD)
    assert f"{3 * len(BAD)} rejected" in err
    clean = callwatch("replay", str(big_events), "--window", "5m")
    assert clean.returncode == 0 and clean.stdout and clean.stdout == messy.stdout  # bad lines took nothing away


def test_stdin_gives_the_same_report_and_line_numbers_as_one_file(big_events: Path, tmp_path: Path) -> None:
    files, _ = messy_files(big_events, tmp_path)
    piped = b"".join(path.read_bytes() for path in files)
    whole = tmp_path / "whole.jsonl"
    whole.write_bytes(piped)
    from_file = callwatch("replay", str(whole))
    from_stdin = callwatch("replay", "-", stdin=piped)
    assert from_file.returncode == from_stdin.returncode == 1
    assert from_stdin.stdout and from_stdin.stdout == from_file.stdout
    assert from_stdin.stderr == from_file.stderr.replace(str(whole).encode(), b"<stdin>")
    text = piped.decode().replace("\r\n", "\n")
    number = text.split("\n").index(BAD["not_json"]) + 1
    assert f"<stdin>:{number}: not JSON" in from_stdin.stderr.decode()


def test_progress_is_reported_block_by_block(big_events: Path) -> None:
    positions: list[int] = []
    batches = read_event_batches([str(big_events), str(big_events)], positions.append)
    events = sum(len(batch.events) for batch in batches)
    size = big_events.stat().st_size
    assert events == 2 * sum(1 for line in big_events.read_text().splitlines() if line)
    assert positions == sorted(positions) and len(positions) >= 16 and positions[-1] == 2 * size


def _start_on_stdin(first: bytes) -> tuple[subprocess.Popen[bytes], threading.Thread]:
    """A replay reading stdin, once it has written its first rows (so it is running). The input is
    written by a thread: the replay's rows fill the output pipe meanwhile."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    process = subprocess.Popen(CALLWATCH + ["replay", "-", "--window", "1m"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean,
                               start_new_session=True)
    assert process.stdin is not None and process.stdout is not None
    stdin = process.stdin

    def write() -> None:
        try:
            stdin.write(first)
            stdin.flush()
        except BrokenPipeError:
            pass  # the replay stopped first

    writer = threading.Thread(target=write)
    writer.start()
    assert process.stdout.read(100)
    return process, writer


def _finish(process: subprocess.Popen[bytes]) -> bytes:
    """Wait for the end, reading what is left; a replay that hangs fails the test."""
    try:
        return process.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError("the replay hung") from None


def test_ctrl_c_stops_the_replay_with_one_line_and_status_130(big_events: Path) -> None:
    data = big_events.read_bytes()
    process, writer = _start_on_stdin(data[:3 * BLOCK_BYTES])
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
    err = _finish(process)
    writer.join(10)
    assert process.returncode == 130, err
    assert err.endswith(b"callwatch replay: interrupted; the report is incomplete\n"), err
    assert b"Traceback" not in err


def test_a_closed_output_pipe_stops_the_replay(big_events: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    process = subprocess.Popen(CALLWATCH + ["replay", str(big_events), "--window", "1m"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean)
    assert process.stdout is not None
    assert process.stdout.read(100)  # rows are flowing
    process.stdout.close()  # as `| head -c 100` does
    process.wait(timeout=60)
    assert process.returncode == 0


def test_the_removed_decoders_option_is_a_usage_error() -> None:
    done = callwatch("replay", "--decoders", "2", stdin=b"")
    assert done.returncode == 2 and b"--decoders" in done.stderr and done.stderr.count(b"\n") == 1, done.stderr

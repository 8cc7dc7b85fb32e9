"""`callwatch replay` with decoder processes: the same report, rejections (file:line), summary and
exit status as decoding in the replay's own process, over several files and over stdin; progress
is reported; a decoder's death, Ctrl-C and a closed output pipe leave no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from streams.io.decoders import AUTO_MIN_BYTES, automatic_decoders, event_batches, fork_available
from streams.io.event_lines import BLOCK_BYTES

from .helpers import CALLWATCH, callwatch, simulated_events

pytestmark = pytest.mark.skipif(not fork_available(), reason="decoder processes are forked")


@pytest.fixture(scope="module")
def big_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated days: about 5 MiB, so ten blocks and more than AUTO_MIN_BYTES."""
    path = simulated_events(tmp_path_factory.mktemp("decoders"), duration="3d", seed=5)
    assert path.stat().st_size > max(AUTO_MIN_BYTES, 8 * BLOCK_BYTES)
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


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def gone(pids: set[int], within_s: float = 10) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() for pid in pids):
            return True
        time.sleep(0.05)
    return False


def test_several_files_give_the_same_report_rejections_and_status_with_and_without_decoders(
        big_events: Path, tmp_path: Path) -> None:
    files, expected = messy_files(big_events, tmp_path)
    args = ["replay", *map(str, files), "--window", "5m"]
    alone = callwatch(*args, "--decoders", "0")
    beside = callwatch(*args, "--decoders", "2")
    automatic = callwatch(*args)  # over 4 MiB: decoders, unless this machine has a single CPU
    assert alone.returncode == beside.returncode == automatic.returncode == 1, alone.stderr.decode()
    assert alone.stdout and alone.stdout == beside.stdout == automatic.stdout
    assert alone.stderr == beside.stderr == automatic.stderr
    err = beside.stderr.decode()
    for (path, number), name in expected.items():
        assert f"{path}:{number}: " in err, (path, number, name)
    assert f"{files[0]}:" in err and f"{files[2]}:" in err
    assert err.count("rejected ") == len(expected) == 3 * len(BAD)
    assert f"{3 * len(BAD)} rejected" in err
    clean = callwatch("replay", str(big_events), "--window", "5m", "--decoders", "2")
    assert clean.returncode == 0 and clean.stdout == beside.stdout  # bad lines took nothing away


def test_stdin_gives_the_same_report_and_line_numbers_with_and_without_decoders(
        big_events: Path, tmp_path: Path) -> None:
    files, _ = messy_files(big_events, tmp_path)
    piped = b"".join(path.read_bytes() for path in files)
    alone = callwatch("replay", "-", "--decoders", "0", stdin=piped)
    beside = callwatch("replay", "-", "--decoders", "2", stdin=piped)
    by_env = callwatch("replay", stdin=piped, env={"CALLWATCH_REPLAY_DECODERS": "1"})
    assert alone.returncode == beside.returncode == by_env.returncode == 1
    assert alone.stdout and alone.stdout == beside.stdout == by_env.stdout
    assert alone.stderr == beside.stderr == by_env.stderr
    text = piped.decode().replace("\r\n", "\n")
    number = text.split("\n").index(BAD["not_json"]) + 1
    assert f"<stdin>:{number}: not JSON" in beside.stderr.decode()


def test_decoders_start_stop_and_report_progress(big_events: Path) -> None:
    positions: list[int] = []
    with event_batches([str(big_events), str(big_events)], 2, positions.append) as (batches, used):
        assert used == 2
        assert len(children_of(os.getpid())) >= 2
        decoders = children_of(os.getpid())
        events = sum(len(batch.events) for batch in batches)
    assert gone(decoders)
    size = big_events.stat().st_size
    assert events == 2 * sum(1 for line in big_events.read_text().splitlines() if line)
    assert positions == sorted(positions) and len(positions) >= 16 and positions[-1] == 2 * size


def test_automatic_choice_depends_on_input_size_and_cpus(big_events: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    small = tmp_path / "small.jsonl"
    small.write_bytes(big_events.read_bytes()[:BLOCK_BYTES].rsplit(b"\n", 1)[0] + b"\n")
    monkeypatch.setattr("streams.io.decoders.usable_cpus", lambda: 3)
    assert automatic_decoders() == 2
    with event_batches([str(small)], None) as (_batches, used):
        assert used == 0
    with event_batches([str(big_events)], None) as (batches, used):
        assert used == 2
        assert sum(len(batch.events) for batch in batches) > 20_000
    monkeypatch.setattr("streams.io.decoders.usable_cpus", lambda: 2)
    assert automatic_decoders() == 1
    with event_batches([str(big_events)], None) as (batches, used):
        assert used == 1
        assert sum(len(batch.events) for batch in batches) > 20_000
    monkeypatch.setattr("streams.io.decoders.usable_cpus", lambda: 8)
    assert automatic_decoders() == 2
    monkeypatch.setattr("streams.io.decoders.usable_cpus", lambda: 1)
    assert automatic_decoders() == 0


def _start_on_stdin(first: bytes) -> tuple[subprocess.Popen[bytes], set[int]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    process = subprocess.Popen(CALLWATCH + ["replay", "-", "--decoders", "2"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean,
                               start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(first)
    process.stdin.flush()
    deadline = time.monotonic() + 30
    while len(children_of(process.pid)) < 2:
        assert time.monotonic() < deadline, "the decoders never started"
        time.sleep(0.05)
    return process, children_of(process.pid)


def _finish(process: subprocess.Popen[bytes], rest: bytes) -> tuple[bytes, bytes]:
    """Send the rest of the input and wait for the end; a replay that hangs fails the test."""
    try:
        return process.communicate(rest, timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError("the replay hung") from None


def test_a_killed_decoder_stops_the_replay_with_one_line_and_status_3(big_events: Path) -> None:
    data = big_events.read_bytes()
    process, decoders = _start_on_stdin(data[:3 * BLOCK_BYTES])
    victim = min(decoders)
    os.kill(victim, signal.SIGKILL)
    _out, err = _finish(process, data[3 * BLOCK_BYTES:])
    assert process.returncode == 3, err
    assert err.count(b"\n") == 1, err
    assert f"decoder process {victim} stopped unexpectedly (killed by signal SIGKILL)".encode() in err
    assert b"the report is incomplete" in err
    assert gone(decoders)


def test_ctrl_c_stops_the_replay_and_its_decoders(big_events: Path) -> None:
    data = big_events.read_bytes()
    process, decoders = _start_on_stdin(data[:3 * BLOCK_BYTES])
    os.killpg(process.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
    _out, err = _finish(process, b"")
    assert process.returncode == 130, err
    assert err.endswith(b"callwatch replay: interrupted; the report is incomplete\n"), err
    assert b"Traceback" not in err
    assert gone(decoders)


def test_a_closed_output_pipe_stops_the_replay_and_its_decoders(big_events: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    process = subprocess.Popen(CALLWATCH + ["replay", str(big_events), "--window", "1m", "--decoders", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean)
    assert process.stdout is not None
    assert process.stdout.read(100)  # rows are flowing, so the decoders are running
    decoders = children_of(process.pid)
    assert len(decoders) == 2
    process.stdout.close()  # as `| head -c 100` does
    process.wait(timeout=60)
    assert process.returncode == 0
    assert gone(decoders)


def test_a_bad_number_of_decoders_is_one_line_and_exit_2() -> None:
    for value, message in [("many", b"--decoders must be a whole number, not 'many' (or auto)"),
                           ("-1", b"--decoders must be at least 0")]:
        done = callwatch("replay", "--decoders", value, stdin=b"")
        assert done.returncode == 2 and message in done.stderr and done.stderr.count(b"\n") == 1, done.stderr
    help_text = b" ".join(callwatch("replay", "--help").stdout.split())
    assert b"[env: CALLWATCH_REPLAY_DECODERS]" in help_text and b"--decoders" in help_text

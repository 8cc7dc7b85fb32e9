"""The wallboard on the worker's web server (streams/wallboard, mounted by streams/worker/app.py), on a
real broker: on the stream clock its JSON equals the board of embedded flows (one per partition) over
the same events at instants 10 s of stream time apart, a callback marked done stays done after the
worker restarts (a changelog-backed table), and a rebalance shows every site once."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from typing import Any

import pytest

from streams.domain import CallFlow, FlowConfig, parse_event
from streams.domain.events import parse_ts

from .test_worker import SITES, Stack, WorkerProcess, _sites, _wait, stack, stop_all  # noqa: F401 - fixture

pytestmark = [pytest.mark.kafka,
              pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning")]


def _get(worker: WorkerProcess, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}{path}", timeout=5) as response:
        return json.loads(response.read())


def _post(worker: WorkerProcess, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.port}{path}", method="POST", data=b"",
                                     headers={"X-Callwatch-Board": "1"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _without_status(value: Any) -> Any:
    """The view without its colours: they depend on the colours shown before (hysteresis)."""
    if isinstance(value, dict):
        return {k: _without_status(v) for k, v in value.items() if "status" not in k}
    if isinstance(value, list):
        return [_without_status(v) for v in value]
    return value


def _settled(worker: WorkerProcess, count: int) -> dict[str, Any] | None:
    try:
        if worker.metrics().get("callwatch_events_accepted_total") != count:
            return None
        view = _get(worker, "/api/v1/board")
    except OSError:
        return None
    return view if view.get("sites") else None


def _surge(stack: Stack, sites: tuple[str, ...]) -> list[bytes]:
    """Forty minutes of a major incident at each site (calls wait, some are transferred), merged."""
    lines: list[bytes] = []
    for number, site in enumerate(sites):
        out = stack.tmp_path / f"surge.{site}.jsonl"
        done = stack.callwatch("simulate", "--seed", str(3 + number), "--start", "2024-03-01T00:00:00Z",
                               "--duration", "40m", "--scenario", "surge", "--site", site, "--out", str(out))
        assert done.returncode == 0, done.stderr
        lines.extend(out.read_bytes().splitlines())
    return sorted(lines, key=lambda line: parse_ts(json.loads(line)["ts"]))


def _at(worker: WorkerProcess, count: int, now_ms: int) -> dict[str, Any] | None:
    """The worker's board once it has taken `count` events and shows the instant `now_ms`."""
    view = _settled(worker, count)
    return view if view is not None and view["now_ms"] == now_ms else None


def test_the_worker_s_board_is_the_embedded_board_every_10_s_and_its_marks_survive_a_restart(
        stack: Stack) -> None:
    """On the stream clock, the events go to Kafka in chunks ending at instants 10 s of stream time
    apart, from the first transfer and abandonment on; at each, once the worker has taken the chunk, its board is
    the board of embedded flows over the same events at the same instant: one flow per events
    partition, as the worker holds them. (Not one flow for all: on the stream clock each partition's
    board releases its events by its own newest event less the live lateness, so a quiet site's last
    half-second of events waits for that site's next event, see docs/worker.md.)"""
    from streams.domain.live import side_by_side
    from streams.kafka.clients import site_partition
    from streams.wallboard.server import BoardOptions
    from streams.wallboard.status import StatusMemory
    from streams.wallboard.view import board_view

    lines = _surge(stack, SITES[:3])
    times = [parse_ts(json.loads(line)["ts"]) for line in lines]
    # From the first instant on, a call has been transferred (line totals count its waits on both
    # queues as one) and one abandoned (a callback to mark).
    start = max(min(t for t, line in zip(times, lines) if f'"{kind}"'.encode() in line)
                for kind in ("transferred", "abandoned"))
    instants = [start + 10_000 * k for k in range(8)]
    config = FlowConfig()
    board_config = dataclasses.replace(config, allowed_lateness_s=config.live_lateness_s)
    embedded = {number: CallFlow(board_config, live=True) for number in {site_partition(s, 6) for s in SITES[:3]}}
    worker = WorkerProcess(stack, "first", "--clock", "stream")
    sent, waits = 0, 0
    try:
        for instant in instants:
            chunk = [line for t, line in zip(times[sent:], lines[sent:]) if t <= instant]
            stack.produce(chunk)
            sent += len(chunk)
            for line in chunk:
                event = parse_event(json.loads(line))
                embedded[site_partition(event.site, 6)].ingest(event)
            for flow in embedded.values():
                flow.advance()
            newest = max(times[:sent])
            view = _wait(lambda: _at(worker, sent, newest), 120, f"the board at {newest}", [worker])
            snapshot = side_by_side([flow.snapshot(newest) for flow in embedded.values()], newest)
            expected = board_view(snapshot, config, lambda *_: False, StatusMemory(), BoardOptions().stale_after_s)
            assert _without_status(view) == _without_status(json.loads(json.dumps(expected))), \
                f"the boards differ at {view['at']}"
            waits += sum(block["waiting"] for site in view["sites"] for block in site["lines"])
        assert waits > 0, "no call was waiting at any instant: the comparison missed the waits"
        line = next(block for site in view["sites"] for block in site["lines"] if block["callbacks"])
        site = next(site["site"] for site in view["sites"] if line in site["lines"])
        call_id, before = line["callbacks"][0]["call_id"], line["callbacks_done"]
        assert _post(worker, f"/api/v1/callbacks/{site}/{line['line']}/{call_id}/done")["done"] is True
    finally:
        worker.stop()
    again = WorkerProcess(stack, "second", "--clock", "stream")
    try:
        view = _wait(lambda: _settled(again, sent), 120, "the board after the restart", [again])
        block = next(b for s in view["sites"] if s["site"] == site for b in s["lines"] if b["line"] == line["line"])
        assert block["callbacks_done"] == before + 1
        assert call_id not in json.dumps(block["callbacks"])
    finally:
        again.stop()


def _groups(worker: WorkerProcess) -> set[tuple[str, str]] | None:
    """The (site, line) blocks the worker's board shows now; None when it does not answer."""
    try:
        view = _get(worker, "/api/v1/board")
    except OSError:
        return None
    return {(site["site"], block["line"]) for site in view.get("sites", []) for block in site["lines"]}


def test_a_rebalance_while_the_board_is_watched_shows_no_group_twice_and_none_missing_for_long(
        stack: Stack) -> None:
    """Three workers share six sites; one is killed with SIGKILL. Watching the two others' boards
    twice a second until every group has been back on one board for 10 s (at most 40 s): no site's
    line is on both at once, and none is missing from both for longer than the session timeout plus
    the time to restore a partition."""
    session_s, steady_s = 6.0, 10.0
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3720))
    lines = _sites(stack, stack.tmp_path / "watched.jsonl", "1h", start=start)
    stack.produce(lines)
    workers = [WorkerProcess(stack, f"w{n}", "--clock", "wall", "--session-timeout", "6s") for n in range(3)]
    try:
        def all_shown() -> set[tuple[str, str]] | None:
            shown = [_groups(w) for w in workers]
            if any(s is None for s in shown):
                return None
            union = set().union(*shown)  # type: ignore[arg-type]
            return union if len(union) >= len(SITES) and sum(len(s) for s in shown) == len(union) else None
        every = _wait(all_shown, 120, "every site on exactly one board", workers)
        victim = max(workers, key=lambda w: len(_groups(w) or ()))
        victim.kill9()
        workers.remove(victim)
        missing_since: dict[tuple[str, str], float] = {}
        longest = 0.0
        all_back_since: float | None = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            shown = [_groups(w) or set() for w in workers]
            assert not shown[0] & shown[1], f"shown twice: {shown[0] & shown[1]}"
            now = time.monotonic()
            for group in every:
                if any(group in s for s in shown):
                    if group in missing_since:
                        longest = max(longest, now - missing_since.pop(group))
                else:
                    missing_since.setdefault(group, now)
            # The victim's groups go missing first (its session has to time out), so "all back"
            # is only after the rebalance; a stale board left on a worker would show within steady_s.
            all_back_since = None if missing_since else (all_back_since or now)
            if all_back_since is not None and now - all_back_since >= steady_s and longest > 0:
                break
            time.sleep(0.5)
        assert not missing_since, f"still missing after 40 s: {sorted(missing_since)}"
        assert longest < session_s + 10, f"a group was missing for {longest:.1f} s"
    finally:
        stop_all(workers)

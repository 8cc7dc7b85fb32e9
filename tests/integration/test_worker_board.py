"""The wallboard on the worker's web server (streams/wallboard, mounted by streams/worker/app.py), on a
real broker: its JSON equals the board of one embedded flow over the same events at the worker's
instant, and a callback marked done stays done after the worker restarts (a changelog-backed table)."""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
from typing import Any

import pytest

from streams.domain import CallFlow, FlowConfig, parse_event

from .test_worker import SITES, Stack, WorkerProcess, _sites, _wait, stack  # noqa: F401 - fixture

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


def test_the_worker_s_board_is_the_embedded_board_and_its_marks_survive_a_restart(stack: Stack) -> None:
    from streams.wallboard.server import BoardOptions
    from streams.wallboard.status import StatusMemory
    from streams.wallboard.view import board_view

    # The last hour, ending two minutes ago: on the wall clock every event is released on both boards.
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3720))
    lines = _sites(stack, stack.tmp_path / "board.jsonl", "1h", start=start, sites=SITES[:3])
    stack.produce(lines)
    worker = WorkerProcess(stack, "first", "--clock", "wall")
    try:
        view = _wait(lambda: _settled(worker, len(lines)), 120, "the board", [worker])
        config = FlowConfig()
        embedded = CallFlow(dataclasses.replace(config, allowed_lateness_s=config.live_lateness_s), live=True)
        for line in lines:
            embedded.ingest(parse_event(json.loads(line)))
        embedded.advance(view["now_ms"])
        expected = board_view(embedded.snapshot(view["now_ms"]), config, lambda *_: False, StatusMemory(),
                              BoardOptions().stale_after_s)
        assert _without_status(view) == _without_status(json.loads(json.dumps(expected)))
        line = next(block for site in view["sites"] for block in site["lines"] if block["callbacks"])
        site = next(site["site"] for site in view["sites"] if line in site["lines"])
        call_id, before = line["callbacks"][0]["call_id"], line["callbacks_done"]
        assert _post(worker, f"/api/v1/callbacks/{site}/{line['line']}/{call_id}/done")["done"] is True
    finally:
        worker.stop()
    again = WorkerProcess(stack, "second", "--clock", "wall")
    try:
        view = _wait(lambda: _settled(again, len(lines)), 120, "the board after the restart", [again])
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
    twice a second: no site's line is on both at once, and none is missing from both for longer than
    the session timeout plus the time to restore a partition."""
    session_s = 6.0
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
            time.sleep(0.5)
        assert not missing_since, f"still missing after 40 s: {sorted(missing_since)}"
        assert longest < session_s + 10, f"a group was missing for {longest:.1f} s"
    finally:
        for worker in workers:
            worker.stop()

"""Campaign: 2 and 3 `callwatch worker` processes started at the same instant on a loaded topic (six
simulated sites over the six partitions, written and closed with the end-of-stream marker before the
workers start), N trials each, on fresh topics every trial. A trial passes when the figures topic
holds exactly `callwatch replay`'s report within the time limit and every event is counted once
over the workers. Prints one line per trial and a table (docs/benchmarks.md keeps it).

    CALLWATCH_KAFKA_BOOTSTRAP=127.0.0.1:19092 .venv/bin/python -m tests.benchmarks.campaign_workers --trials 20
"""

from __future__ import annotations

import argparse
import os
import sys
import shutil
import tempfile
import time
from pathlib import Path

from tests.integration.test_worker import REPO, Stack, WorkerProcess, _replay, _sites


def _accepted(workers: list[WorkerProcess]) -> float:
    total = 0.0
    for worker in workers:
        try:
            total += worker.metrics().get("callwatch_events_accepted_total", 0.0)
        except OSError:
            pass
    return total


def trial(bootstrap: str, count: int, lines: list[bytes], expected: list[dict[str, object]], limit_s: float,
          tmp: Path) -> tuple[bool, float, str]:
    tmp.mkdir(parents=True)
    stack = Stack(bootstrap, tmp)
    stack.create_topics()
    try:
        stack.produce(lines)
        stack.end_of_stream(lines)
        started = time.monotonic()
        workers = [WorkerProcess(stack, f"w{n}") for n in range(count)]
        outcome = (False, limit_s, "timed out")
        try:
            while time.monotonic() - started < limit_s:
                if any(w.process.poll() is not None for w in workers):
                    outcome = (False, time.monotonic() - started, "a worker exited")
                    break
                rows = stack.report()
                accepted = _accepted(workers)
                if len(rows) >= len(expected) and accepted == len(lines):
                    outcome = (rows == expected, time.monotonic() - started, "" if rows == expected else "rows differ")
                    break
                time.sleep(1)
            else:
                outcome = (False, limit_s, f"timed out: {len(rows)} of {len(expected)} rows, {accepted:.0f} of "
                                           f"{len(lines)} events counted")
            return outcome
        finally:
            for worker in workers:
                worker.stop()
            if not outcome[0]:  # keep the workers' logs of a failed trial
                kept = REPO / "var" / "campaign-failures" / tmp.name
                shutil.copytree(tmp, kept, ignore=shutil.ignore_patterns("faust"), dirs_exist_ok=True)
    finally:
        stack.delete_topics()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--duration", default="2d", help="simulated time per site")
    parser.add_argument("--limit", type=float, default=180.0, help="seconds a trial may take")
    args = parser.parse_args()
    bootstrap = os.environ.get("CALLWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    with tempfile.TemporaryDirectory(prefix="callwatch-campaign-") as directory:
        tmp = Path(directory)
        maker = Stack(bootstrap, tmp)
        lines = _sites(maker, tmp / "stream.jsonl", args.duration, seed=77)
        expected = _replay(maker, tmp / "stream.jsonl")
        print(f"{len(lines):,} events of 6 sites, {len(expected):,} report rows", file=sys.stderr)
        results: dict[int, list[tuple[bool, float, str]]] = {}
        for count in args.workers:
            for number in range(args.trials):
                outcome = trial(bootstrap, count, lines, expected, args.limit, tmp / f"t{count}-{number}")
                results.setdefault(count, []).append(outcome)
                print(f"{count} workers, trial {number + 1}: {'ok' if outcome[0] else 'FAILED'} in {outcome[1]:.1f} s "
                      f"{outcome[2]}", file=sys.stderr, flush=True)
    print("\n| workers | trials | replay's report | slowest s | median s |")
    print("|---:|---:|---:|---:|---:|")
    for count, outcomes in results.items():
        times = sorted(seconds for _ok, seconds, _why in outcomes)
        print(f"| {count} | {len(outcomes)} | {sum(ok for ok, _s, _w in outcomes)} | {times[-1]:.1f} | "
              f"{times[len(times) // 2]:.1f} |")


if __name__ == "__main__":
    main()

"""Benchmark: `callwatch replay` throughput against two decode-only floors over the same file.

A script, not a test: it prints its figures. Each pass runs in its own process (so peak memory is
that pass's own; its time and CPU leave out the imports), one after the other in the same run, and
the order of the passes is reversed from one round to the next, so ratios compare like with like on
a shared, noisy machine. The passes:

- **json floor**: read every line in text mode and decode it with the standard library's
  `json.loads` (the codec callwatch used before msgspec): nothing validated, nothing kept.
- **msgspec floor**: read every line in text mode and decode it with callwatch's own typed decoder
  (`streams.io.codec.decode_fields`: msgspec into `CallEvent`, the fields' types checked; nothing
  of the validation msgspec cannot do).
- **replay**: exactly what `callwatch replay FILE` does: blocks of lines decoded and validated,
  ordered, legs tracked, the 15-minute interval report's rows encoded and written to /dev/null.
- **baseline** (with `--baseline DIR`): the replay pass of another checkout of callwatch (e.g. the
  main branch, `--baseline ../main`), run by that checkout's own copy of this script.

Inputs: simulated streams of about 1 M and 5 M events and the real Anonymous Bank month (42,078
calls) converted to canonical events. `--parts` prints instead what each part of the replay costs
per event (CPU time, fastest of three, the collector off), each part timed alone over a whole input
(1 M simulated events and the month; every event is then held in memory, which costs a little);
with `--baseline`, the baseline checkout's parts too, measured alternately with this one's.

    .venv/bin/python -m tests.benchmarks.bench_replay                       # 1 M, 5 M, the month
    .venv/bin/python -m tests.benchmarks.bench_replay --quick --baseline ../main
    .venv/bin/python -m tests.benchmarks.bench_replay --parts --quick --baseline ../main
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
BANK_CSV = REPO.parent / "shared" / "data" / "real" / "anonymous_bank_1999_08.csv"
BANK_MAPPING = REPO / "connectors" / "call_detail" / "mappings" / "anonymous_bank.yaml"
EVENTS_PER_SIMULATED_DAY = 8_400  # measured: one control room, both lines
PASSES = ("json", "msgspec", "replay")


def _child(kind: str, path: str) -> None:
    """Runs inside the child process: one pass, then its figures as JSON on stdout."""
    from streams.domain.config import FlowConfig
    from streams.io.codec import decode_fields
    from streams.io.event_lines import open_input, read_event_batches
    from streams.replay import replay_batches, report_rejection

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    rows = 0
    if kind in ("json", "msgspec"):
        decode: Callable[[str], Any] = json.loads if kind == "json" else decode_fields
        events = 0
        with open_input(path) as stream:
            for line in stream:
                decode(line)
                events += 1
    else:
        # As _cmd_replay in streams/cli.py, rows written out.
        with open(os.devnull, "w") as out:
            summary = replay_batches(read_event_batches([path]), FlowConfig(), 900, out.write,
                                     report_rejection(sys.stderr))
        events, rows = summary.lines, summary.rows
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = own.ru_utime + own.ru_stime - before.ru_utime - before.ru_stime  # the pass, not the imports
    print(json.dumps({"events": events, "rows": rows, "seconds": seconds, "cpu_s": cpu_s,
                      "peak_mib": own.ru_maxrss / 1024}))


def _measure(kind: str, path: Path, baseline: Path | None) -> dict[str, float]:
    command = [sys.executable, "-m", "tests.benchmarks.bench_replay", "--child", kind, str(path)]
    cwd, env = REPO, dict(os.environ)
    if kind == "baseline":
        assert baseline is not None
        command[-2] = "replay"  # that checkout's own replay pass (and its defaults)
        cwd, env["PYTHONPATH"] = baseline, str(baseline)
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=cwd, env=env)
    return json.loads(done.stdout.splitlines()[-1])


def _parts(path: str) -> dict[str, float]:
    """CPU seconds per event of each part of a replay, each timed alone over the whole input."""
    from streams.domain.call_legs import CallTracker, Record
    from streams.domain.config import FlowConfig
    from streams.domain.events import CallEvent
    from streams.domain.interval_report import IntervalReport
    from streams.domain.ordering import EventOrderer
    from streams.io.codec import decode_fields, encode_report_row
    from streams.io.event_lines import decode_block, read_blocks

    blocks = [block.data for block in read_blocks([path])]
    lines = [line for data in blocks for line in data.split(b"\n") if line]
    config = FlowConfig()

    def timed(step: Callable[[], Any]) -> tuple[float, Any]:
        started = time.process_time()
        result = step()
        return time.process_time() - started, result

    def order(decoded: list[list[CallEvent]]) -> list[CallEvent]:
        orderer, out = EventOrderer(config.allowed_lateness_ms), []
        for events in decoded:
            orderer.offer_all(events)
            out += orderer.release()
        return out + orderer.drain()

    def track(ordered: list[CallEvent]) -> list[Record]:
        tracker, records = CallTracker(config.max_wait_ms), []
        tracker.apply_all(ordered, records)  # as a flow without a board does
        return records

    def tally(records: list[Record]) -> IntervalReport:
        report = IntervalReport(900, config)
        report.add(records)
        return report

    best: dict[str, float] = {}
    gc.disable()
    for _ in range(3):
        seconds: dict[str, float] = {}
        seconds["typed decode alone (msgspec)"], _ = timed(lambda: [decode_fields(line) for line in lines])
        seconds["decode and validate (decode_block)"], decoded = timed(
            lambda: [decode_block(data).events for data in blocks])
        seconds["order (offer_all, release)"], ordered = timed(lambda: order(decoded))
        seconds["track legs (CallTracker.apply_all)"], records = timed(lambda: track(ordered))
        seconds["tally windows (IntervalReport.add)"], report = timed(lambda: tally(records))
        seconds["report rows (figures)"], rows = timed(report.remaining_rows)
        seconds["encode rows"], _ = timed(lambda: [encode_report_row(row) for row in rows])
        for part, value in seconds.items():
            best[part] = min(value, best.get(part, value))
        del decoded, ordered, records, report, rows
        gc.collect()
    events = len(lines)
    return {"events": events, **{part: value / events * 1e6 for part, value in best.items()}}


def _simulated(target_events: int, cache: Path) -> Path:
    days = max(1, round(target_events / EVENTS_PER_SIMULATED_DAY))
    path = cache / f"simulated-{days}d.jsonl"
    if not path.exists():
        print(f"simulating {days} days (about {target_events:,} events) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "streams.cli", "simulate", "--seed", "1", "--start",
                        "2023-01-01T00:00:00Z", "--duration", f"{days}d", "--out", str(path)], check=True, cwd=REPO)
    return path


def _bank(cache: Path) -> Path | None:
    path = cache / "anonymous_bank_1999_08.jsonl"
    if not BANK_CSV.exists():
        print(f"skipping the real month: {BANK_CSV} is missing", file=sys.stderr)
        return None
    if not path.exists():
        with path.open("w") as out:
            subprocess.run([sys.executable, "-m", "streams.cli", "connect", "csv", str(BANK_CSV), "--mapping",
                            str(BANK_MAPPING), "--out", "-"], stdout=out, check=True, cwd=REPO,
                           # A throwaway key: the benchmark only needs the hashes to be consistent.
                           env={**os.environ, "CALLWATCH_PSEUDONYMISATION_KEY": "benchmark-only-key"})
    return path


def _rate(figures: dict[str, float]) -> float:
    return figures["events"] / figures["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--decoders", help=argparse.SUPPRESS)  # what older checkouts pass their child
    parser.add_argument("--quick", action="store_true", help="200 k simulated events instead of 1 M and 5 M")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every pass, the order reversed each round")
    parser.add_argument("--baseline", type=Path, help="another checkout whose replay is timed beside this one")
    parser.add_argument("--parts", action="store_true", help="the cost per event of each part of the replay")
    parser.add_argument("--cache", default=str(REPO / "var" / "bench"), help="where inputs are kept")
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    inputs: list[tuple[str, Path]] = []
    for target in ((200_000,) if args.quick else (1_000_000, 5_000_000)):
        inputs.append((f"simulated ~{target / 1e6:g} M", _simulated(target, cache)))
    bank = _bank(cache)
    if bank is not None:
        inputs.append(("real month (Anonymous Bank)", bank))
    if args.parts:  # every event is held between parts: the 5 M input would need gigabytes
        _print_parts([(label, path) for label, path in inputs if "5 M" not in label], args.baseline, args.rounds)
        return
    passes = PASSES + (("baseline",) if args.baseline else ())
    print(f"load average before the run: {os.getloadavg()[0]:.2f} (2-core machine shared with other work)\n")
    print("| round | input | events | json floor events/s | msgspec floor events/s | replay events/s "
          "| replay / json floor | replay / msgspec floor | replay CPU s / wall s | replay peak MiB "
          + ("| baseline events/s | baseline / msgspec floor | replay / baseline " if args.baseline else "") + "|")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if args.baseline else ""))
    for round_number in range(1, args.rounds + 1):
        for label, path in inputs:
            order = passes if round_number % 2 else tuple(reversed(passes))
            results = {kind: _measure(kind, path, args.baseline) for kind in order}
            replay = results["replay"]
            json_rate, msgspec_rate, replay_rate = (_rate(results[kind]) for kind in PASSES)
            line = (f"| {round_number} | {label} | {replay['events']:,} | {json_rate:,.0f} | {msgspec_rate:,.0f} | "
                    f"{replay_rate:,.0f} | {replay_rate / json_rate:.0%} | {replay_rate / msgspec_rate:.0%} | "
                    f"{replay['cpu_s']:.1f} / {replay['seconds']:.1f} | {replay['peak_mib']:.0f} |")
            if args.baseline:
                baseline_rate = _rate(results["baseline"])
                line += (f" {baseline_rate:,.0f} | {baseline_rate / msgspec_rate:.0%} | "
                         f"{replay_rate / baseline_rate:.2f}x |")
            print(line, flush=True)


def _run_parts(path: Path, checkout: Path) -> dict[str, float]:
    """`_parts` in its own process, by the given checkout's own copy of this script."""
    done = subprocess.run([sys.executable, "-c", "import json, sys; from tests.benchmarks.bench_replay "
                           "import _parts; print(json.dumps(_parts(sys.argv[1])))", str(path)],
                          capture_output=True, text=True, check=True, cwd=checkout,
                          env={**os.environ, "PYTHONPATH": str(checkout)})
    return json.loads(done.stdout.splitlines()[-1])


def _print_parts(inputs: list[tuple[str, Path]], baseline: Path | None, rounds: int) -> None:
    """Each part's cost per event; with a baseline, this checkout's and the baseline's parts
    measured alternately (`rounds` times each, the fastest of each part kept) and their ratio."""
    checkouts = [("this", REPO)] + ([("baseline", baseline)] if baseline is not None else [])
    figures: dict[tuple[str, str], dict[str, float]] = {}
    for label, path in inputs:
        for round_number in range(rounds):
            order = checkouts if round_number % 2 == 0 else checkouts[::-1]
            for name, checkout in order:
                measured = _run_parts(path, checkout)
                best = figures.setdefault((label, name), measured)
                for part, value in measured.items():
                    best[part] = min(value, best[part])
    for label, _path in inputs:
        mine = figures[(label, "this")]
        print(f"\n{label}, {mine['events']:,} events: CPU us per event, fastest of {rounds} round(s)\n")
        parts = [part for part in mine if part != "events"]
        # The baseline's parts in the same order (named by its own script, possibly otherwise).
        other = [value for part, value in figures.get((label, "baseline"), {}).items() if part != "events"]
        if other:
            print("| part | baseline | this checkout | this / baseline |\n|---|---:|---:|---:|")
            for part, base_value in zip(parts, other):
                print(f"| {part} | {base_value:.2f} | {mine[part]:.2f} | {mine[part] / base_value:.2f}x |")
            total_mine, total_base = sum(mine[part] for part in parts[1:]), sum(other[1:])
            print(f"| the replay (every part but the typed decode alone) | {total_base:.2f} | {total_mine:.2f} | "
                  f"{total_mine / total_base:.2f}x |")
        else:
            print("| part | us per event |\n|---|---:|")
            for part in parts:
                print(f"| {part} | {mine[part]:.2f} |")
            print(f"| the replay (every part but the typed decode alone) | {sum(mine[part] for part in parts[1:]):.2f} |")


if __name__ == "__main__":
    main()

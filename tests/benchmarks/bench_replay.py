"""Benchmark: `callwatch replay` throughput against a decode-only pass over the same file.

A script, not a test: it prints its figures. Each pass runs in its own process (so peak memory is
that pass's own), one after the other in the same run, so the ratio compares like with like on a
noisy machine. The replay pass does what `callwatch replay FILE` does by default, decoder processes
included (their number is the automatic choice, printed); its CPU time and peak memory count them
too. Inputs: simulated streams of about 1 M and 5 M events and the real Anonymous Bank month
(42,078 calls) converted to canonical events.

    .venv/bin/python -m tests.benchmarks.bench_replay            # 1 M, 5 M and the real month
    .venv/bin/python -m tests.benchmarks.bench_replay --quick    # 200 k and the real month
    .venv/bin/python -m tests.benchmarks.bench_replay --decoders 0   # replay all in one process
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BANK_CSV = REPO.parent / "shared" / "data" / "real" / "anonymous_bank_1999_08.csv"
BANK_MAPPING = REPO / "connectors" / "call_detail" / "mappings" / "anonymous_bank.yaml"
EVENTS_PER_SIMULATED_DAY = 8_400  # measured: one control room, both lines


def _child(kind: str, path: str, decoders_wanted: int | None) -> None:
    """Runs inside the child process: one pass, then its figures as JSON on stdout."""
    from streams.domain.config import FlowConfig
    from streams.domain.flow import REPORT_EVENT_FIELDS
    from streams.io.codec import decode
    from streams.io.decoders import event_batches
    from streams.io.event_lines import open_input
    from streams.replay import replay_batches, report_rejection

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    decoders = 0
    if kind == "decode":
        events = 0
        with open_input(path) as stream:
            for line in stream:
                decode(line)
                events += 1
        rows = 0
    else:
        # As _cmd_replay in streams/cli.py (by default the automatic choice of decoders), rows
        # written out.
        with open(os.devnull, "w") as out, \
                event_batches([path], decoders_wanted, fields=REPORT_EVENT_FIELDS) as (batches, decoders):
            summary = replay_batches(batches, FlowConfig(), 900, out.write, report_rejection(sys.stderr))
        events, rows = summary.lines, summary.rows
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the decoders, once they have stopped
    cpu_s = (own.ru_utime + own.ru_stime - before.ru_utime - before.ru_stime  # the pass, not the imports
             + children.ru_utime + children.ru_stime)
    print(json.dumps({"events": events, "rows": rows, "seconds": seconds, "decoders": decoders, "cpu_s": cpu_s,
                      "peak_mib": own.ru_maxrss / 1024, "decoder_peak_mib": children.ru_maxrss / 1024}))


def _measure(kind: str, path: Path, decoders: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_replay", "--child", kind, str(path),
                           "--decoders", decoders], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="200 k simulated events instead of 1 M and 5 M")
    parser.add_argument("--cache", default=str(REPO / "var" / "bench"), help="where inputs are kept")
    parser.add_argument("--decoders", default="auto",
                        help="decoder processes of the replay pass: auto (what callwatch replay does by "
                             "default) or a number (0: all in one process, for comparison)")
    args = parser.parse_args()
    if args.child:
        _child(*args.child, None if args.decoders == "auto" else int(args.decoders))
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    inputs: list[tuple[str, Path]] = []
    for target in ((200_000,) if args.quick else (1_000_000, 5_000_000)):
        inputs.append((f"simulated ~{target / 1e6:g} M", _simulated(target, cache)))
    bank = _bank(cache)
    if bank is not None:
        inputs.append(("real month (Anonymous Bank)", bank))
    print("| input | events | decode-only events/s | replay events/s | replay / decode | decoders "
          "| decode CPU s / wall s | replay CPU s / wall s | replay peak MiB (main + each decoder) "
          "| decode peak MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, path in inputs:
        decode = _measure("decode", path, args.decoders)
        replay = _measure("replay", path, args.decoders)
        decode_rate = decode["events"] / decode["seconds"]
        replay_rate = replay["events"] / replay["seconds"]
        peak = f"{replay['peak_mib']:.0f}"
        if replay["decoders"]:
            peak += f" + {replay['decoders']} x {replay['decoder_peak_mib']:.0f}"
        print(f"| {label} | {replay['events']:,} | {decode_rate:,.0f} | {replay_rate:,.0f} | "
              f"{replay_rate / decode_rate:.0%} | {replay['decoders']} | "
              f"{decode['cpu_s']:.1f} / {decode['seconds']:.1f} | {replay['cpu_s']:.1f} / {replay['seconds']:.1f} | "
              f"{peak} | {decode['peak_mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

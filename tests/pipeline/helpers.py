"""Shared helpers of the pipeline tests: run the real `callwatch` command, make event files."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

CALLWATCH = [sys.executable, "-m", "streams.cli"]


def callwatch(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """The real command line, as a user runs it (environment cleared of CALLWATCH_* settings)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    clean.update(env or {})
    return subprocess.run(CALLWATCH + list(args), input=stdin, capture_output=True, timeout=timeout, env=clean)


def simulated_events(tmp_path: Path, duration: str = "4h", seed: int = 7, scenario: str = "normal") -> Path:
    out = tmp_path / f"sim-{seed}-{scenario}-{duration}.jsonl"
    done = callwatch("simulate", "--seed", str(seed), "--start", "2024-03-01T06:00:00Z", "--duration", duration,
                     "--scenario", scenario, "--out", str(out))
    assert done.returncode == 0, done.stderr.decode()
    return out


def shuffled_within(lines: list[str], lateness_s: float, seed: int) -> list[str]:
    """Reorder lines so that none arrives more than `lateness_s` behind the newest one before it:
    sort by event time plus a random delay below the lateness."""
    rng = random.Random(seed)

    def key(line: str) -> float:
        ts = json.loads(line)["ts"]
        from streams.domain.events import parse_ts
        return parse_ts(ts) / 1000 + rng.uniform(0, lateness_s * 0.999)

    return sorted(lines, key=key)

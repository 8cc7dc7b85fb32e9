"""The real Anonymous Bank month (42,078 calls) through the CSV converter and `callwatch replay`:
report totals against counts taken straight from the CSV here, independently of the converter."""

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.real_data import whole_file

from .helpers import callwatch

REPO = Path(__file__).resolve().parents[2]
MAPPING = REPO / "connectors" / "call_detail" / "mappings" / "anonymous_bank.yaml"


@pytest.fixture(scope="module")
def bank() -> Path:
    """The whole month: a skip without ../shared/data/real, a failure with CI=true."""
    return whole_file("anonymous_bank_1999_08.csv")


def _expected_from_csv(bank: Path) -> Counter:
    """Per call, straight from the CSV: an agent served it, the caller hung up while queued, or it
    vanished from the queue (PHANTOM, mapped to timeout). Calls that hung up in the voice menu
    never reached a queue and are not offered."""
    counts: Counter = Counter()
    with bank.open(newline="") as rows:
        for row in csv.DictReader(rows):
            queued = row["q_start"] != "0:00:00"
            if row["outcome"] == "AGENT":
                counts["answered"] += 1
            elif row["outcome"] == "HANG" and queued:
                counts["abandoned"] += 1
            elif row["outcome"] == "PHANTOM":
                counts["timed_out"] += 1
    return counts


def test_replaying_the_real_month_gives_the_csv_totals(tmp_path, bank):
    events = tmp_path / "bank.jsonl"
    env = {"CALLWATCH_PSEUDONYMISATION_KEY": "test-only-key"}
    with events.open("w") as out:
        converted = subprocess.run([sys.executable, "-m", "streams.cli", "connect", "csv", str(bank), "--mapping", str(MAPPING),
                                    "--out", "-"],
                                   stdout=out, stderr=subprocess.PIPE, env={**os.environ, **env}, cwd=REPO, timeout=300)
    assert converted.returncode == 0, converted.stderr.decode()
    done = callwatch("replay", str(events), "--window", "1d", "--tz", "Asia/Jerusalem", timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    rows = [json.loads(line) for line in done.stdout.decode().splitlines()]
    totals = Counter()
    for row in rows:
        if row["queue"] == "*":
            for field in ("arrivals", "offered", "answered", "abandoned", "timed_out", "lost", "transferred"):
                totals[field] += row[field]
    expected = _expected_from_csv(bank)
    assert expected["answered"] > 30_000  # the CSV was read whole
    assert totals["answered"] == expected["answered"]
    assert totals["abandoned"] == expected["abandoned"]
    assert totals["timed_out"] == expected["timed_out"]
    assert totals["offered"] == totals["arrivals"] == sum(expected.values())
    assert totals["lost"] == totals["transferred"] == 0
    # 31 days of August in Jerusalem time, one row per day and line total at least.
    assert len({row["window_start"] for row in rows}) == 31
    # Per-queue rows add up to the line totals (no transfers in this data).
    per_queue = sum(row["offered"] for row in rows if row["queue"] != "*")
    assert per_queue == totals["offered"]

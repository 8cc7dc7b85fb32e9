"""Wallboard latency and server cost: events written to `callwatch run`'s input as they happen (a
followed stdin, wall-clock time), the page open in Debian's headless chromium, and for each call
answered the time from writing its `answered` event to the page showing the count that includes it
(a MutationObserver in the page stamps each change with the same wall clock). Prints p50, p99 and
max of that delay at 100 events/s, and the server process's CPU with 1 and with 20 pages open.

    .venv/bin/python -m tests.benchmarks.bench_wallboard [--seconds 60] [--rate 100] [--pages 1 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

from tests.wallboard.browser import chromium

OBSERVE = """() => {
  window.__changes = [];
  const note = () => document.querySelector('.line[data-site="bench"][data-line="999"] .tiles [data-k="sl"] [data-n]');
  const look = () => { const el = note(); if (el) window.__changes.push([Date.now(), parseInt(el.textContent)]); };
  new MutationObserver(look).observe(document.getElementById('board'), {subtree: true, childList: true, characterData: true});
}"""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def event(kind: str, call: str, at_s: float) -> str:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_s)) + f".{int(at_s * 1000) % 1000:03d}Z"
    obj = {"v": 1, "event_id": f"{call}-{kind}", "call_id": call, "type": kind, "ts": ts, "line": "999",
           "queue": "999-bench", "site": "bench"}
    if kind == "answered":
        obj["agent"] = "agent-1"
    return json.dumps(obj) + "\n"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered) + 0.5) - 1))]


def one_run(pages: int, seconds: float, rate: float, tag: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    process = subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "--source", "file", "--file-path", "-",
                                "--file-follow", "--port", "0"], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)
    assert process.stdin is not None and process.stderr is not None
    address = re.search(r"http://\S+/", process.stderr.readline()).group(0)  # type: ignore[union-attr]
    threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()  # type: ignore[union-attr]
    answered_at: list[float] = []
    try:
        # A first call, so the bench line exists before the pages open.
        now = time.time()
        process.stdin.write(event("offered", f"{tag}-a", now) + event("answered", f"{tag}-a", now)
                            + event("offered", f"{tag}-0", now))
        process.stdin.flush()
        answered_at.append(now)
        with chromium() as browser:
            # A context each, as screens in different browsers are: one browser opens at most six
            # connections to a server, and each open board holds one for its stream.
            contexts = [browser.new_context(viewport={"width": 1920, "height": 1080}) for _ in range(pages)]
            opened = []
            for context in contexts:
                page = context.new_page()
                page.goto(address + "board/bench/999")
                page.wait_for_selector('.line[data-line="999"] .tiles [data-k="sl"] [data-n]:not(:empty)')
                opened.append(page)
            opened[0].evaluate(OBSERVE)
            cpu_before, started = cpu_seconds(process.pid), time.monotonic()
            interval = 2 / rate  # an offer and an answer per call
            n = 1
            while time.monotonic() - started < seconds:
                due = started + n * interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # pacing the sender, not synchronising with the server
                at = time.time()
                # The call offered one tick ago is answered; the next one is offered.
                process.stdin.write(event("answered", f"{tag}-{n - 1}", at) + event("offered", f"{tag}-{n}", at))
                process.stdin.flush()
                answered_at.append(at)
                n += 1
            cpu = cpu_seconds(process.pid) - cpu_before
            wall = time.monotonic() - started
            opened[0].wait_for_function(f"() => window.__changes.some(c => c[1] >= {len(answered_at)})", timeout=10_000)
            changes = opened[0].evaluate("window.__changes")
            for context in contexts:
                context.close()
    finally:
        process.stdin.close()
        process.terminate()
        process.wait(timeout=30)
    delays = []
    shown = iter(changes)
    current = next(shown)
    for count, sent_at in enumerate(answered_at[1:], start=2):
        while current[1] < count:
            current = next(shown)
        delays.append(current[0] / 1000 - sent_at)
    return {"pages": pages, "events": 2 * (len(answered_at) - 1), "seconds": wall,
            "p50_s": percentile(delays, 0.5), "p99_s": percentile(delays, 0.99), "max_s": max(delays),
            "cpu_percent": 100 * cpu / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=100, help="events per second (half offers, half answers)")
    parser.add_argument("--pages", type=int, nargs="+", default=[1, 20])
    options = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {options.rate:g} events/s for {options.seconds:g} s per run")
    print(f"{'pages':>5} {'events':>7} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'server CPU %':>13}")
    for pages in options.pages:
        result = one_run(pages, options.seconds, options.rate, f"b{pages}-{int(time.time())}")
        print(f"{result['pages']:>5} {result['events']:>7} {result['p50_s']:>7.3f} {result['p99_s']:>7.3f} "
              f"{result['max_s']:>7.3f} {result['cpu_percent']:>13.1f}", flush=True)


if __name__ == "__main__":
    main()

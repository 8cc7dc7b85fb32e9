"""The README's picture: `callwatch run --scenario surge --speed 60` in headless Chromium at
1920x1080, a while into the surge. Run from the repository: .venv/bin/python -m tests.wallboard.screenshot
[--out docs/images/wallboard-surge.png] [--after 80] [--width 1920 --height 1080]"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time

from .browser import chromium


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/images/wallboard-surge.png")
    parser.add_argument("--after", type=float, default=80.0, help="wall seconds into the run (60x: 30 min to the surge)")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--start", default="2024-03-01T16:00:00Z")
    parser.add_argument("--kiosk", action="store_true")
    options = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLWATCH_")}
    process = subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "--scenario", "surge", "--speed", "60",
                                "--start", options.start, "--seed", "7", "--port", "0"],
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()
        match = re.search(r"http://\S+/", first)
        if match is None:
            raise SystemExit(f"callwatch run did not print its address: {first!r}")
        started = time.monotonic()
        with chromium() as browser:
            page = browser.new_page(viewport={"width": options.width, "height": options.height})
            page.goto(match.group(0) + ("?kiosk=1" if options.kiosk else ""))
            page.wait_for_selector(".line")
            page.wait_for_timeout(max(0.0, options.after - (time.monotonic() - started)) * 1000)
            page.screenshot(path=options.out)
            print(f"{options.out}: {options.width}x{options.height}, {time.monotonic() - started:.0f} s into the run")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()

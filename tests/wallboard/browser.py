"""Debian's chromium driven by Playwright for Python through its executable path (no browser is
ever downloaded), shared by the wallboard's tests, its benchmark and its screenshot."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]
INSTALL = Path(__file__).resolve().parents[2] / "deploy" / "local" / "chromium.sh"


def missing() -> str | None:
    """Why the browser cannot run here (after trying to install it), or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e .[test])"
    if not os.access(CHROMIUM, os.X_OK):
        subprocess.run([str(INSTALL)], check=False)
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (Debian package chromium)"
    return None


@contextmanager
def chromium() -> Iterator["object"]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()

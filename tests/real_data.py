"""Real data for tests: small excerpts of the real files, committed under tests/fixtures/real (see
its README for their origin), which every clone has; and the whole files in ../shared/data/real
for the few tests that check figures of a whole file. Those skip when the files are absent, and
fail instead with CI=true, where missing real data is an error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXCERPTS = REPO / "tests" / "fixtures" / "real"
SHARED = REPO.parent / "shared" / "data" / "real"


def excerpt(name: str) -> Path:
    """A committed excerpt of the real file `name`."""
    path = EXCERPTS / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the excerpt is part of the repository; see {EXCERPTS / 'README.md'}")
    return path


def whole_file(name: str) -> Path:
    """The whole real file `name` from ../shared/data/real: a skip when absent, a failure with CI=true."""
    path = SHARED / name
    if not path.is_file():
        message = f"the whole real file is not at {path} (tests/fixtures/real/README.md says where it comes from)"
        if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
            pytest.fail(message + "; with CI=true missing real data is a failure")
        pytest.skip(message)
    return path

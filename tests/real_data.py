"""Real data for tests: small excerpts of the real files, committed under tests/fixtures/real (see
its README for their origin), which every clone has; and the whole files in ../shared/data/real
for the few tests that check figures of a whole file. Those skip, naming the file, when the files are
absent: the data may not be copied into the repository, and a clone need not sit beside ../shared (CI's
fresh clone included). Every other real-data test reads the committed excerpts and always runs."""

from __future__ import annotations

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
    """The whole real file `name` from ../shared/data/real, or a skip naming where it should be."""
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"the whole real file is not at {path} (tests/fixtures/real/README.md says where it comes from)")
    return path

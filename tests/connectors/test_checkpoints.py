"""connectors.checkpoints: the one atomic checkpoint writer of AMI and queue_log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.checkpoints import write_checkpoint
from connectors.errors import ConfigurationError


def test_a_checkpoint_is_replaced_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    write_checkpoint(path, {"last_id": 1})
    write_checkpoint(str(path), {"last_id": 2, "recent": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"last_id": 2, "recent": [1, 2]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_checkpoint_that_cannot_be_written_is_one_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "missing-directory" / "state.json"
    with pytest.raises(ConfigurationError, match=f"cannot write checkpoint {path}: No such file or directory"):
        write_checkpoint(path, {"last_id": 1})

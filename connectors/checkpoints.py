"""Checkpoint files of the connectors (AMI's ids sent, queue_log's file or table position): written
whole or not at all."""

from __future__ import annotations

import json
import os
from pathlib import Path

from connectors.errors import ConfigurationError


def write_checkpoint(path: str | Path, state: object) -> None:
    """`state` as JSON at `path`, atomically: a reader (or a crash) sees the old checkpoint or the new
    one, never half of one. ConfigurationError naming the file if it cannot be written."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as stream:
            json.dump(state, stream, separators=(",", ":"))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise ConfigurationError(f"cannot write checkpoint {path}: {error.strerror}") from None

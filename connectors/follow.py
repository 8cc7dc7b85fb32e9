"""Reading a file line by line to its end, or following it like `tail -F`, for every file source
(queue-log, file): rotation (the name now points to another file: the old one is read to its end
first, then the new one from its start), truncation (copytruncate, or a file rewritten in place:
read again from its start), a file that does not exist yet, and a position to resume from after a
restart (the file's device, inode and a hash of its head, since inodes are reused after rotation;
a file rotated while stopped is found under its rotated name and finished first).

A line is handed over only once its newline has been written; on import, the file is finished, so
its last line counts without one. What is done with a line is the caller's: `handle(raw, number,
path)`. `at_end` counts the times a followed file was found with nothing more to read: a readiness
signal (`wait_at_end`) for tests and anyone waiting for the follower to catch up."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from connectors.errors import ConfigurationError

CHUNK_BYTES: Final = 1 << 20
MAX_LINE_BYTES: Final = 1 << 20       # a "line" longer than this is garbage, not a record
FINGERPRINT_BYTES: Final = 1024       # the head of a file, to tell it from another with the same inode

Handle = Callable[[bytes, int, str], None]   # a line without its newline, its number, the file's path
Lost = Callable[[str, str, bytes], None]      # location, reason, the raw bytes lost


@dataclass(frozen=True, slots=True)
class FilePosition:
    """Where reading stopped: the file, the offset just after the last complete line handed out (an
    incomplete line lies after it and is read again), and that line's number."""

    path: str
    device: int
    inode: int
    position: int
    line: int
    head_length: int
    head_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "device": self.device, "inode": self.inode, "position": self.position,
                "line": self.line, "head": {"length": self.head_length, "sha256": self.head_sha256}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FilePosition:
        """ValueError, KeyError or TypeError when `data` is not what `to_json` wrote."""
        head = data["head"]
        numbers = [data["device"], data["inode"], data["position"], data["line"], head["length"]]
        if not all(type(v) is int and v >= 0 for v in numbers):
            raise ValueError("offsets must be whole numbers")
        if not isinstance(data["path"], str) or not isinstance(head["sha256"], str):
            raise ValueError("path or head hash malformed")
        return cls(data["path"], data["device"], data["inode"], data["position"], data["line"], head["length"],
                   head["sha256"])


@dataclass
class FollowCounts:
    lines: int = 0
    rotations: int = 0
    truncations: int = 0


class OpenFile:
    """A file read line by line from an offset. `position` is just after the last complete line handed
    out; bytes read beyond it (an incomplete line) wait in `partial`."""

    def __init__(self, path: str, handle: BinaryIO, position: int = 0, line: int = 0) -> None:
        self.path = path
        self.handle = handle
        stat = os.fstat(handle.fileno())
        self.device, self.inode = stat.st_dev, stat.st_ino
        self.position = position
        self.line = line
        self.partial = b""
        # The first bytes of the file as read: if they change, the file was truncated and rewritten.
        self.head_bytes = os.pread(handle.fileno(), min(FINGERPRINT_BYTES, position), 0) if position else b""
        handle.seek(position)

    @classmethod
    def open(cls, path: str, position: int = 0, line: int = 0) -> OpenFile:
        return cls(path, open(path, "rb"), position, line)

    def read_lines(self, size: int = CHUNK_BYTES) -> tuple[bool, list[tuple[bytes, int]]]:
        """(whether anything was read, the complete lines now available with their line numbers)."""
        data = self.handle.read(size)
        if not data:
            return False, []
        if len(self.head_bytes) < FINGERPRINT_BYTES:
            self.head_bytes = (self.head_bytes + data)[:FINGERPRINT_BYTES]
        *complete, self.partial = (self.partial + data).split(b"\n")
        lines = []
        for raw in complete:
            self.line += 1
            self.position += len(raw) + 1
            lines.append((raw, self.line))
        if len(self.partial) > MAX_LINE_BYTES:  # never ends: hand it over to be rejected
            raw, self.partial = self.partial, b""
            self.line += 1
            self.position += len(raw)
            lines.append((raw, self.line))
        return True, lines

    def take_partial(self) -> tuple[bytes, int] | None:
        """The incomplete last line, as a line (the writer has finished with this file)."""
        if not self.partial:
            return None
        raw, self.partial = self.partial, b""
        self.line += 1
        self.position += len(raw)
        return raw, self.line

    def restart(self) -> None:
        self.handle.seek(0)
        self.position, self.line, self.partial, self.head_bytes = 0, 0, b"", b""

    def skip_to(self, position: int, line: int) -> None:
        self.handle.seek(position)
        self.position, self.line, self.partial = position, line, b""
        self.head_bytes = os.pread(self.handle.fileno(), min(FINGERPRINT_BYTES, position), 0)

    def skip_to_end(self) -> None:
        """After the last complete line, counting lines on the way so that locations stay true."""
        lines, position, last_newline = 0, 0, 0
        while True:
            block = self.handle.read(CHUNK_BYTES)
            if not block:
                break
            lines += block.count(b"\n")
            at = block.rfind(b"\n")
            if at >= 0:
                last_newline = position + at + 1
            position += len(block)
        self.skip_to(last_newline, lines)

    @property
    def rewritten(self) -> bool:
        """The file shrank below what was read, or its head is no longer what was read there."""
        if self.size < self.read_to:
            return True
        return bool(self.head_bytes) and os.pread(self.handle.fileno(), len(self.head_bytes), 0) != self.head_bytes

    @property
    def size(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    @property
    def read_to(self) -> int:
        return self.position + len(self.partial)

    def head(self, length: int) -> str:
        return hashlib.sha256(os.pread(self.handle.fileno(), length, 0)).hexdigest()

    def first_lines(self, count: int = 3) -> list[str]:
        """The file's first complete lines (a half-written one could mislead)."""
        data = os.pread(self.handle.fileno(), 65536, 0)
        return [line.rstrip(b"\r").decode("utf-8", "replace") for line in data.split(b"\n")[:-1][:count]]

    def is_at(self, position: FilePosition) -> bool:
        return ((self.device, self.inode) == (position.device, position.inode)
                and self.size >= position.head_length and self.head(position.head_length) == position.head_sha256)

    def close(self) -> None:
        self.handle.close()


@dataclass
class FileFollower:
    """One file source's reading. `start`, then `pump` until it returns False; then (import)
    `finish` until it returns False, or (following) `idle` and `pump` again after a pause.
    `on_open(file)` is called for each file opened from its start (to learn a header, say),
    `on_switch()` after a rotation, `on_lost(location, reason, raw)` for a line a truncation lost."""

    path: str
    handle: Handle
    follow: bool = False
    from_start: bool = False
    chunk_bytes: int = CHUNK_BYTES
    on_open: Callable[[OpenFile], None] = lambda _file: None
    on_switch: Callable[[], None] = lambda: None
    on_lost: Lost = lambda _where, _why, _raw: None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("callwatch.connect.file"))
    counts: FollowCounts = field(default_factory=FollowCounts)
    current: OpenFile | None = None
    at_end: int = 0
    _then_path: bool = False          # after draining a rotated file, go on with `path` from its start
    _warned_open: str | None = None
    _progress: threading.Condition = field(default_factory=threading.Condition, repr=False)

    # -- start -----------------------------------------------------------------------------------

    def start(self, resume: FilePosition | None = None) -> None:
        if resume is not None:
            self._resume(resume)
        elif not os.path.exists(self.path):
            if not self.follow:
                raise ConfigurationError(f"no such file: {self.path}")
            self.log.warning("%s does not exist yet: waiting for it", self.path)
        else:
            self.current = self._open(self.path)
            if self.follow and not self.from_start:
                self.current.skip_to_end()
        if self.current is not None:
            self.on_open(self.current)

    def _resume(self, resume: FilePosition) -> None:
        if os.path.abspath(resume.path) != os.path.abspath(self.path):
            raise ConfigurationError(f"the checkpoint belongs to {resume.path}, not {self.path}")
        same = self._open(self.path) if os.path.exists(self.path) else None
        if same is not None and same.is_at(resume):
            if same.size < resume.position:
                self.log.warning("%s was truncated while we were away: reading it from its start", self.path)
                self.counts.truncations += 1
            else:
                same.skip_to(resume.position, resume.line)
            self.current = same
            return
        rotated = self._find_rotated(resume)
        if rotated is not None:
            self.log.info("%s was rotated while we were away: finishing %s first", self.path, rotated.path)
            if same is not None:
                same.close()
            self.current, self._then_path = rotated, True
            return
        if same is not None:
            self.log.warning("the file in the checkpoint is gone: reading %s from its start", self.path)
        self.current = same

    def _find_rotated(self, resume: FilePosition) -> OpenFile | None:
        """The checkpointed file under its rotated name (queue_log.1, queue_log-20240301, ...)."""
        directory, base = os.path.split(os.path.abspath(self.path))
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return None
        for entry in entries:
            if entry.name == base or not entry.name.startswith(base):
                continue
            try:
                stat = entry.stat()
                if (stat.st_dev, stat.st_ino) != (resume.device, resume.inode) or stat.st_size < resume.position:
                    continue
                candidate = self._open(entry.path)
            except (OSError, ConfigurationError):
                continue
            if candidate.is_at(resume):
                candidate.skip_to(resume.position, resume.line)
                return candidate
            candidate.close()
        return None

    # -- reading ---------------------------------------------------------------------------------

    def pump(self) -> bool:
        """Read and hand over one chunk's lines; False at the end of the file."""
        current = self.current
        if current is None:
            return False
        if self.follow and current.rewritten:
            # Truncated and written again since the last read: new data is not where we were.
            self._truncated(current)
        got, lines = current.read_lines(self.chunk_bytes)
        for raw, number in lines:
            self.counts.lines += 1
            self.handle(raw, number, current.path)
        return got

    def finish(self) -> bool:
        """Import, at the end of the current file: its last line even without a newline; then the
        next file (the new one after a rotation found on resume). False when all is read."""
        current = self.current
        if current is None:
            return False
        last = current.take_partial()
        if last is not None:
            self.counts.lines += 1
            self.handle(last[0], last[1], current.path)
        if self._then_path and os.path.exists(self.path):
            current.close()
            self.current, self._then_path = self._open(self.path), False
            self.on_switch()
            return True
        return False  # the file stays open for the caller's last checkpoint; close() ends it

    def idle(self) -> None:
        """Following, at the end of the file: a file that appeared, truncation, rotation."""
        current = self.current
        if current is None:
            if os.path.exists(self.path):
                self.current = self._try_open(self.path)
                if self.current is not None:
                    self.on_open(self.current)
                    self.log.info("%s appeared: following it", self.path)
        elif current.rewritten:
            self._truncated(current)
        elif self._rotated(current):
            return
        with self._progress:
            self.at_end += 1
            self._progress.notify_all()

    def wait_at_end(self, after: int, timeout_s: float) -> bool:
        """Wait until the follower has been at the end of its file more than `after` times."""
        with self._progress:
            return self._progress.wait_for(lambda: self.at_end > after, timeout_s)

    def position(self) -> FilePosition | None:
        current = self.current
        if current is None:
            return None
        head = current.head_bytes
        return FilePosition(os.path.abspath(self.path), current.device, current.inode, current.position, current.line,
                            len(head), hashlib.sha256(head).hexdigest())

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None

    # -- inside ----------------------------------------------------------------------------------

    def _truncated(self, current: OpenFile) -> None:
        self.log.info("%s was truncated: reading it again from its start", current.path)
        self.counts.truncations += 1
        if current.partial:
            self.on_lost(f"{current.path}:{current.line + 1}", "incomplete line lost when the file was truncated",
                         current.partial)
        current.restart()

    def _rotated(self, current: OpenFile) -> bool:
        """If `path` now names another file with something in it, finish this one and switch (an
        empty new file may not be written yet: the writer may still be appending to this one)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        if (stat.st_dev, stat.st_ino) == (current.device, current.inode) or stat.st_size == 0:
            return False
        new = self._try_open(self.path)
        if new is None:
            return False  # keep reading the old file; try again at the next poll
        while self.pump():
            pass
        last = current.take_partial()
        if last is not None:
            self.counts.lines += 1
            self.handle(last[0], last[1], current.path)
        current.close()
        self.current, self._then_path = new, False
        self.counts.rotations += 1
        self.log.info("%s was rotated: following the new file", self.path)
        self.on_switch()
        return True

    def _open(self, path: str) -> OpenFile:
        try:
            return OpenFile.open(path)
        except OSError as error:
            raise ConfigurationError(f"cannot read {path}: {error.strerror}") from None

    def _try_open(self, path: str) -> OpenFile | None:
        """While following, a file that cannot be opened yet (logrotate may create it before setting
        its permissions) is tried again at the next poll rather than stopping the connector."""
        try:
            return OpenFile.open(path)
        except OSError as error:
            if self._warned_open != error.strerror:
                self.log.warning("cannot read %s yet: %s (retrying)", path, error.strerror)
                self._warned_open = error.strerror
            return None

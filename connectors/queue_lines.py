"""The one `QUEUE=LINE` grammar of every connector's queue option: which service line (and shown
name) each platform queue belongs to.

    QUEUE=LINE[:NAME],...     e.g.  Q1=999,sales=101:Sales desk,*=101

An entry is split at its last '=' (Amazon Connect queue ARNs hold ':' and '/', never '='), its
value at the first ':'. QUEUE is whatever the platform sends (a name, a Twilio SID, an ARN or its
id). `*` has one meaning: as the QUEUE of an entry it stands for every queue not listed; a queue
not listed when there is no `*` entry is a line of its own, named like the queue. `*` is never a
LINE or NAME: in reports it means a line's total."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Mapping

from connectors.errors import ConfigurationError

ANY_QUEUE: Final = "*"
EXAMPLE: Final = "Q1=999,sales=101:Sales desk,*=101"


@dataclass(frozen=True, slots=True)
class QueueRoute:
    """Where a platform queue belongs: its line, and the name to show for it (None: the queue's own)."""

    line: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class QueueLines:
    routes: Mapping[str, QueueRoute] = field(default_factory=dict)
    other_queues: str | None = None  # the line of the '*' entry

    def listed(self, *keys: str) -> QueueRoute | None:
        """The entry of a queue known by any of `keys` (a name, an id, an ARN), if it has one."""
        for key in keys:
            if key and key in self.routes:
                return self.routes[key]
        return None

    def route(self, queue: str, *aliases: str) -> QueueRoute:
        """Where a queue known by `queue` (its shown name) or any of `aliases` belongs, listed or not."""
        found = self.listed(*aliases, queue)
        if found is not None:
            return found if found.name else QueueRoute(found.line, queue)
        return QueueRoute(self.other_queues or queue, queue)

    def line_of(self, queue: str, *aliases: str) -> str:
        return self.route(queue, *aliases).line


def parse_queue_lines(text: str | None, option: str = "queue lines") -> QueueLines:
    """The routes of 'QUEUE=LINE[:NAME],...'; ConfigurationError naming `option` and the wrong entry."""
    routes: dict[str, QueueRoute] = {}
    other: str | None = None
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        queue, equals, value = entry.rpartition("=")
        line, _colon, name = value.partition(":")
        queue, line, name = queue.strip(), line.strip(), name.strip()
        if not equals or not queue or not line:
            raise ConfigurationError(f"{option}: {entry!r} is not QUEUE=LINE or QUEUE=LINE:NAME (e.g. {EXAMPLE})")
        if ANY_QUEUE in (line, name):
            raise ConfigurationError(f"{option}: {entry!r}: '*' is a line's total, never a line or queue name")
        if queue == ANY_QUEUE:
            if name:
                raise ConfigurationError(f"{option}: {entry!r}: '*' stands for many queues, it takes no NAME")
            if other is not None and other != line:
                raise ConfigurationError(f"{option}: '*' is given two lines ({other}, {line})")
            other = line
            continue
        route = QueueRoute(line, name or None)
        if routes.setdefault(queue, route) != route:
            raise ConfigurationError(f"{option}: queue {queue!r} is given two lines")
    return QueueLines(routes, other)

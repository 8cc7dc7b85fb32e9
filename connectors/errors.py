"""The error hierarchy shared by every connector: a bad configuration stops the connector at start,
a bad record is reported (counted, dead-lettered) and the connector carries on. InvalidRecord is the
one rejection type of every parser; IgnoredRecord the one "no event, on purpose"."""

from __future__ import annotations

from dataclasses import dataclass


class ConnectorError(Exception):
    """Base of every error a connector reports."""


class ConfigurationError(ConnectorError):
    """The connector cannot start: a mapping, option or secret is missing or wrong."""


class InvalidRecord(ConnectorError):
    """One source record that cannot become canonical events.

    Parsers usually yield it as a value rather than raise it, so that one bad record never stops a
    stream. `location` says where the record came from (a 1-based line number, a byte offset, a
    message id); `reason` says what is wrong with it in words a user can act on.
    """

    def __init__(self, reason: str, location: int | str | None = None) -> None:
        where = f"line {location}: " if isinstance(location, int) else (f"{location}: " if location else "")
        super().__init__(where + reason)
        self.reason = reason
        self.location = location

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InvalidRecord):
            return NotImplemented
        return (self.reason, self.location) == (other.reason, other.location)

    def __hash__(self) -> int:
        return hash((self.reason, self.location))

    def __repr__(self) -> str:
        return f"InvalidRecord({self.reason!r}, {self.location!r})"


@dataclass(frozen=True, slots=True)
class IgnoredRecord:
    """A well-formed record that deliberately yields no event (a ring attempt, a chat contact, a
    row the mapping skips): counted by reason, not dead-lettered."""

    reason: str
    location: int | str | None = None
    detail: str = ""  # e.g. the unknown event's name or the unmapped queue, for a one-time warning


class SourceUnavailable(ConnectorError):
    """The source (file, socket, broker) cannot be reached now; the transport retries with backoff."""

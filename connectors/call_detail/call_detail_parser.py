"""Call-detail rows (one row per call: CSV exports of ACD/CDR reports) to canonical events, as the
column mapping says (call_detail_mapping). Pure: rows in; events, rejections (InvalidRecord), skips
(IgnoredRecord) and levelled clocks (LevelledRecord) out, each with its row's line number. File
reading is the source's (call_detail_source)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final, TypeAlias
from zoneinfo import ZoneInfo

from connectors.call_detail.call_detail_mapping import MAX_YEAR, MIN_YEAR, CallDetailMapping, FieldRule
from connectors.canonical import EventBuilder
from connectors.errors import ConfigurationError, IgnoredRecord, InvalidRecord
from connectors.privacy import Pseudonymiser
from streams.domain.events import ANSWERED, ENDED, OFFERED, TYPE_RANK, format_ts

_DAY_MS: Final = 86_400_000
_EPOCH_DATE: Final = date(1970, 1, 1)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
_CACHE_LIMIT: Final = 100_000


@dataclass(frozen=True, slots=True)
class LevelledRecord:
    """A row whose clocks disagree by less than the mapping's max_clock_skew_s (an answer a few
    seconds before the offer): the later time was moved up to the earlier one and the row's events
    are written; counted and reported with the row, never silent."""

    reason: str
    location: int | str | None = None


# An event (a canonical v1 dict), a rejected row, a skipped row, or a note that a row was levelled.
ParsedItem: TypeAlias = dict[str, Any] | InvalidRecord | IgnoredRecord | LevelledRecord
_Result: TypeAlias = "_RowEvents | IgnoredRecord | InvalidRecord"


# --- rows to events --------------------------------------------------------------------------------

class _Reject(Exception):
    """Internal: the row being converted is invalid for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _RowEvents:
    events: list[tuple[int, dict[str, Any]]]  # (UTC epoch ms, canonical event), in call order
    lower_bound_ms: int | None                # no later row has an event before this (if rows are sorted)
    levelled: list[str]                       # clock disagreements levelled in this row


class _RowConverter:
    """Converts one row at a time; holds the mapping, the key function and parse caches."""

    def __init__(self, mapping: CallDetailMapping, pseudonymiser: Pseudonymiser | None) -> None:
        needing = mapping.identity_columns
        if needing and pseudonymiser is None:
            raise ConfigurationError(
                f"mapping {mapping.source} reads callers or agents from column(s) {', '.join(needing)}: "
                "they are written only as keyed hashes, so set CALLWATCH_PSEUDONYMISATION_KEY")
        self.mapping = mapping
        self.build = EventBuilder(mapping.source, pseudonymiser)
        self.seen_calls: dict[str, int] = {}  # call id -> line of the row that had it
        self.seen_day = ""
        self.zone = ZoneInfo(mapping.time.zone_name)
        self.skew_ms = mapping.time.max_clock_skew_s * 1000
        self.fast_time = mapping.time.time_format == "%H:%M:%S"
        self.dates: dict[str, tuple[int, str]] = {}
        self.times: dict[str, int] = {}

    def convert(self, row: Mapping[str, object], line: int) -> _RowEvents | IgnoredRecord:
        if None in row:
            extra = row[None]  # type: ignore[index]
            count = len(extra) if isinstance(extra, list) else 1
            raise _Reject(f"{count} more field(s) than the header")
        m = self.mapping
        for rule in m.skip:
            if all(self.cell(row, column) in values for column, values in rule.when.items()):
                return IgnoredRecord(rule.reason, line)
        raw_outcome = self.cell(row, m.outcome_column)
        outcome = m.outcome_values.get(raw_outcome)
        if outcome is None:
            known = ", ".join(sorted(m.outcome_values))
            raise _Reject(f"unknown outcome {raw_outcome!r} in column {m.outcome_column} (known: {known})")

        day, iso_day = self.date(self.cell(row, m.time.date_column))
        anchor_ms = day + self.time_of_day(m.time.anchor, self.cell(row, m.time.anchor))
        offered_ms = self.event_time(row, OFFERED, day, anchor_ms, required=True)
        outcome_ms = self.event_time(row, outcome, day, anchor_ms, required=True)
        ended_ms = self.event_time(row, ENDED, day, anchor_ms, required=False) if outcome == ANSWERED else None
        assert offered_ms is not None and outcome_ms is not None
        levelled: list[str] = []
        outcome_ms = self.not_before(outcome_ms, offered_ms, outcome, OFFERED, levelled)
        if ended_ms is not None:
            ended_ms = self.not_before(ended_ms, outcome_ms, ENDED, ANSWERED, levelled)

        parts = [self.required_cell(row, column) for column in m.call_id_columns]
        call_id = ":".join([iso_day, *parts] if m.call_id_with_date else parts)
        self.first_sight(call_id, iso_day, line)
        common: dict[str, Any] = {
            "line": self.field(row, m.line, "line"),
            "queue": self.field(row, m.queue, "queue"),
            "site": self.field(row, m.site, "site"),
        }
        if common["queue"] == "*":
            raise _Reject("queue '*' is reserved for line totals")
        caller = self.optional_field(row, m.caller)
        agent = self.optional_field(row, m.agent) if outcome == ANSWERED else None
        moments = [(OFFERED, offered_ms), (outcome, outcome_ms)]
        if ended_ms is not None:
            moments.append((ENDED, ended_ms))
        events = []
        for event_type, local_ms in moments:
            utc_ms = self.to_utc(local_ms)
            events.append((utc_ms, self.build.call(
                event_type, event_id=f"{m.source}:{call_id}:{event_type}", call_id=call_id, occurred_ms=utc_ms,
                agent=agent if event_type == ANSWERED else None, caller=caller, **common)))
        if m.rows_sorted_by == "date":
            lower_bound: int | None = self.to_utc(day) - self.skew_ms
        elif m.rows_sorted_by == "anchor":
            lower_bound = self.to_utc(anchor_ms) - self.skew_ms
        else:
            lower_bound = None
        return _RowEvents(events, lower_bound, levelled)

    def first_sight(self, call_id: str, iso_day: str, line: int) -> None:
        """A call id met twice would give events the domain takes for duplicates: one call lost."""
        if self.mapping.call_id_with_date and self.mapping.rows_sorted_by == "date" and iso_day != self.seen_day:
            self.seen_calls.clear()  # ids carry their date and days come in order: older ones cannot return
            self.seen_day = iso_day
        first = self.seen_calls.setdefault(call_id, line)
        if first != line:
            raise _Reject(f"call id {call_id!r} repeats the row at line {first}: this row is not a call of its own")

    # Times are first worked out as naive local epoch milliseconds (wall-clock arithmetic: a day is
    # always 24 h of wall clock), then converted to UTC once, through the source's zone.
    def date(self, raw: str) -> tuple[int, str]:
        cached = self.dates.get(raw)
        if cached is not None:
            return cached
        rule = self.mapping.time
        try:
            parsed = datetime.strptime(raw, rule.date_format).date()
        except ValueError:
            raise _Reject(f"column {rule.date_column}: {raw!r} is not a date like {rule.date_format}") from None
        if parsed.year in rule.replace_year:
            try:
                parsed = parsed.replace(year=rule.replace_year[parsed.year])
            except ValueError:
                raise _Reject(f"column {rule.date_column}: {raw!r} does not exist in year "
                              f"{rule.replace_year[parsed.year]}") from None
        if not MIN_YEAR <= parsed.year <= MAX_YEAR:
            raise _Reject(f"column {rule.date_column}: year {parsed.year} is out of range")
        result = ((parsed - _EPOCH_DATE).days * _DAY_MS, parsed.isoformat())
        if len(self.dates) >= _CACHE_LIMIT:
            self.dates.clear()
        self.dates[raw] = result
        return result

    def time_of_day(self, column: str, raw: str) -> int:
        cached = self.times.get(raw)
        if cached is not None:
            return cached
        ms = _fast_time_of_day(raw) if self.fast_time else self.strptime_time_of_day(raw)
        if ms is None:
            raise _Reject(f"column {column}: {raw!r} is not a time of day like {self.mapping.time.time_format}")
        if len(self.times) >= _CACHE_LIMIT:
            self.times.clear()
        self.times[raw] = ms
        return ms

    def strptime_time_of_day(self, raw: str) -> int | None:
        try:
            moment = datetime.strptime(raw, self.mapping.time.time_format)
        except ValueError:
            return None
        return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1000 + moment.microsecond // 1000

    def event_time(self, row: Mapping[str, object], event_type: str, day: int, anchor_ms: int,
                   required: bool) -> int | None:
        candidates = self.mapping.event_times.get(event_type, ())
        for column in candidates:
            raw = self.cell(row, column)
            if raw in self.mapping.time.not_applicable:
                continue
            local_ms = day + self.time_of_day(column, raw)
            # The row's date is the anchor's date: a time of day that would fall well before the anchor
            # belongs to the next day (a call crossing midnight).
            earliest = anchor_ms - self.skew_ms
            return local_ms - ((local_ms - earliest) // _DAY_MS) * _DAY_MS
        if required:
            raise _Reject(f"no time for {event_type}: {', '.join(candidates)} "
                          f"{'is' if len(candidates) == 1 else 'are all'} not applicable")
        return None

    def not_before(self, later_ms: int, earlier_ms: int, later: str, earlier: str, levelled: list[str]) -> int:
        """Two clocks (IVR, queue, agent desk) may disagree by a little: small inversions are
        levelled (and reported), larger ones are a broken record."""
        if later_ms >= earlier_ms:
            return later_ms
        if earlier_ms - later_ms <= self.skew_ms:
            levelled.append(f"{later} time before the {earlier} time: levelled to it")
            return earlier_ms
        raise _Reject(f"{later} time is {(earlier_ms - later_ms) / 1000:g} s before the {earlier} time")

    def to_utc(self, local_ms: int) -> int:
        # Ambiguous wall-clock times (the repeated hour in autumn) are read as the first occurrence.
        offset = self.zone.utcoffset(_EPOCH_NAIVE + timedelta(milliseconds=local_ms))
        assert offset is not None
        return local_ms - offset // timedelta(milliseconds=1)

    def cell(self, row: Mapping[str, object], column: str) -> str:
        value = row.get(column)
        if value is None:
            raise _Reject(f"missing column {column}")
        if not isinstance(value, str):
            raise _Reject(f"column {column} is not text")
        return value.strip()

    def required_cell(self, row: Mapping[str, object], column: str) -> str:
        value = self.cell(row, column)
        if not value:
            raise _Reject(f"column {column} is empty")
        return value

    def field(self, row: Mapping[str, object], rule: FieldRule, name: str) -> str:
        if rule.value is not None:
            return rule.value
        assert rule.column is not None
        raw = self.cell(row, rule.column)
        value = rule.values.get(raw, raw if rule.default is None else rule.default)
        if value in rule.absent:
            raise _Reject(f"no {name}: column {rule.column} is {raw!r}")
        return value

    def optional_field(self, row: Mapping[str, object], rule: FieldRule | None) -> str | None:
        if rule is None:
            return None
        if rule.value is not None:
            value: str = rule.value
        else:
            assert rule.column is not None
            raw = self.cell(row, rule.column)
            value = rule.values.get(raw, raw if rule.default is None else rule.default)
            if value in rule.absent:
                return None
        return value


def _fast_time_of_day(raw: str) -> int | None:
    """'H:MM:SS' (as strptime's %H:%M:%S reads it) to milliseconds since midnight, quickly."""
    parts = raw.split(":")
    if len(parts) != 3:
        return None
    for part in parts:
        if not (0 < len(part) <= 2 and part.isascii() and part.isdigit()):
            return None
    hours, minutes, seconds = int(parts[0]), int(parts[1]), int(parts[2])
    if hours > 23 or minutes > 59 or seconds > 59:
        return None
    return ((hours * 60 + minutes) * 60 + seconds) * 1000


def _numbered(rows: Iterable[Mapping[str, object]], first_line: int) -> Iterator[tuple[int, Mapping[str, object]]]:
    return ((first_line + index, row) for index, row in enumerate(rows))


def _converted(numbered: Iterable[tuple[int, Mapping[str, object]]], converter: _RowConverter,
               ) -> Iterator[tuple[int, _Result]]:
    for line, row in numbered:
        try:
            result = converter.convert(row, line)
        except _Reject as problem:
            yield line, InvalidRecord(problem.reason, line)
            continue
        yield line, result


def parse_rows(rows: Iterable[Mapping[str, str]], mapping: CallDetailMapping,
               pseudonymiser: Pseudonymiser | None = None, *, first_line: int = 2) -> Iterator[ParsedItem]:
    """Each row's events (offered, then its outcome, then ended), or one rejection or skip per row,
    in row order. `first_line` is the line number of the first row (2: after a header line).

    Raises ConfigurationError at once (not on iteration) if the mapping needs a key function and
    none is given; never raises for a bad row."""
    converter = _RowConverter(mapping, pseudonymiser)
    return _flatten(_converted(_numbered(rows, first_line), converter))


def _flatten(results: Iterator[tuple[int, _Result]]) -> Iterator[ParsedItem]:
    for line, result in results:
        if isinstance(result, _RowEvents):
            yield from _notes(result, line)
            for _, event in result.events:
                yield event
        else:
            yield result


def iter_events_sorted(rows: Iterable[Mapping[str, str]], mapping: CallDetailMapping,
                       pseudonymiser: Pseudonymiser | None = None, *, first_line: int = 2) -> Iterator[ParsedItem]:
    """Like parse_rows, but events come out in event-time order (ties: type, then event_id), with
    skips and rejections as soon as their row is read.

    Memory is bounded by the mapping's `rows_sorted_by`: with `date` (rows in nondecreasing date
    order) events are held back about one day, with `anchor` about one call; with `none` the whole
    file is held. A row that breaks the declared order so badly that its events would come out
    before events already yielded is rejected, saying so."""
    return in_time_order(_numbered(rows, first_line), mapping, pseudonymiser)


def in_time_order(numbered_rows: Iterable[tuple[int, Mapping[str, object]]], mapping: CallDetailMapping,
                  pseudonymiser: Pseudonymiser | None = None) -> Iterator[ParsedItem]:
    """iter_events_sorted for rows given with their own line numbers (a CSV row may span lines)."""
    converter = _RowConverter(mapping, pseudonymiser)
    return _sorted(_converted(numbered_rows, converter))


def _sorted(results: Iterator[tuple[int, _Result]]) -> Iterator[ParsedItem]:
    heap: list[tuple[int, int, str, int, dict[str, Any]]] = []
    sequence = 0
    watermark: int | None = None
    released_ms: int | None = None
    for line, result in results:
        if not isinstance(result, _RowEvents):
            yield result
            continue
        first_ms = min(ms for ms, _ in result.events)
        if released_ms is not None and first_ms < released_ms:
            yield InvalidRecord(
                f"row out of order: its events start at {format_ts(first_ms)}, before events already "
                f"written ({format_ts(released_ms)}); sort the file or declare rows_sorted_by: none", line)
            continue
        yield from _notes(result, line)
        for ms, event in result.events:
            heapq.heappush(heap, (ms, TYPE_RANK[event["type"]], event["event_id"], sequence, event))
            sequence += 1
        if result.lower_bound_ms is not None:
            watermark = result.lower_bound_ms if watermark is None else max(watermark, result.lower_bound_ms)
            while heap and heap[0][0] < watermark:
                released_ms, *_, event = heapq.heappop(heap)
                yield event
    while heap:
        released_ms, *_, event = heapq.heappop(heap)
        yield event



def _notes(result: _RowEvents, line: int) -> Iterator[LevelledRecord]:
    return (LevelledRecord(reason, line) for reason in result.levelled)

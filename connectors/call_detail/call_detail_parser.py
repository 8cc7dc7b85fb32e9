"""Call-detail files (one row per call: CSV exports of ACD/CDR reports) to canonical events, driven by
a column-mapping file. The parser is pure: rows in, events, rejections and skips out; only
`load_mapping` and `convert_file` touch files."""

from __future__ import annotations

import csv
import heapq
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from connectors.errors import ConfigurationError, ConnectorError, InvalidRecord
from connectors.privacy import hmac_pseudonymiser
from streams.domain.events import (
    ABANDONED, ANSWERED, ENDED, OFFERED, SCHEMA_VERSION, TIMEOUT, TYPE_RANK, format_ts)

Pseudonymise: TypeAlias = Callable[[str], str]

OUTCOMES: Final = (ANSWERED, ABANDONED, TIMEOUT)
ROW_ORDERS: Final = ("date", "anchor", "none")
_DAY_MS: Final = 86_400_000
_EPOCH_DATE: Final = date(1970, 1, 1)
_EPOCH_NAIVE: Final = datetime(1970, 1, 1)
# Dates outside this range are typing errors, and they would not format as RFC 3339 anyway.
_MIN_YEAR: Final = 1900
_MAX_YEAR: Final = 2999
_CACHE_LIMIT: Final = 100_000


@dataclass(frozen=True, slots=True)
class SkippedRecord:
    """A row that is deliberately not a call of any queue (e.g. the caller never left the IVR)."""

    reason: str
    location: int | str | None = None


# An event (a canonical v1 dict), a rejected row, or a skipped row.
ParsedItem: TypeAlias = dict[str, Any] | InvalidRecord | SkippedRecord


@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one event field is read: a constant `value`, or a `column` optionally mapped through
    `values` (with a `default` for unmapped cells); cells in `absent` mean "no value"."""

    column: str | None = None
    value: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    default: str | None = None
    absent: frozenset[str] = frozenset({""})
    pseudonymise: bool = False


@dataclass(frozen=True, slots=True)
class TimeRule:
    """How a row's time-of-day cells become instants: each is placed on the row's date, or the next
    day if it would otherwise be more than `max_clock_skew_s` before the row's `anchor` time."""

    zone_name: str
    date_column: str
    anchor: str
    date_format: str = "%Y-%m-%d"
    time_format: str = "%H:%M:%S"
    replace_year: Mapping[int, int] = field(default_factory=dict)
    not_applicable: frozenset[str] = frozenset({""})
    max_clock_skew_s: int = 900


@dataclass(frozen=True, slots=True)
class SkipRule:
    """Rows whose cells all match (`column` -> any of the values) are skipped with `reason`."""

    reason: str
    when: Mapping[str, frozenset[str]]


@dataclass(frozen=True, slots=True)
class CallDetailMapping:
    source: str
    call_id_columns: tuple[str, ...]
    time: TimeRule
    outcome_column: str
    outcome_values: Mapping[str, str]
    # Event type -> candidate columns, the first one with an applicable time wins.
    event_times: Mapping[str, tuple[str, ...]]
    line: FieldRule
    queue: FieldRule
    site: FieldRule = FieldRule(value="default")
    agent: FieldRule | None = None
    caller: FieldRule | None = None
    call_id_with_date: bool = False
    skip: tuple[SkipRule, ...] = ()
    rows_sorted_by: str = "none"
    delimiter: str = ","
    encoding: str = "utf-8-sig"

    @property
    def columns(self) -> frozenset[str]:
        """Every column the mapping reads (a file must have all of them)."""
        names = {*self.call_id_columns, self.time.date_column, self.time.anchor, self.outcome_column}
        for candidates in self.event_times.values():
            names.update(candidates)
        for rule in (self.line, self.queue, self.site, self.agent, self.caller):
            if rule is not None and rule.column is not None:
                names.add(rule.column)
        for skip in self.skip:
            names.update(skip.when)
        return frozenset(names)

    @property
    def pseudonymised_columns(self) -> tuple[str, ...]:
        """Columns written only as keyed hashes: the caller always, the agent if asked."""
        columns = []
        if self.caller is not None and self.caller.column is not None:
            columns.append(self.caller.column)
        if self.agent is not None and self.agent.column is not None and self.agent.pseudonymise:
            columns.append(self.agent.column)
        return tuple(columns)


@dataclass(frozen=True, slots=True)
class ConversionSummary:
    rows: int
    events: int
    events_by_type: dict[str, int]
    skipped_by_reason: dict[str, int]
    rejected: list[InvalidRecord]

    def line(self, name: str = "") -> str:
        """One human line, e.g. for stderr."""
        types = ", ".join(f"{k} {v}" for k, v in self.events_by_type.items())
        skipped = sum(self.skipped_by_reason.values())
        reasons = "; ".join(f"{k}: {v}" for k, v in self.skipped_by_reason.items())
        prefix = f"{name}: " if name else ""
        return (f"{prefix}{self.rows} rows, {self.events} events ({types}), skipped {skipped}"
                f"{f' ({reasons})' if reasons else ''}, rejected {len(self.rejected)}")


# --- mapping files -------------------------------------------------------------------------------

def load_mapping(path: str | Path) -> CallDetailMapping:
    """Read and validate a YAML mapping file; raises ConfigurationError saying what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read mapping {path}: {error.strerror}") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigurationError(f"mapping {path} is not valid YAML: {error}") from None
    try:
        return mapping_from_dict(obj)
    except ConfigurationError as error:
        raise ConfigurationError(f"mapping {path}: {error}") from None


def mapping_from_dict(obj: object) -> CallDetailMapping:
    """Validate a decoded mapping (see connectors/call_detail/mappings/ for the documented shape)."""
    top = _object(obj, "mapping")
    _known(top, "mapping", {"source", "call_id", "time", "rows_sorted_by", "skip", "outcome", "times",
                            "line", "queue", "site", "agent", "caller", "csv"})
    call_id = _object(top.get("call_id"), "call_id")
    _known(call_id, "call_id", {"columns", "with_date"})
    time = _time_rule(_object(top.get("time"), "time"))
    outcome = _object(top.get("outcome"), "outcome")
    _known(outcome, "outcome", {"column", "values"})
    outcome_values = {str(k): _text(v, f"outcome.values.{k}") for k, v in
                      _object(outcome.get("values"), "outcome.values").items()}
    for raw, target in outcome_values.items():
        if target not in OUTCOMES:
            raise ConfigurationError(f"outcome.values.{raw}: {target!r} is not one of {', '.join(OUTCOMES)}")
    times = _object(top.get("times"), "times")
    _known(times, "times", {OFFERED, *OUTCOMES, ENDED})
    event_times = {name: _columns(value, f"times.{name}") for name, value in times.items()}
    for needed in (OFFERED, *sorted(set(outcome_values.values()))):
        if needed not in event_times:
            raise ConfigurationError(f"times.{needed} is required (the outcome values use it)")
    if isinstance(top.get("caller"), dict) and "value" in top["caller"]:
        raise ConfigurationError("caller must name a column (a caller is never a constant)")
    rows_sorted_by = top.get("rows_sorted_by", "none")
    if rows_sorted_by not in ROW_ORDERS:
        raise ConfigurationError(f"rows_sorted_by: {rows_sorted_by!r} is not one of {', '.join(ROW_ORDERS)}")
    csv_options = _object(top.get("csv", {}), "csv")
    _known(csv_options, "csv", {"delimiter", "encoding"})
    delimiter = _text(csv_options.get("delimiter", ","), "csv.delimiter")
    if len(delimiter) != 1:
        raise ConfigurationError("csv.delimiter must be one character")
    return CallDetailMapping(
        source=_text(top.get("source"), "source"),
        call_id_columns=_columns(call_id.get("columns"), "call_id.columns"),
        call_id_with_date=_flag(call_id.get("with_date", False), "call_id.with_date"),
        time=time,
        outcome_column=_text(outcome.get("column"), "outcome.column"),
        outcome_values=outcome_values,
        event_times=event_times,
        line=_field_rule(top.get("line"), "line"),
        queue=_field_rule(top.get("queue"), "queue"),
        site=_field_rule(top.get("site", {"value": "default"}), "site"),
        agent=_field_rule(top["agent"], "agent") if top.get("agent") is not None else None,
        caller=_field_rule(top["caller"], "caller") if top.get("caller") is not None else None,
        skip=tuple(_skip_rule(item, f"skip[{i}]") for i, item in enumerate(_list(top.get("skip", []), "skip"))),
        rows_sorted_by=rows_sorted_by,
        delimiter=delimiter,
        encoding=_text(csv_options.get("encoding", "utf-8-sig"), "csv.encoding"),
    )


def _time_rule(obj: dict[str, Any]) -> TimeRule:
    _known(obj, "time", {"zone", "date_column", "date_format", "replace_year", "time_format",
                         "not_applicable", "anchor", "max_clock_skew_s"})
    zone_name = _text(obj.get("zone"), "time.zone")
    try:
        ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"time.zone: unknown time zone {zone_name!r}") from None
    replace_year: dict[int, int] = {}
    for wrong, right in _object(obj.get("replace_year", {}), "time.replace_year").items():
        if not isinstance(wrong, int) or not isinstance(right, int) or not _MIN_YEAR <= right <= _MAX_YEAR:
            raise ConfigurationError(f"time.replace_year: {wrong!r}: {right!r} must map a year to a year")
        replace_year[wrong] = right
    skew = obj.get("max_clock_skew_s", 900)
    if not isinstance(skew, int) or isinstance(skew, bool) or not 0 <= skew < 43_200:
        raise ConfigurationError("time.max_clock_skew_s must be whole seconds from 0 to under 12 hours")
    not_applicable = obj.get("not_applicable", [])
    return TimeRule(
        zone_name=zone_name,
        date_column=_text(obj.get("date_column"), "time.date_column"),
        anchor=_text(obj.get("anchor"), "time.anchor"),
        date_format=_text(obj.get("date_format", "%Y-%m-%d"), "time.date_format"),
        time_format=_text(obj.get("time_format", "%H:%M:%S"), "time.time_format"),
        replace_year=replace_year,
        not_applicable=frozenset({"", *_strings(not_applicable, "time.not_applicable", text_only=True)}),
        max_clock_skew_s=skew,
    )


def _field_rule(obj: object, where: str) -> FieldRule:
    rule = _object(obj, where)
    _known(rule, where, {"column", "value", "values", "default", "absent", "pseudonymise"})
    if ("column" in rule) == ("value" in rule):
        raise ConfigurationError(f"{where}: give exactly one of 'column' or 'value'")
    value = _text(rule["value"], f"{where}.value") if "value" in rule else None
    values = {str(k): _text(v, f"{where}.values.{k}") for k, v in _object(rule.get("values", {}), f"{where}.values").items()}
    default = rule.get("default")
    return FieldRule(
        column=_text(rule["column"], f"{where}.column") if "column" in rule else None,
        value=value,
        values=values,
        default=_text(default, f"{where}.default") if default is not None else None,
        absent=frozenset({"", *_strings(rule.get("absent", []), f"{where}.absent")}),
        pseudonymise=_flag(rule.get("pseudonymise", False), f"{where}.pseudonymise"),
    )


def _skip_rule(obj: object, where: str) -> SkipRule:
    rule = _object(obj, where)
    _known(rule, where, {"reason", "when"})
    when = {str(column): frozenset(_strings(v if isinstance(v, list) else [v], f"{where}.when.{column}"))
            for column, v in _object(rule.get("when"), f"{where}.when").items()}
    if not when:
        raise ConfigurationError(f"{where}.when needs at least one column")
    return SkipRule(reason=_text(rule.get("reason"), f"{where}.reason"), when=when)


def _object(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where} must be a mapping of names to values")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigurationError(f"{where} must be a list")
    return value


def _text(value: object, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ConfigurationError(f"{where} must be a non-empty string")
    return str(value)


def _strings(value: object, where: str, text_only: bool = False) -> list[str]:
    items = _list(value, where)
    for item in items:
        # YAML reads an unquoted 0:00:00 as the base-60 integer 0: insist on quotes where times go.
        if isinstance(item, bool) or not isinstance(item, str if text_only else (str, int)):
            raise ConfigurationError(f"{where}: {item!r} must be a quoted string")
    return [str(item) for item in items]


def _columns(value: object, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else _list(value, where)
    if not items:
        raise ConfigurationError(f"{where} needs at least one column")
    return tuple(_text(item, where) for item in items)


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{where} must be true or false")
    return value


def _known(obj: dict[str, Any], where: str, names: set[str]) -> None:
    unknown = sorted(str(k) for k in obj if k not in names)
    if unknown:
        raise ConfigurationError(f"{where}: unknown key(s) {', '.join(unknown)} (expected: {', '.join(sorted(names))})")


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


class _RowConverter:
    """Converts one row at a time; holds the mapping, the key function and parse caches."""

    def __init__(self, mapping: CallDetailMapping, pseudonymise: Pseudonymise | None) -> None:
        needing = mapping.pseudonymised_columns
        if needing and pseudonymise is None:
            raise ConfigurationError(
                f"mapping {mapping.source} pseudonymises column(s) {', '.join(needing)}: a keyed hash "
                "function (pseudonymise=, e.g. hmac_pseudonymiser(key)) is required; raw identifiers "
                "are never written")
        self.mapping = mapping
        self.pseudonymise = pseudonymise
        self.zone = ZoneInfo(mapping.time.zone_name)
        self.skew_ms = mapping.time.max_clock_skew_s * 1000
        self.fast_time = mapping.time.time_format == "%H:%M:%S"
        self.dates: dict[str, tuple[int, str]] = {}
        self.times: dict[str, int] = {}

    def convert(self, row: Mapping[str, object]) -> _RowEvents | SkippedRecord:
        if None in row:
            extra = row[None]  # type: ignore[index]
            count = len(extra) if isinstance(extra, list) else 1
            raise _Reject(f"{count} more field(s) than the header")
        m = self.mapping
        for rule in m.skip:
            if all(self.cell(row, column) in values for column, values in rule.when.items()):
                return SkippedRecord(rule.reason)
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
        outcome_ms = self.not_before(outcome_ms, offered_ms, outcome, OFFERED)
        if ended_ms is not None:
            ended_ms = self.not_before(ended_ms, outcome_ms, ENDED, ANSWERED)

        parts = [self.required_cell(row, column) for column in m.call_id_columns]
        call_id = ":".join([iso_day, *parts] if m.call_id_with_date else parts)
        common: dict[str, Any] = {
            "line": self.field(row, m.line, "line"),
            "queue": self.field(row, m.queue, "queue"),
            "site": self.field(row, m.site, "site"),
        }
        if common["queue"] == "*":
            raise _Reject("queue '*' is reserved for line totals")
        caller = self.optional_field(row, m.caller, always_hash=True)
        agent = self.optional_field(row, m.agent, always_hash=False) if outcome == ANSWERED else None
        moments = [(OFFERED, offered_ms), (outcome, outcome_ms)]
        if ended_ms is not None:
            moments.append((ENDED, ended_ms))
        events = []
        for event_type, local_ms in moments:
            utc_ms = self.to_utc(local_ms)
            event: dict[str, Any] = {
                "v": SCHEMA_VERSION, "event_id": f"{m.source}:{call_id}:{event_type}", "call_id": call_id,
                "type": event_type, "ts": format_ts(utc_ms), **common}
            if event_type == ANSWERED and agent is not None:
                event["agent"] = agent
            if caller is not None:
                event["caller"] = caller
            event["source"] = m.source
            events.append((utc_ms, event))
        if m.rows_sorted_by == "date":
            lower_bound: int | None = self.to_utc(day) - self.skew_ms
        elif m.rows_sorted_by == "anchor":
            lower_bound = self.to_utc(anchor_ms) - self.skew_ms
        else:
            lower_bound = None
        return _RowEvents(events, lower_bound)

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
        if not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
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

    def not_before(self, later_ms: int, earlier_ms: int, later: str, earlier: str) -> int:
        """Two clocks (IVR, queue, agent desk) may disagree by a little: small inversions are
        levelled, larger ones are a broken record."""
        if later_ms >= earlier_ms:
            return later_ms
        if earlier_ms - later_ms <= self.skew_ms:
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

    def optional_field(self, row: Mapping[str, object], rule: FieldRule | None, always_hash: bool) -> str | None:
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
        if always_hash or rule.pseudonymise:
            assert self.pseudonymise is not None
            return self.pseudonymise(value)
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
               ) -> Iterator[tuple[int, _RowEvents | SkippedRecord | InvalidRecord]]:
    for line, row in numbered:
        try:
            result = converter.convert(row)
        except _Reject as problem:
            yield line, InvalidRecord(problem.reason, line)
            continue
        yield line, (SkippedRecord(result.reason, line) if isinstance(result, SkippedRecord) else result)


def parse_rows(rows: Iterable[Mapping[str, str]], mapping: CallDetailMapping,
               pseudonymise: Pseudonymise | None = None, *, first_line: int = 2) -> Iterator[ParsedItem]:
    """Each row's events (offered, then its outcome, then ended), or one rejection or skip per row,
    in row order. `first_line` is the line number of the first row (2: after a header line).

    Raises ConfigurationError at once (not on iteration) if the mapping needs a key function and
    none is given; never raises for a bad row."""
    converter = _RowConverter(mapping, pseudonymise)
    return _flatten(_converted(_numbered(rows, first_line), converter))


def _flatten(results: Iterator[tuple[int, _RowEvents | SkippedRecord | InvalidRecord]]) -> Iterator[ParsedItem]:
    for _, result in results:
        if isinstance(result, _RowEvents):
            for _, event in result.events:
                yield event
        else:
            yield result


def iter_events_sorted(rows: Iterable[Mapping[str, str]], mapping: CallDetailMapping,
                       pseudonymise: Pseudonymise | None = None, *, first_line: int = 2) -> Iterator[ParsedItem]:
    """Like parse_rows, but events come out in event-time order (ties: type, then event_id), with
    skips and rejections as soon as their row is read.

    Memory is bounded by the mapping's `rows_sorted_by`: with `date` (rows in nondecreasing date
    order) events are held back about one day, with `anchor` about one call; with `none` the whole
    file is held. A row that breaks the declared order so badly that its events would come out
    before events already yielded is rejected, saying so."""
    converter = _RowConverter(mapping, pseudonymise)
    return _sorted(_converted(_numbered(rows, first_line), converter))


def _sorted(results: Iterator[tuple[int, _RowEvents | SkippedRecord | InvalidRecord]]) -> Iterator[ParsedItem]:
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


# --- files -----------------------------------------------------------------------------------------

def read_file(path: str | Path, mapping: CallDetailMapping, pseudonymise: Pseudonymise | None = None,
              row_count: list[int] | None = None) -> Iterator[ParsedItem]:
    """Every parsed item of a call-detail CSV file, events in event-time order. `row_count`, if
    given, holds the number of rows read so far in its single element.

    Raises ConfigurationError for a mapping that does not fit the file (missing columns, wrong
    encoding, no key function), OSError if the file cannot be read; bad rows are yielded."""
    converter = _RowConverter(mapping, pseudonymise)
    counter = row_count if row_count is not None else [0]
    with open(path, encoding=mapping.encoding, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=mapping.delimiter)
        try:
            header = reader.fieldnames or []
        except UnicodeDecodeError:
            raise ConfigurationError(f"{path} is not {mapping.encoding} text; set csv.encoding in the mapping") from None
        missing = sorted(mapping.columns - set(header))
        if missing:
            raise ConfigurationError(f"{path} has no column(s) {', '.join(missing)} that the mapping "
                                     f"{mapping.source} reads (header: {', '.join(header) or 'empty'})")

        def numbered() -> Iterator[tuple[int, Mapping[str, object]]]:
            end_of_previous = reader.line_num
            try:
                for row in reader:
                    counter[0] += 1
                    yield end_of_previous + 1, row
                    end_of_previous = reader.line_num
            except UnicodeDecodeError:
                raise ConfigurationError(f"{path}: line {end_of_previous + 1} is not {mapping.encoding} text; "
                                         "set csv.encoding in the mapping") from None
            except csv.Error as error:
                raise ConnectorError(f"{path}: line {end_of_previous + 1}: unreadable CSV ({error})") from None

        yield from _sorted(_converted(numbered(), converter))


def convert_file(path: str | Path, mapping_path: str | Path | CallDetailMapping, out_stream: IO[str],
                 pseudonymise: Pseudonymise | None = None) -> ConversionSummary:
    """Convert a call-detail CSV file to canonical JSON Lines on `out_stream`, in event-time order.

    Raises as `read_file` does; bad rows are in the summary."""
    mapping = mapping_path if isinstance(mapping_path, CallDetailMapping) else load_mapping(mapping_path)
    rows = [0]
    events_by_type: dict[str, int] = {}
    skipped: dict[str, int] = {}
    rejected: list[InvalidRecord] = []
    for item in read_file(path, mapping, pseudonymise, rows):
        if isinstance(item, dict):
            out_stream.write(json.dumps(item, separators=(",", ":")) + "\n")
            events_by_type[item["type"]] = events_by_type.get(item["type"], 0) + 1
        elif isinstance(item, SkippedRecord):
            skipped[item.reason] = skipped.get(item.reason, 0) + 1
        else:
            rejected.append(item)
    ordered = {name: events_by_type[name] for name in TYPE_RANK if name in events_by_type}
    return ConversionSummary(rows[0], sum(ordered.values()), ordered, skipped, rejected)

"""The column mapping of a call-detail export (YAML, see mappings/): which columns hold the call id,
the times, the outcome, the queue and the identities; loaded and validated with errors that name
the key at fault."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from connectors.errors import ConfigurationError
from streams.domain.events import ABANDONED, ANSWERED, ENDED, OFFERED, TIMEOUT

OUTCOMES: Final = (ANSWERED, ABANDONED, TIMEOUT)
ROW_ORDERS: Final = ("date", "anchor", "none")
# Dates outside this range are typing errors, and they would not format as RFC 3339 anyway.
MIN_YEAR: Final = 1900
MAX_YEAR: Final = 2999

@dataclass(frozen=True, slots=True)
class FieldRule:
    """How one event field is read: a constant `value`, or a `column` optionally mapped through
    `values` (with a `default` for unmapped cells); cells in `absent` mean "no value"."""

    column: str | None = None
    value: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    default: str | None = None
    absent: frozenset[str] = frozenset({""})


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
    def identity_columns(self) -> tuple[str, ...]:
        """Columns of callers and agents: written only as keyed hashes, so they need the key."""
        return tuple(rule.column for rule in (self.caller, self.agent) if rule is not None and rule.column is not None)



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
        if not isinstance(wrong, int) or not isinstance(right, int) or not MIN_YEAR <= right <= MAX_YEAR:
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
    _known(rule, where, {"column", "value", "values", "default", "absent"})
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


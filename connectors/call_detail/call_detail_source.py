"""`callwatch connect csv PATH --mapping FILE`: a call-detail CSV export (one row per call) read
through its column mapping into the sink, in event-time order. This module owns the file: its
encoding, header and CSV framing; a file it cannot read stops it with one line naming the column or
format (exit 2). Skipped and levelled rows are counted and logged with their lines, bad rows
dead-lettered."""

from __future__ import annotations

import argparse
import csv
import logging
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from connectors.call_detail.call_detail_mapping import CallDetailMapping, load_mapping
from connectors.call_detail.call_detail_parser import LevelledRecord, ParsedItem, in_time_order
from connectors.errors import ConfigurationError, ConnectorError, IgnoredRecord, InvalidRecord
from connectors.privacy import Pseudonymiser, pseudonymiser
from connectors.registry import ConnectorSpec, own_parser
from connectors.sink import DeadLetter, EventSink
from streams.options import OptionTarget, UsageError, env_option
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.csv")

SHOWN_LINES: Final = 10  # line numbers listed per reason in the closing log lines


def read_rows(path: str | Path, mapping: CallDetailMapping, pseudonymiser: Pseudonymiser | None = None,
              row_count: list[int] | None = None) -> Iterator[ParsedItem]:
    """Every parsed item of a call-detail CSV file, events in event-time order. `row_count`, if
    given, holds the number of rows read so far in its single element.

    Raises ConfigurationError when the file does not fit the mapping (missing columns, wrong
    encoding), ConnectorError for a file that is not CSV, OSError if it cannot be opened; bad rows
    are yielded, never raised."""
    counter = row_count if row_count is not None else [0]
    with open(path, encoding=mapping.encoding, newline="") as handle:
        reader = csv.DictReader(handle, delimiter=mapping.delimiter)
        try:
            header = reader.fieldnames or []
        except UnicodeDecodeError:
            raise ConfigurationError(f"{path} is not {mapping.encoding} text; set csv.encoding in the mapping") from None
        except csv.Error as error:
            raise ConnectorError(f"{path}: line 1: unreadable CSV header ({error})") from None
        missing = sorted(mapping.columns - set(header))
        if missing:
            raise ConfigurationError(f"{path} has no column(s) {', '.join(missing)} that the mapping "
                                     f"{mapping.source} reads (header: {', '.join(header) or 'empty'})")

        def rows() -> Iterator[tuple[int, Mapping[str, object]]]:
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

        yield from in_time_order(rows(), mapping, pseudonymiser)


@dataclass
class CallDetailConnector:
    path: str
    mapping: CallDetailMapping
    pseudonymiser: Pseudonymiser | None
    name: str = "csv"
    realtime: bool = False
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    levelled: Counter[str] = field(default_factory=Counter)
    lines: dict[str, list[int | str | None]] = field(default_factory=dict)  # first lines of each note

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        rows = [0]
        for item in _readable(read_rows(self.path, self.mapping, self.pseudonymiser, rows), self.path):
            if isinstance(item, dict):
                sink.send(item, f"{self.path}:{item['event_id']}")
            elif isinstance(item, InvalidRecord):
                sink.dead_letter(DeadLetter.of(self.name, item.reason, f"{self.path}:{item.location}"))
            else:
                self._note(self.skipped if isinstance(item, IgnoredRecord) else self.levelled, item)
            if stop.is_set():
                break
        self.rows = rows[0]
        self._report()

    def _note(self, counts: Counter[str], item: IgnoredRecord | LevelledRecord) -> None:
        counts[item.reason] += 1
        shown = self.lines.setdefault(item.reason, [])
        if len(shown) < SHOWN_LINES:
            shown.append(item.location)

    def _report(self) -> None:
        log.info("%s: %d rows read", self.path, self.rows)
        for kind, counts in (("skipped", self.skipped), ("levelled", self.levelled)):
            for reason, count in counts.items():
                lines = ", ".join(str(line) for line in self.lines[reason])
                more = ", ..." if count > len(self.lines[reason]) else ""
                log.info("%s: %s %d rows: %s (lines %s%s)", self.path, kind, count, reason, lines, more)


def _readable(items: Iterator[ParsedItem], path: str) -> Iterator[ParsedItem]:
    try:
        yield from items
    except OSError as error:
        raise ConnectorError(f"cannot read {path}: {error.strerror or error}") from None


def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--csv-path", env="CALLWATCH_CSV_PATH", help="the call-detail CSV file (connect: PATH)")
    flags = ("--mapping", "--csv-mapping") if own_parser(parser) else ("--csv-mapping",)
    env_option(parser, *flags, dest="csv_mapping", env="CALLWATCH_CSV_MAPPING", metavar="FILE",
               help="YAML column mapping (see connectors/call_detail/mappings/)")


def _build(args: argparse.Namespace, settings: Settings) -> CallDetailConnector:
    path = getattr(args, "path", None) or args.csv_path
    if not path or not args.csv_mapping:
        raise UsageError("give the CSV file (PATH or --csv-path) and its --mapping FILE")
    if not Path(path).is_file():
        raise UsageError(f"no such CSV file: {path}")
    try:
        mapping = load_mapping(args.csv_mapping)
        hide = pseudonymiser(settings.pseudonymisation_key) if mapping.identity_columns else None
    except ConnectorError as error:
        raise UsageError(str(error)) from None
    return CallDetailConnector(path, mapping, hide)


SPEC = ConnectorSpec("csv", "call-detail CSV export via a column mapping", _add_arguments, _build,
                     path_help="the call-detail CSV file (or --csv-path)",
                     example="CALLWATCH_PSEUDONYMISATION_KEY=... callwatch connect csv "
                             "../shared/data/real/anonymous_bank_1999_08.csv --mapping "
                             "connectors/call_detail/mappings/anonymous_bank.yaml --out bank.jsonl")

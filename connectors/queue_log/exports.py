"""The text shapes a queue_log comes in, told apart by their first line: the pipe-delimited file
Asterisk writes (`time|callid|queue|agent|event|data...`, no header), or an export of the database
table with a header line naming its columns: Bicom PBXware's CSV, `\\copy ... CSV HEADER` from psql,
`mysql -B` (tab-separated, NULL written `NULL`), `psql -A` (`|`-separated, a `(N rows)` footer),
psql's aligned table (` | ` between padded cells, a `---+---` ruler) and mysql's boxed table
(`| a | b |` between `+---+---+` borders). Pure: lines in, cells out."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from typing import Final

from connectors.queue_log.queue_log_parser import CSV_COLUMNS, missing_csv_columns

PIPE: Final = "pipe"
EXPORT: Final = "export"
DELIMITERS: Final = (",", "\t", "|", ";")
REQUIRED: Final = tuple(CSV_COLUMNS)
# missing_csv_columns names a column by its first alias (PBXware's); the realtime table's names are clearer.
REALTIME_NAMES: Final = {"date_time": "time", "queue_name": "queuename", "type": "agent"}
# Lines of a table dump that are not rows: rulers and borders, psql's row count.
_DECORATION: Final = re.compile(r"\s*(?:[-+=|\s]*[-=]{3,}[-+=|\s]*|\(\d+ rows?\))\s*")


@dataclass(frozen=True, slots=True)
class Layout:
    """How a file's lines split: its format, and for an export its delimiter."""

    format: str
    delimiter: str = ","
    boxed: bool = False  # mysql's table: every row between a leading and a trailing '|'


def is_decoration(line: str) -> bool:
    return _DECORATION.fullmatch(line) is not None


def split_cells(line: str, delimiter: str, boxed: bool = False) -> list[str] | None:
    """The cells of one export line, stripped; None if it does not split (a broken CSV quote)."""
    if delimiter == "|":
        text = line.strip()
        if boxed and text.startswith("|") and text.endswith("|") and len(text) > 1:
            text = text[1:-1]
        return [cell.strip() for cell in text.split("|")]
    if delimiter == "\t":
        return [cell.strip() for cell in line.split("\t")]
    try:
        return [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter), [])]
    except csv.Error:
        return None


def missing_columns(first_line: str) -> list[str]:
    """When a first line looks like a header (it names two or more queue_log columns, with some
    delimiter) but lacks required ones: those (by their realtime names); else []."""
    for delimiter in DELIMITERS:
        cells = split_cells(first_line, delimiter, boxed=True) or []
        missing = missing_csv_columns(cells)
        if len(cells) > 1 and len(missing) <= len(REQUIRED) - 2:
            return [REALTIME_NAMES.get(name, name) for name in missing]
    return []


def detect_layout(first_line: str) -> Layout | None:
    """The layout a file's first line (after any border) shows; None if it is neither a header
    naming the queue_log columns nor a pipe-delimited record."""
    text = first_line.strip()
    boxed = len(text) > 1 and text.startswith("|") and text.endswith("|")
    for delimiter in DELIMITERS:
        cells = split_cells(first_line, delimiter, boxed)
        if cells and len(cells) > 4 and not missing_csv_columns(cells):
            return Layout(EXPORT, delimiter, boxed and delimiter == "|")
    if first_line.count("|") >= 4:
        return Layout(PIPE, "|")
    return None

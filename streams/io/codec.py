"""The JSON codec used for every event and report line, chosen in one place so the benchmark's
decode-only floor uses exactly what the pipeline uses.

Events are decoded by msgspec straight into `CallEvent` (the known fields, each of the type the
contract allows), several times faster than `json.loads` and a dict, and finished by the domain's
`validate_decoded`. A text that does not fit (unknown fields, wrong types, not JSON at all) is
decoded again by the standard library's `json`, so that what becomes of it, an event with its
unknown fields preserved or a rejection with its reason, is exactly what it always was
(property-tested)."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from math import isfinite
from typing import Any, Final, Iterable

import msgspec

from streams.domain.events import CallEvent, validate_decoded
from streams.domain.figures import REPORT_FIELDS
from streams.domain.interval_report import ReportRow

# The typed decode alone (msgspec's own checks; the time still text): what the benchmarks' floor
# measures. Every reader goes through `decode` or `decode_lines`, which finish the validation.
decode_fields: Final = msgspec.json.Decoder(CallEvent).decode
_decode_any: Final = msgspec.json.Decoder().decode


def decode(text: str | bytes) -> Any:
    """A JSON text (bytes: UTF-8, undecodable bytes replaced, as text mode reads files) as its
    validated `CallEvent` when it fits one, else as `json.loads` decodes it (raising its ValueError,
    or RecursionError, when it is not JSON). `parse_event` takes either."""
    try:
        event = decode_fields(text)
        validate_decoded([event])
        return event
    except (ValueError, RecursionError):  # msgspec's errors and InvalidEvent are ValueErrors
        pass
    return json.loads(text.decode("utf-8", "replace") if type(text) is bytes else text)


def decode_lines(lines: Iterable[bytes | str]) -> list[CallEvent]:
    """Every line as its validated CallEvent, decoded without a Python-level call per line; raises
    ValueError (or RecursionError) when any line is not a well-typed, valid event: the caller then
    judges the lines one by one (`decode` and `parse_event`), which give each line's reason."""
    events: list[CallEvent] = list(map(decode_fields, lines))
    validate_decoded(events)
    return events


def decode_json(text: str) -> Any:
    """Any JSON text exactly as `json.loads` decodes it (the same values, the same errors), by
    msgspec when it can (three times as fast): for a reader that needs the object itself."""
    try:
        return _decode_any(text)
    except (ValueError, RecursionError):
        pass
    return json.loads(text)


# What json.dumps(obj, separators=(",", ":"), ensure_ascii=False) does, without building an encoder
# per call (about 1 us of the 7 a report row costs to encode).
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(obj: Any) -> str:
    return _encoder.encode(obj)


# A report row has a fixed shape (ReportRow, Figures), so its JSON is one format string with a slot
# per column: the same text as encode(row.as_dict()) for half the cost (a month's replay writes a
# row for every 13 events). Strings go through the encoder's own escaping (encode_basestring is
# what it uses without ensure_ascii), counts are ints (%s writes them as the encoder does) and the
# other numbers go through _number.
_ROW_FORMAT: Final = "{" + ",".join(f"{encode_basestring(name)}:%s" for name in REPORT_FIELDS) + "}"
_float_text = float.__repr__


def _number(value: float | None) -> str:
    if value is None:
        return "null"
    if isfinite(value):
        return _float_text(value)  # what the encoder writes for a float
    return encode(value)  # Infinity, -Infinity or NaN, spelt as the encoder spells them


def encode_report_row(row: ReportRow) -> str:
    """`encode(row.as_dict())`, without the dict."""
    text, number, f = encode_basestring, _number, row.figures
    return _ROW_FORMAT % (
        text(row.window_start), text(row.window_end), text(row.site), text(row.line), text(row.queue),
        f.arrivals, f.offered, f.answered, f.abandoned, f.short_abandoned, f.timed_out, f.transferred,
        f.lost, f.answered_within_sl, number(f.sl_threshold_s), text(f.sl_formula),
        number(f.service_level), number(f.abandonment_rate), number(f.abandonment_rate_excl_short),
        number(f.asa_s), number(f.answer_p50_s), number(f.answer_p90_s), number(f.answer_p95_s),
        number(f.answer_max_s), number(f.abandon_wait_mean_s), f.band_lt10, f.band_10_60, f.band_ge60)

"""Call-detail file connector: one-row-per-call CSV exports to canonical events, via a YAML
column mapping (see mappings/)."""

from connectors.call_detail.call_detail_parser import (
    CallDetailMapping,
    ConversionSummary,
    FieldRule,
    ParsedItem,
    Pseudonymise,
    SkippedRecord,
    SkipRule,
    TimeRule,
    convert_file,
    hmac_pseudonymiser,
    iter_events_sorted,
    load_mapping,
    mapping_from_dict,
    parse_rows,
)

__all__ = [
    "CallDetailMapping",
    "ConversionSummary",
    "FieldRule",
    "ParsedItem",
    "Pseudonymise",
    "SkipRule",
    "SkippedRecord",
    "TimeRule",
    "convert_file",
    "hmac_pseudonymiser",
    "iter_events_sorted",
    "load_mapping",
    "mapping_from_dict",
    "parse_rows",
]

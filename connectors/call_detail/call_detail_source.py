"""`callwatch connect csv`: a call-detail CSV export (one row per call) through its column mapping,
into the sink; skipped rows are counted, bad rows dead-lettered."""

from __future__ import annotations

import argparse
import logging
import threading
from dataclasses import dataclass, field

from connectors.call_detail.call_detail_parser import CallDetailMapping, SkippedRecord, load_mapping, read_file
from connectors.errors import ConnectorError, InvalidRecord
from connectors.privacy import Pseudonymise, hmac_pseudonymiser
from connectors.registry import ConnectorSpec
from connectors.sink import DeadLetter, EventSink
from streams.options import OptionTarget, UsageError, env_option
from streams.settings import Settings

log = logging.getLogger("callwatch.connect.csv")


@dataclass
class CallDetailConnector:
    path: str
    mapping: CallDetailMapping
    pseudonymise: Pseudonymise | None
    name: str = "csv"
    realtime: bool = False
    skipped: dict[str, int] = field(default_factory=dict)

    def run(self, sink: EventSink, stop: threading.Event) -> None:
        rows = [0]
        for item in read_file(self.path, self.mapping, self.pseudonymise, rows):
            if isinstance(item, dict):
                sink.send(item)
            elif isinstance(item, SkippedRecord):
                self.skipped[item.reason] = self.skipped.get(item.reason, 0) + 1
            elif isinstance(item, InvalidRecord):
                sink.dead_letter(DeadLetter.of(self.name, item.reason, f"{self.path}:{item.location}"))
            if stop.is_set():
                return
        for reason, count in self.skipped.items():
            log.info("%s: skipped %d rows: %s", self.path, count, reason)
        log.info("%s: %d rows read", self.path, rows[0])


def _add_arguments(parser: OptionTarget) -> None:
    env_option(parser, "--csv-path", env="CALLWATCH_CSV_PATH", help="the call-detail CSV file")
    env_option(parser, "--csv-mapping", env="CALLWATCH_CSV_MAPPING",
               help="YAML column mapping (see connectors/call_detail/mappings/)")


def _build(args: argparse.Namespace, settings: Settings) -> CallDetailConnector:
    if not args.csv_path or not args.csv_mapping:
        raise UsageError("--csv-path and --csv-mapping are both required")
    try:
        mapping = load_mapping(args.csv_mapping)
        pseudonymise = (hmac_pseudonymiser(settings.pseudonymisation_key)
                        if mapping.pseudonymised_columns else None)
    except (ConnectorError, OSError) as error:
        raise UsageError(str(error)) from None
    return CallDetailConnector(args.csv_path, mapping, pseudonymise)


SPEC = ConnectorSpec("csv", "call-detail CSV export via a column mapping", _add_arguments, _build,
                     example="CALLWATCH_PSEUDONYMISATION_KEY=... callwatch connect csv --csv-path "
                             "../shared/data/real/anonymous_bank_1999_08.csv --csv-mapping "
                             "connectors/call_detail/mappings/anonymous_bank.yaml --out bank.jsonl")

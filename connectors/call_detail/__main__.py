"""`python -m connectors.call_detail FILE --mapping M`: canonical JSON Lines on stdout, a one-line
summary on stderr; exit 0, 1 if some rows were rejected, 2 for bad input."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from connectors.call_detail.call_detail_parser import convert_file, hmac_pseudonymiser, load_mapping
from connectors.errors import ConnectorError

KEY_VARIABLE = "CALLWATCH_PSEUDONYMISATION_KEY"
MAPPING_VARIABLE = "CALLWATCH_CSV_MAPPING"
SHOWN_REJECTIONS = 10


def _key(env: dict[str, str] | os._Environ[str]) -> bytes | None:
    if env.get(KEY_VARIABLE):
        return env[KEY_VARIABLE].encode("utf-8")
    path = env.get(KEY_VARIABLE + "_FILE")
    if not path:
        return None
    try:
        return Path(path).read_bytes().strip() or None
    except OSError as error:
        raise ConnectorError(f"cannot read {KEY_VARIABLE}_FILE {path}: {error.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.call_detail",
        description="Convert a call-detail CSV file (one row per call) to canonical JSON Lines events "
                    "on stdout, in event-time order.",
        epilog=f"Identifiers the mapping pseudonymises are hashed with the key in {KEY_VARIABLE} "
               f"(or a file named by {KEY_VARIABLE}_FILE).")
    parser.add_argument("file", help="the CSV file")
    parser.add_argument("--mapping", default=os.environ.get(MAPPING_VARIABLE),
                        help=f"the YAML column mapping [env {MAPPING_VARIABLE}]")
    args = parser.parse_args(argv)
    if not args.mapping:
        parser.error(f"--mapping is required (or set {MAPPING_VARIABLE})")
    try:
        mapping = load_mapping(args.mapping)
        key = _key(os.environ)
        if mapping.pseudonymised_columns and key is None:
            raise ConnectorError(f"the mapping hashes column(s) {', '.join(mapping.pseudonymised_columns)}: "
                                 f"set {KEY_VARIABLE} (or {KEY_VARIABLE}_FILE) to a secret key")
        summary = convert_file(args.file, mapping, sys.stdout, hmac_pseudonymiser(key) if key else None)
    except (ConnectorError, OSError) as error:
        message = f"{error.filename}: {error.strerror}" if isinstance(error, OSError) and error.filename else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    for rejection in summary.rejected[:SHOWN_REJECTIONS]:
        print(f"rejected: {rejection}", file=sys.stderr)
    if len(summary.rejected) > SHOWN_REJECTIONS:
        print(f"rejected: ... and {len(summary.rejected) - SHOWN_REJECTIONS} more", file=sys.stderr)
    print(summary.line(Path(args.file).name), file=sys.stderr)
    return 1 if summary.rejected else 0


if __name__ == "__main__":
    sys.exit(main())

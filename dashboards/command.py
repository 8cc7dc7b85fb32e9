"""`callwatch dashboards build|push`: writes the generated dashboards, rule file and Grafana
provisioning files (or checks the committed ones are current), and uploads the dashboards to a
Grafana. The Grafana URL and token come from the environment; the token is never printed."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from streams.options import EXIT_OK, EXIT_REJECTED, Parser, UsageError, env_option, formatter, secret_file


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "dashboards", help="build and push Grafana dashboards", formatter_class=formatter,
        description=("Grafana dashboards and alert rules as code (dashboards/).\n\n"
                     "  callwatch dashboards build            write dashboards/json/, rules, provisioning\n"
                     "  callwatch dashboards build --check    exit 1 if a committed file is out of date\n"
                     "  CALLWATCH_GRAFANA_URL=https://grafana.example.org CALLWATCH_GRAFANA_TOKEN=... \\\n"
                     "      callwatch dashboards push"))
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    actions.required = True

    build = actions.add_parser(
        "build", help="write the generated files (or --check them)", formatter_class=formatter,
        description=("Build the three dashboards (dashboards/json/*.json), the Prometheus rules "
                     "(deploy/prometheus/rules/callwatch.yml), the Grafana provisioning files "
                     "(deploy/grafana/provisioning/) and the metric list (docs/metrics.md) from "
                     "dashboards/*.py and streams/metrics.py."))
    build.add_argument("--check", action="store_true",
                       help="write nothing; exit 1 and list the files that differ from a rebuild")
    env_option(build, "--root", env="CALLWATCH_DASHBOARDS_ROOT",
               help="repository to write into (default: the checkout callwatch runs from)")
    build.set_defaults(handler=_build)

    push = actions.add_parser(
        "push", help="upload the dashboards to Grafana", formatter_class=formatter,
        description=("Upload the dashboards to Grafana's HTTP API, into one folder, replacing earlier "
                     "versions (same uids). The token (a service-account token with dashboard write "
                     "rights) comes from CALLWATCH_GRAFANA_TOKEN, or from the file named by "
                     "CALLWATCH_GRAFANA_TOKEN_FILE; it is never taken from the command line or printed."))
    env_option(push, "--url", env="CALLWATCH_GRAFANA_URL", help="Grafana base URL, e.g. https://grafana.example.org")
    env_option(push, "--token-file", env="CALLWATCH_GRAFANA_TOKEN_FILE",
               help="file holding the API token (else CALLWATCH_GRAFANA_TOKEN)")
    env_option(push, "--folder", env="CALLWATCH_GRAFANA_FOLDER", default="callwatch",
               help="uid of the folder the dashboards go into (created if missing)")
    push.set_defaults(handler=_push)


def _root(args: argparse.Namespace) -> Path:
    from .build import repository_root

    if args.root:
        root = Path(args.root)
        if not (root / "dashboards").is_dir():
            raise UsageError(f"--root: {root} is not a callwatch checkout (no dashboards/ folder)")
        return root
    checkout = repository_root()
    if checkout is None:
        raise UsageError("callwatch is not running from a checkout: give --root (or CALLWATCH_DASHBOARDS_ROOT)")
    return checkout


def _build(args: argparse.Namespace) -> int:
    from .build import outdated, write

    root = _root(args)
    if args.check:
        stale = outdated(root)
        for path in stale:
            sys.stderr.write(f"callwatch dashboards: {path} is out of date: run `callwatch dashboards build`\n")
        return EXIT_REJECTED if stale else EXIT_OK
    changed = write(root)
    for path in changed:
        sys.stdout.write(f"wrote {path}\n")
    sys.stdout.write(f"callwatch dashboards: {len(changed)} file(s) written, the others already up to date\n")
    return EXIT_OK


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        return secret_file(args.token_file, "--token-file")
    token = os.environ.get("CALLWATCH_GRAFANA_TOKEN", "").strip()
    if not token:
        raise UsageError("no Grafana token: set CALLWATCH_GRAFANA_TOKEN or CALLWATCH_GRAFANA_TOKEN_FILE")
    return token


def _push(args: argparse.Namespace) -> int:
    from urllib.parse import urlparse

    from .build import dashboards
    from .push import PushError, push

    if not args.url:
        raise UsageError("no Grafana URL: give --url or set CALLWATCH_GRAFANA_URL")
    parsed = urlparse(args.url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"--url must be an http(s) URL, not {args.url!r}")
    if parsed.password:
        raise UsageError("--url must not carry a password: use CALLWATCH_GRAFANA_TOKEN")
    token = _token(args)
    try:
        pushed = push(args.url, token, dashboards(), folder_uid=args.folder)
    except PushError as error:
        sys.stderr.write(f"callwatch dashboards: {error}\n")
        return EXIT_REJECTED
    for board in pushed:
        sys.stdout.write(f"pushed {board.uid} ({board.title}) version {board.version}: {board.url}\n")
    return EXIT_OK

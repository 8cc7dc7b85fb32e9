"""Command-line option helpers shared by the `callwatch` command and the connectors' option sets:
every option can come from an environment variable named in its help."""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by Ctrl-C (128 + SIGINT)


class UsageError(Exception):
    """Bad options or configuration: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No abbreviations: `--ami-secret x` must never be taken for `--ami-secret-file x` and
        # then echoed in an error message.
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # One line that says what is wrong (argparse would print the whole usage first).
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


OptionTarget = argparse.ArgumentParser | argparse._ArgumentGroup


def env_option(parser: OptionTarget, *flags: str, env: str, help: str, **kwargs: Any) -> None:
    """An option whose default comes from the environment variable `env`, named in its help."""
    default = os.environ.get(env, kwargs.pop("default", None))
    if kwargs.get("action") in ("store_true", "store_false"):
        if env in os.environ:
            default = os.environ[env].strip().lower() in ("1", "true", "yes", "on")
        shown = ""
    else:
        shown = f" (default: {default})" if default not in (None, "", False) else ""
    parser.add_argument(*flags, default=default, help=f"{help}{shown} [env: {env}]", **kwargs)


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def number(value: object, name: str, kind: type = float, minimum: float | None = None) -> Any:
    """Convert an option value, or raise UsageError naming the option."""
    try:
        result = kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a {'whole number' if kind is int else 'number'}, not {value!r}") from None
    if minimum is not None and result < minimum:
        raise UsageError(f"{name} must be at least {minimum:g}, not {result!r}")
    return result


def instant_ms(text: str, name: str) -> int:
    """An instant option in epoch milliseconds: RFC 3339, a date (its midnight UTC) or a time without
    an offset (taken as UTC); UsageError naming the option otherwise."""
    from streams.domain.events import InvalidEvent, parse_ts

    candidate = text if "T" in text else text + "T00:00:00Z"
    if len(candidate) == 19:
        candidate += "Z"
    try:
        return parse_ts(candidate)
    except InvalidEvent:
        raise UsageError(f"{name}: not an RFC 3339 time with offset: {text!r}") from None


def duration(value: object, name: str, minimum_s: float = 0.0) -> float:
    """A time option in seconds, by the one duration grammar ('20s', '5m', '1h', '1d'; a bare number
    is seconds), or UsageError naming the option."""
    from streams.domain.config import InvalidConfig
    from streams.domain.windows import parse_duration_s

    try:
        seconds = parse_duration_s(str(value))
    except InvalidConfig as error:
        raise UsageError(f"{name}: {error}") from None
    if seconds < minimum_s:
        raise UsageError(f"{name} must be at least {minimum_s:g} s, not {value!r}")
    return seconds


def window(value: object, name: str = "--window") -> int:
    """A report interval in seconds: a duration by the same grammar ('15m', '900', '1h') that is one
    of the SPEC's interval sizes, or UsageError naming the option."""
    from streams.domain.windows import INTERVALS_S

    seconds = duration(value, name)
    if seconds not in INTERVALS_S.values():
        raise UsageError(f"{name}: window must be one of {', '.join(INTERVALS_S)}, not {value!r}")
    return int(seconds)


def secret_file(path: str, option: str) -> str:
    """The secret held in the file given to `option`, stripped; UsageError if it cannot be read or is
    empty (a secret is never an option's value: the command line is visible to every user)."""
    from pathlib import Path

    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {option} {path}: {getattr(error, 'strerror', None) or error}") from None
    if not secret:
        raise UsageError(f"{option} {path} is empty")
    return secret

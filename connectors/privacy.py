"""Pseudonymisation inside connectors: caller numbers (and other identifiers) become a keyed hash
before anything leaves the connector, and raw text kept for dead letters has numbers masked."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Callable

from connectors.errors import ConfigurationError

Pseudonymise = Callable[[str], str]

# Runs of 5 or more digits (optionally with +, spaces, dashes or dots between them) look like
# phone numbers or account ids; shorter runs (queue numbers, extensions, times) are kept readable.
_NUMBER_LIKE = re.compile(r"\+?\d(?:[\d\s.\-()]{3,}\d)")


def hmac_pseudonymiser(key: bytes | None) -> Pseudonymise:
    """'h:' + 16 hex of HMAC-SHA256 under the secret key. Without a key there is no safe hash:
    a connector whose source carries numbers must not start."""
    if not key:
        raise ConfigurationError(
            "this source carries caller numbers: set CALLWATCH_PSEUDONYMISATION_KEY or "
            "CALLWATCH_PSEUDONYMISATION_KEY_FILE to a secret key")

    def pseudonymise(value: str) -> str:
        return "h:" + hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]

    return pseudonymise


def _mask(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group(0))
    return match.group(0) if digits < 5 else "<number>"


def redact_numbers(text: str) -> str:
    """Mask number-like runs in raw source text kept for dead letters and logs."""
    return _NUMBER_LIKE.sub(_mask, text)

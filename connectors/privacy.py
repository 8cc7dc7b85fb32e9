"""Pseudonymisation inside connectors, the one rule for every source: a caller's number and a
platform's agent identity (an Asterisk interface, a queue_log agent, a Twilio WorkerSid, an Amazon
Connect agent ARN, a CSV handler column) become keyed hashes before anything leaves the connector,
and raw text kept for dead letters and logs has number-like runs masked."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Final

from connectors.errors import ConfigurationError

CALLER_PREFIX: Final = "h:"   # the schema's mark of a hashed caller (SPEC section 2)
AGENT_PREFIX: Final = "a:"
_HEX_CHARS: Final = 16
# Separators people and platforms write inside numbers: '+44 (0)7700-900.123' is one number.
_NUMBER_SEPARATORS: Final = str.maketrans("", "", " \t-.()/")
# Runs of 5 or more digits (optionally with +, spaces, dashes or dots between them) look like
# phone numbers or account ids; shorter runs (queue numbers, extensions, times) are kept readable,
# unless a source's callers are extensions (AMI: min_digits=3).
_NUMBER_LIKE: Final = re.compile(r"\+?\d(?:[\d\s.\-()]*\d)?")
_CACHE_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class Pseudonymiser:
    """Keyed hashes (HMAC-SHA256, 16 hex) of callers ('h:...') and agents ('a:...'). The same
    identity gives the same pseudonym from every connector under the same key, so that an agent
    seen by AMI and by queue_log is one agent; without the key nobody can go back."""

    key: bytes = field(repr=False)
    _agents: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            raise ConfigurationError(
                "this source carries caller numbers or agent identities: set CALLWATCH_PSEUDONYMISATION_KEY "
                "or CALLWATCH_PSEUDONYMISATION_KEY_FILE to a secret key")

    def _digest(self, text: str) -> str:
        # surrogatepass: text from a str API may hold a lone surrogate; it still hashes, never raises.
        return hmac.new(self.key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:_HEX_CHARS]

    def caller(self, number: str) -> str | None:
        """'h:' + hash of the number without separators; None for a withheld caller (no digit:
        empty, 'anonymous', '<unknown>')."""
        compact = number.translate(_NUMBER_SEPARATORS)
        if not any(ch.isdigit() for ch in compact):
            return None
        return CALLER_PREFIX + self._digest(compact)

    def agent(self, identity: str) -> str | None:
        """'a:' + hash of the platform's agent identity; None when there is none."""
        identity = identity.strip()
        if not identity:
            return None
        pseudonym = self._agents.get(identity)
        if pseudonym is None:
            pseudonym = AGENT_PREFIX + self._digest("agent:" + identity)
            if len(self._agents) >= _CACHE_LIMIT:
                self._agents.clear()
            self._agents[identity] = pseudonym
        return pseudonym


def pseudonymiser(key: bytes | None) -> Pseudonymiser:
    """The pseudonymiser of a source that carries numbers or agents; ConfigurationError without a key."""
    return Pseudonymiser(key or b"")


def redact_numbers(text: str, min_digits: int = 5) -> str:
    """Mask number-like runs of `min_digits` digits or more in raw source text kept for dead letters
    and logs: the one masking rule (DeadLetter.of applies it to every payload)."""

    def mask(match: re.Match[str]) -> str:
        digits = sum(ch.isdigit() for ch in match.group(0))
        return match.group(0) if digits < min_digits else "<number>"

    return _NUMBER_LIKE.sub(mask, text)


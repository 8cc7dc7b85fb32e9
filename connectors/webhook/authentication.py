"""Who may post to the webhook, each platform by its own scheme, and replay protection. Pure: headers,
body and the time in, None (authentic) or the reason to refuse out; nothing raises.

- /v1/events: Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`,
  HMAC-SHA256 of "id.timestamp.body" under the `whsec_...` secret).
- /v1/twilio/taskrouter: `X-Twilio-Signature`, base64 HMAC-SHA1 under the account's Auth Token of the
  URL Twilio called followed by every form parameter, sorted by name, as name + value.
- /v1/amazon-connect: what an EventBridge API destination's connection sends: an API key header,
  HTTP Basic, or a bearer token this server issued at /v1/oauth/token for the OAuth client
  credentials grant (tokens are stateless: expiry and an HMAC under a key derived from the client
  secret, so they survive a restart and need no store)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
from dataclasses import dataclass, field
from typing import Final, Mapping, Sequence

STANDARD_ID: Final = "webhook-id"
STANDARD_TIMESTAMP: Final = "webhook-timestamp"
STANDARD_SIGNATURE: Final = "webhook-signature"
STANDARD_SECRET_PREFIX: Final = "whsec_"
TWILIO_SIGNATURE: Final = "X-Twilio-Signature"
BEARER_PREFIX: Final = "cw1."
MIN_SECRET_BYTES: Final = 16
_MAX_TIMESTAMP_DIGITS: Final = 12
_MAX_ID_CHARS: Final = 256


# --- secrets ----------------------------------------------------------------------------------------

def standard_webhooks_secret(text: str) -> bytes:
    """The key bytes of a 'whsec_<base64>' secret; ValueError saying what is wrong."""
    text = text.strip()
    if not text.startswith(STANDARD_SECRET_PREFIX):
        raise ValueError("must be a Standard Webhooks secret: 'whsec_' followed by base64 "
                         "(e.g. echo whsec_$(openssl rand -base64 32))")
    try:
        key = base64.b64decode(text[len(STANDARD_SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not 'whsec_' followed by valid base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"is too short: use at least {MIN_SECRET_BYTES} random bytes (openssl rand -base64 32)")
    return key


# --- Standard Webhooks --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Verified:
    """An authentic request: the id the sender gave it (or a digest of it) and its time, for the
    replay guard."""

    request_id: str
    timestamp_s: float


def standard_webhooks_signature(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """The 'v1,<base64>' a sender puts in webhook-signature."""
    signed = f"{message_id}.{timestamp}.".encode("utf-8", "replace") + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def verify_standard_webhooks(key: bytes, headers: Mapping[str, str], body: bytes, now_s: float,
                             tolerance_s: float) -> Verified | str:
    """The request's id and time if it is signed by the secret holder within `tolerance_s` of
    `now_s`; else the reason to refuse it."""
    message_id, stamp, offered = (headers.get(name, "").strip() for name in
                                  (STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE))
    for name, value in ((STANDARD_ID, message_id), (STANDARD_TIMESTAMP, stamp), (STANDARD_SIGNATURE, offered)):
        if not value:
            return f"unsigned: no {name} header"
    if len(message_id) > _MAX_ID_CHARS:
        return f"bad id: {STANDARD_ID} is longer than {_MAX_ID_CHARS} characters"
    stale = _stale(stamp, STANDARD_TIMESTAMP, now_s, tolerance_s)
    if stale:
        return stale
    expected = standard_webhooks_signature(key, message_id, stamp, body).encode("ascii")
    # Space-separated signatures: a sender rolling its secret signs with both.
    if not any(hmac.compare_digest(expected, part.encode("utf-8", "replace")) for part in offered.split()):
        return "bad signature: does not match the id, timestamp and body"
    return Verified(message_id, float(stamp))


def _stale(stamp: str, name: str, now_s: float, tolerance_s: float) -> str:
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _MAX_TIMESTAMP_DIGITS):
        return f"bad timestamp: {name} must be whole Unix seconds"
    return stale_reason(int(stamp), now_s, tolerance_s)


def stale_reason(at_s: float, now_s: float, tolerance_s: float) -> str:
    """'' when `at_s` is within `tolerance_s` of `now_s`, else the reason to refuse it."""
    skew_s = now_s - at_s
    if abs(skew_s) <= tolerance_s:
        return ""
    where = "behind" if skew_s > 0 else "ahead of"
    return f"stale timestamp: {abs(skew_s):.0f} s {where} the server clock (tolerance {tolerance_s:g} s)"


# --- Twilio -----------------------------------------------------------------------------------------

def twilio_signature(auth_token: bytes, url: str, params: Sequence[tuple[str, str]]) -> str:
    """The X-Twilio-Signature of a form POST to `url` with `params`."""
    signed = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(auth_token, signed.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


def verify_twilio(auth_token: bytes, signature: str | None, url: str, params: Sequence[tuple[str, str]]) -> str:
    """'' when Twilio signed this form POST to `url`, else the reason to refuse it."""
    if not signature:
        return f"unsigned: no {TWILIO_SIGNATURE} header"
    expected = twilio_signature(auth_token, url, params).encode("ascii")
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        return f"bad signature: {TWILIO_SIGNATURE} does not match the URL {url} and the form fields"
    return ""


# --- EventBridge API destinations ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ApiDestinationAuth:
    """The one authorisation an EventBridge connection was set up with: `kind` is 'api-key' (header
    `name` must carry `secret`), 'basic' (user `name`, password `secret`) or 'oauth' (client id
    `name`, client secret `secret`; requests carry tokens from issue_token)."""

    kind: str
    name: str
    secret: bytes = field(repr=False)
    token_lifetime_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.kind not in ("api-key", "basic", "oauth"):
            raise ValueError(f"unknown API destination authorisation {self.kind!r}")

    def _token_key(self) -> bytes:
        return hmac.new(self.secret, b"callwatch oauth token key", hashlib.sha256).digest()

    def issue_token(self, now_s: float) -> tuple[str, int]:
        """A bearer token valid for token_lifetime_s, and that lifetime in whole seconds."""
        expires = str(int(now_s + self.token_lifetime_s))
        mac = hmac.new(self._token_key(), expires.encode("ascii"), hashlib.sha256).hexdigest()
        return f"{BEARER_PREFIX}{expires}.{mac}", int(self.token_lifetime_s)

    def client_authentic(self, authorization: str | None, form: Mapping[str, str]) -> bool:
        """The token endpoint's check of the client id and secret, from HTTP Basic (what
        EventBridge sends) or the client_id / client_secret form fields."""
        user, password = _basic(authorization)
        if user is None:
            user, password = form.get("client_id"), form.get("client_secret")
        return user is not None and password is not None and _same(user, self.name) and _same(password, self.secret)

    def verify(self, headers: Mapping[str, str], now_s: float) -> str:
        """'' when the request carries this connection's credentials, else the reason to refuse it."""
        if self.kind == "api-key":
            value = headers.get(self.name)
            if value is None:
                return f"unauthenticated: no {self.name} header"
            return "" if _same(value, self.secret) else f"bad credentials: wrong {self.name}"
        authorization = headers.get("Authorization")
        if not authorization:
            return "unauthenticated: no Authorization header"
        if self.kind == "basic":
            user, password = _basic(authorization)
            if user is None or password is None:
                return "unauthenticated: Authorization is not Basic"
            ok = _same(user, self.name) & _same(password, self.secret)
            return "" if ok else "bad credentials: wrong user name or password"
        scheme, _space, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.startswith(BEARER_PREFIX):
            return "unauthenticated: Authorization is not a Bearer token from /v1/oauth/token"
        expires, _dot, mac = token[len(BEARER_PREFIX):].partition(".")
        expected = hmac.new(self._token_key(), expires.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
        if not (expires.isascii() and expires.isdigit()) or not _same(mac, expected.encode("ascii")):
            return "bad credentials: the bearer token was not issued here"
        if int(expires) < now_s:
            return "bad credentials: the bearer token has expired"
        return ""


def _basic(authorization: str | None) -> tuple[str | None, str | None]:
    scheme, _space, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else (None, None)


def _same(offered: str, expected: str | bytes) -> bool:
    wanted = expected if isinstance(expected, bytes) else expected.encode("utf-8")
    return hmac.compare_digest(offered.encode("utf-8", "replace"), wanted)


# --- replays -----------------------------------------------------------------------------------------

class ReplayGuard:
    """Request ids already accepted, each kept until its timestamp leaves the tolerance window (from
    then on the timestamp check refuses it anyway). Bounded: at `capacity`, the entry nearest its
    expiry is forgotten first, so memory stays flat under any request rate."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._capacity = max(1, capacity)
        self._expiries: list[tuple[float, str]] = []
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, request_id: str, expires_s: float, now_s: float) -> bool:
        """True (and remembered) the first time `request_id` is presented; False for a replay."""
        while self._expiries and self._expiries[0][0] < now_s:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        if request_id in self._seen:
            return False
        while len(self._seen) >= self._capacity and self._expiries:
            self._seen.discard(heapq.heappop(self._expiries)[1])
        heapq.heappush(self._expiries, (expires_s, request_id))
        self._seen.add(request_id)
        return True

    def forget(self, request_id: str) -> None:
        """Make an id usable again: its request was not accepted (the sink failed), so the sender's
        unchanged retry must not be taken for a replay."""
        self._seen.discard(request_id)

"""The webhook's authentication, pure: Standard Webhooks and Twilio signatures against the vectors
the two publish, EventBridge API destination credentials (API key, Basic, OAuth client credentials
tokens), the replay guard, and fuzzing: no header or body makes a check raise or pass unsigned."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.webhook.authentication import (
    ApiDestinationAuth, ReplayGuard, Verified, standard_webhooks_secret, standard_webhooks_signature, twilio_signature,
    verify_standard_webhooks, verify_twilio)

# The Standard Webhooks reference test vector (its libraries' tests use the same one).
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID, STANDARD_AT, STANDARD_BODY = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# Twilio's documented example (https://www.twilio.com/docs/usage/security#validating-requests).
TWILIO_TOKEN, TWILIO_URL = b"12345", "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+12349013030"), ("Digits", "1234"),
                 ("From", "+12349013030"), ("To", "+18005551212")]
TWILIO_EXPECTED = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
KEY = standard_webhooks_secret(STANDARD_SECRET)


def standard_headers(message_id: str = STANDARD_ID, at_s: int = STANDARD_AT, signature: str = STANDARD_SIGNATURE,
                     ) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(at_s), "webhook-signature": signature}


def test_standard_webhooks_reference_vector() -> None:
    assert standard_webhooks_signature(KEY, STANDARD_ID, str(STANDARD_AT), STANDARD_BODY) == STANDARD_SIGNATURE
    assert verify_standard_webhooks(KEY, standard_headers(), STANDARD_BODY, STANDARD_AT + 10, 300) == Verified(
        STANDARD_ID, STANDARD_AT)
    # Several signatures, space-separated, while a sender rolls its secret.
    rolled = standard_headers(signature=f"v1,bm90LXRoaXMtb25l {STANDARD_SIGNATURE}")
    assert isinstance(verify_standard_webhooks(KEY, rolled, STANDARD_BODY, STANDARD_AT, 300), Verified)


@pytest.mark.parametrize(("headers", "body", "now_s", "reason"), [
    ({}, STANDARD_BODY, STANDARD_AT, "unsigned: no webhook-id header"),
    ({"webhook-id": "m"}, STANDARD_BODY, STANDARD_AT, "unsigned: no webhook-timestamp header"),
    (standard_headers(signature=""), STANDARD_BODY, STANDARD_AT, "unsigned: no webhook-signature header"),
    (standard_headers(), STANDARD_BODY, STANDARD_AT + 301, "stale timestamp: 301 s behind the server clock"),
    (standard_headers(), STANDARD_BODY, STANDARD_AT - 301, "stale timestamp: 301 s ahead of the server clock"),
    ({**standard_headers(), "webhook-timestamp": "1614265330.5"}, STANDARD_BODY, STANDARD_AT, "bad timestamp"),
    (standard_headers(), STANDARD_BODY + b" ", STANDARD_AT, "bad signature"),
    (standard_headers(message_id="msg_other"), STANDARD_BODY, STANDARD_AT, "bad signature"),  # the id is signed
    (standard_headers(signature=STANDARD_SIGNATURE.replace("v1,", "v1a,")), STANDARD_BODY, STANDARD_AT,
     "bad signature"),
])
def test_standard_webhooks_refusals_say_why(headers: dict[str, str], body: bytes, now_s: float, reason: str) -> None:
    result = verify_standard_webhooks(KEY, headers, body, now_s, 300)
    assert isinstance(result, str) and result.startswith(reason), result


@pytest.mark.parametrize(("secret", "wrong"), [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "'whsec_' followed by base64"), ("whsec_not base64!", "valid base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "too short")])
def test_standard_webhooks_secrets_must_be_whsec_base64(secret: str, wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        standard_webhooks_secret(secret)


def test_twilio_documented_example() -> None:
    assert twilio_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS) == TWILIO_EXPECTED
    assert verify_twilio(TWILIO_TOKEN, TWILIO_EXPECTED, TWILIO_URL, list(reversed(TWILIO_PARAMS))) == ""
    assert verify_twilio(TWILIO_TOKEN, None, TWILIO_URL, TWILIO_PARAMS) == "unsigned: no X-Twilio-Signature header"
    assert verify_twilio(TWILIO_TOKEN, TWILIO_EXPECTED, TWILIO_URL.replace("https", "http"), TWILIO_PARAMS
                         ).startswith("bad signature")  # the URL is signed: a proxy must be told (--webhook-public-url)
    assert verify_twilio(b"another-token", TWILIO_EXPECTED, TWILIO_URL, TWILIO_PARAMS).startswith("bad signature")
    assert verify_twilio(TWILIO_TOKEN, TWILIO_EXPECTED, TWILIO_URL, TWILIO_PARAMS + [("Extra", "")]
                         ).startswith("bad signature")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_api_destination_api_key_and_basic() -> None:
    api_key = ApiDestinationAuth("api-key", "x-api-key", b"0123456789abcdef-key")
    assert api_key.verify({"x-api-key": "0123456789abcdef-key"}, 0) == ""
    assert api_key.verify({}, 0) == "unauthenticated: no x-api-key header"
    assert api_key.verify({"x-api-key": "guess"}, 0) == "bad credentials: wrong x-api-key"
    user = ApiDestinationAuth("basic", "eventbridge", b"a-long-enough-password")
    assert user.verify({"Authorization": basic("eventbridge", "a-long-enough-password")}, 0) == ""
    assert user.verify({"Authorization": basic("eventbridge", "wrong")}, 0).startswith("bad credentials")
    assert user.verify({"Authorization": "Bearer x"}, 0) == "unauthenticated: Authorization is not Basic"
    assert user.verify({}, 0) == "unauthenticated: no Authorization header"


def test_oauth_client_credentials_tokens() -> None:
    client = ApiDestinationAuth("oauth", "eventbridge-client", b"client-secret-0123456789", token_lifetime_s=600)
    assert client.client_authentic(basic("eventbridge-client", "client-secret-0123456789"), {})
    assert client.client_authentic(None, {"client_id": "eventbridge-client", "client_secret": "client-secret-0123456789"})
    assert not client.client_authentic(basic("eventbridge-client", "nope"), {})
    assert not client.client_authentic(None, {})
    token, lifetime_s = client.issue_token(1000.0)
    assert lifetime_s == 600
    assert client.verify({"Authorization": f"Bearer {token}"}, 1500.0) == ""
    assert client.verify({"Authorization": f"Bearer {token}"}, 1601.0) == "bad credentials: the bearer token has expired"
    expires, mac = token.removeprefix("cw1.").split(".")
    stretched = f"cw1.{int(expires) + 10_000}.{mac}"  # a token whose expiry was edited is not ours
    assert client.verify({"Authorization": f"Bearer {stretched}"}, 1500.0).startswith("bad credentials: the bearer")
    other = ApiDestinationAuth("oauth", "eventbridge-client", b"another-secret-0123456789")
    assert other.verify({"Authorization": f"Bearer {token}"}, 1500.0).startswith("bad credentials")


def test_replay_guard_refuses_a_second_use_until_the_timestamp_expires_and_stays_bounded() -> None:
    guard = ReplayGuard(capacity=3)
    assert guard.first_use("a", expires_s=100, now_s=0)
    assert not guard.first_use("a", expires_s=100, now_s=50)
    assert guard.first_use("a", expires_s=300, now_s=101)  # expired: the timestamp check now refuses it
    for n in range(10):
        guard.first_use(f"x{n}", expires_s=200 + n, now_s=102)
    assert len(guard) == 3
    assert not guard.first_use("x9", expires_s=209, now_s=103)  # the newest are kept
    guard.forget("x9")  # its request was not accepted: the sender may retry it unchanged
    assert guard.first_use("x9", expires_s=209, now_s=104) and len(guard) == 3


# --- fuzzing ------------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER_VALUES = st.none() | st.text(max_size=60) | st.sampled_from([STANDARD_ID, str(STANDARD_AT), STANDARD_SIGNATURE])


@FUZZ
@given(st.dictionaries(st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "other"]),
                       HEADER_VALUES.filter(lambda v: v is not None)), st.binary(max_size=80),
       st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0, max_value=1e6))
def test_fuzz_standard_webhooks_never_raises_and_passes_only_signed_requests(
        headers: dict[str, str], body: bytes, now_s: float, tolerance_s: float) -> None:
    result = verify_standard_webhooks(KEY, headers, body, now_s, tolerance_s)
    if isinstance(result, Verified):
        expected = base64.b64encode(hmac.new(KEY, f"{headers['webhook-id'].strip()}."
                                             f"{headers['webhook-timestamp'].strip()}.".encode() + body,
                                             hashlib.sha256).digest()).decode()
        assert "v1," + expected in headers["webhook-signature"].split()
    else:
        assert isinstance(result, str) and result


@FUZZ
@given(st.none() | st.text(max_size=40), st.text(max_size=40),
       st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=5))
def test_fuzz_twilio_check_never_raises(signature: str | None, url: str, params: list[tuple[str, str]]) -> None:
    result = verify_twilio(TWILIO_TOKEN, signature, url, params)
    assert result == "" or result.startswith(("unsigned", "bad signature"))
    if result == "":
        assert signature is not None and signature.strip() == twilio_signature(TWILIO_TOKEN, url, params)


@FUZZ
@given(st.dictionaries(st.sampled_from(["Authorization", "x-api-key", "other"]), st.text(max_size=60)),
       st.sampled_from(["api-key", "basic", "oauth"]), st.floats(allow_nan=True))
def test_fuzz_api_destination_check_never_raises(headers: dict[str, str], kind: str, now_s: float) -> None:
    auth = ApiDestinationAuth(kind, "x-api-key" if kind == "api-key" else "client", b"0123456789abcdef-secret")
    assert auth.verify(headers, now_s) != ""  # nothing random is ever let in
    assert auth.client_authentic(headers.get("Authorization"), headers) is False

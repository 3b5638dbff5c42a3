"""Standard Webhooks signing, as any of that specification's libraries verifies it."""

from __future__ import annotations

import pytest

from webhooks import WebhookVerificationError, new_secret, sign, signature_header, verify_webhook

#: the specification's published test vector
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature: str = SIGNATURE, stamp: int = STAMP) -> dict[str, str]:
    return {"Webhook-Id": MESSAGE, "webhook-timestamp": str(stamp), "webhook-signature": signature}


def test_the_specifications_test_vector_is_signed_and_verified() -> None:
    assert sign(SECRET, MESSAGE, STAMP, BODY) == SIGNATURE
    verify_webhook(SECRET, headers(), BODY, now=STAMP + 10)
    verify_webhook(SECRET, headers(), BODY.decode(), now=STAMP - 10)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"body": b'{"test": 2432232315}'}, "no signature matches"),
        ({"secret": new_secret()}, "no signature matches"),
        ({"now": STAMP + 301}, "too far"),
        ({"headers": headers(stamp=STAMP + 1)}, "no signature matches"),
        ({"headers": {"webhook-id": MESSAGE}}, "webhook-timestamp header is missing"),
        ({"headers": headers(stamp="soon")}, "not Unix seconds"),  # type: ignore[arg-type]
    ],
)
def test_a_changed_body_secret_time_or_header_is_refused(change: dict, why: str) -> None:
    args = {"secret": SECRET, "headers": headers(), "body": BODY, "now": STAMP} | change
    with pytest.raises(WebhookVerificationError, match=why):
        verify_webhook(args["secret"], args["headers"], args["body"], now=args["now"])


def test_while_a_secret_is_rotated_either_secret_verifies_the_message() -> None:
    new = new_secret()
    both = signature_header([new, SECRET], MESSAGE, STAMP, BODY)
    assert both.split() == [sign(new, MESSAGE, STAMP, BODY), SIGNATURE]
    verify_webhook(new, headers(both), BODY, now=STAMP)
    verify_webhook(SECRET, headers(both), BODY, now=STAMP)


def test_new_secrets_are_whsec_and_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and len(first) == len("whsec_") + 44 and first != second

from __future__ import annotations

import pytest

from runbooklib.errorcodes import SMS_CATEGORIES, TWILIO_CODES, classify_email_error, classify_twilio


@pytest.mark.parametrize(("error", "code", "cls"), [
    ("Throttling: Daily message quota exceeded.", "Throttling", "ses_daily_quota"),
    ("Throttling: Maximum sending rate exceeded.", "Throttling", "ses_rate"),
    ("454 Throttling failure: Maximum sending rate exceeded", None, "ses_rate"),
    ("AccessDenied: User arn:aws:iam::1:user/x is not authorized to perform: ses:SendRawEmail", "AccessDenied",
     "ses_permission"),
    ("AccountSendingPausedException: Email sending is disabled for this account.", None, "ses_sending_paused"),
    ("unable to verify the first certificate (SSL routines::certificate verify failed)", None, "smtp_tls"),
    ("Invalid login: 535 5.7.8 Authentication credentials invalid", "EAUTH", "smtp_auth"),
    ("connect ECONNREFUSED 10.20.3.7:587", "ECONNREFUSED", "smtp_connect"),
    ("MessageRejected: Email address is not verified.", "MessageRejected", "rejected"),
    ("550 5.1.1 Recipient address rejected: User unknown", "550", "bounce"),
    ("554 5.7.1 Message rejected as spam", "554", "rejected"),
    ("421 4.7.0 Too many connections, slow down", "421", "smtp_deferred"),
    ("Invalid login: 454 4.7.0 Temporary authentication failure", "EAUTH", "smtp_deferred"),
    ("Timeout waiting for SMTP response", "ETIMEDOUT", "smtp_connect"),
    ("Mailbox full", None, "bounce"),
    ("something odd", None, "other"),
    (None, None, "other"),
])
def test_email_errors_are_classified(error: str | None, code: str | None, cls: str) -> None:
    assert classify_email_error(error, code) == cls


@pytest.mark.parametrize(("code", "cls", "category"), [
    ("21211", "invalid_number", "permanent"), (21614, "invalid_number", "permanent"),
    ("21610", "opted_out", "consent"), ("30003", "carrier_transient", "transient"),
    ("30007", "carrier_filtered", "permanent"), ("30001", "queue_overflow", "transient"),
    ("20429", "rate_limited", "transient"), ("14107", "rate_limited", "transient"),
    ("20003", "auth", "config"), ("30008.0", "carrier_unknown", "transient"),
    ("99999", "other", "transient"), (None, "other", "transient"), ("abc", "other", "transient"),
])
def test_twilio_codes_are_classified(code: object, cls: str, category: str) -> None:
    info = classify_twilio(code)  # type: ignore[arg-type]
    assert (info.cls, info.category) == (cls, category)


def test_every_twilio_code_has_a_known_category() -> None:
    assert {i.category for i in TWILIO_CODES.values()} <= set(SMS_CATEGORIES)

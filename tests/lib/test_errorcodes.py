from __future__ import annotations

import pytest

from runbooklib.errorcodes import classify_email_error


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
    ("550 5.1.1 Recipient address rejected: User unknown", "550", "rejected"),
    ("Mailbox full", None, "bounce"),
    ("something odd", None, "other"),
    (None, None, "other"),
])
def test_email_errors_are_classified(error: str | None, code: str | None, cls: str) -> None:
    assert classify_email_error(error, code) == cls

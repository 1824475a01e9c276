"""Provider error texts and codes → error class, defined once.

Email errors in `message_logs.metadata.error` are free text from SMTP servers, SES and Node's net
stack; they are matched by the patterns below, first match wins. Sources: AWS SES "Errors related
to sending quotas" (`Throttling` with "Maximum sending rate exceeded." / "Daily message quota
exceeded."), RFC 5321/4954 reply codes (535 authentication, 454 TLS), Node.js errno names.
"""

from __future__ import annotations

import re

EMAIL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (cls, re.compile(pattern, re.IGNORECASE))
    for cls, pattern in (
        ("ses_daily_quota", r"daily message quota exceeded"),
        ("ses_rate", r"maximum sending rate exceeded|\bthrottl"),
        ("ses_permission", r"accessdenied|not authorized to perform|invalidclienttokenid|signaturedoesnotmatch"),
        ("ses_sending_paused", r"sendingpaused|accountsendingpaused|sending (is )?(paused|disabled)"),
        ("smtp_tls", r"certificate|\btls\b|\bssl\b|handshake|starttls"),
        ("smtp_auth", r"\b535\b|\b534\b|authentication (credentials invalid|failed|unsuccessful)|invalid login"
                      r"|username and password not accepted"),
        ("smtp_connect", r"econnrefused|etimedout|ehostunreach|enotfound|econnreset|connection refused"
                         r"|connection timed out|greeting never received|getaddrinfo"),
        ("rejected", r"messagerejected|not verified|\b550\b|\b553\b|\b554\b"),
        ("bounce", r"bounce|mailbox (unavailable|full)|user unknown|\b5\.1\.1\b"),
    )
)
EMAIL_CLASSES = tuple(cls for cls, _ in EMAIL_PATTERNS) + ("other",)


def classify_email_error(error: str | None, code: str | None = None) -> str:
    """The class of one email error (`other` when nothing matches)."""
    text = f"{code or ''} {error or ''}"
    for cls, pattern in EMAIL_PATTERNS:
        if pattern.search(text):
            return cls
    return "other"

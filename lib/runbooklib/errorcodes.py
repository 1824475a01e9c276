"""Provider error texts and codes → error class, defined once.

Email errors in `message_logs.metadata.error` are free text from SMTP servers, SES and Node's net
stack; they are matched by the patterns below, first match wins. Sources: AWS SES "Errors related
to sending quotas" (`Throttling` with "Maximum sending rate exceeded." / "Daily message quota
exceeded."), RFC 5321/4954 reply codes (535 authentication, 454 TLS), Node.js errno names.
"""

from __future__ import annotations

import re
from typing import NamedTuple

EMAIL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (cls, re.compile(pattern, re.IGNORECASE))
    for cls, pattern in (
        ("ses_daily_quota", r"daily message quota exceeded"),
        ("ses_rate", r"maximum sending rate exceeded|^\W*throttling\b|throttlingexception"),
        ("ses_permission", r"accessdenied|not authorized to perform|invalidclienttokenid|signaturedoesnotmatch"),
        ("ses_sending_paused", r"sendingpaused|accountsendingpaused|sending (is )?(paused|disabled)"),
        # the recipient's address or mailbox (enhanced status X.1.x and X.2.1-2, whatever the reply code): a list
        # problem, not the relay's
        ("bounce", r"bounce|mailbox (unavailable|full)|user unknown|no such user|domain not found|host not found"
                   r"|recipient address rejected|invalid (recipient|address)|\b[45]\.1\.\d+\b|\b[45]\.2\.[12]\b"),
        ("smtp_deferred", r"^\W*(421|450|451|452|454)\b|\b(421|450|451|452|454)[ -]4\.\d\.\d+"
                          r"|too many (connections|messages|recipients)|try again later|rate limit|slow down|throttl"),
        ("smtp_tls", r"certificate|\btls\b|\bssl\b|handshake|starttls"),
        ("smtp_auth", r"\b535\b|\b534\b|authentication (credentials invalid|failed|unsuccessful)|invalid login"
                      r"|username and password not accepted"),
        ("smtp_connect", r"econnrefused|etimedout|ehostunreach|enotfound|econnreset|connection refused"
                         r"|connection timed out|timeout waiting for|greeting never received|getaddrinfo"),
        ("rejected", r"messagerejected|not verified|\b550\b|\b553\b|\b554\b"),
    )
)
EMAIL_CLASSES = tuple(cls for cls, _ in EMAIL_PATTERNS) + ("other",)
EMAIL_CATEGORIES = {
    "ses_daily_quota": "transient", "ses_rate": "transient", "ses_permission": "config", "ses_sending_paused": "config",
    "smtp_deferred": "transient", "smtp_tls": "config", "smtp_auth": "config", "smtp_connect": "transient",
    "rejected": "permanent", "bounce": "permanent", "other": "unknown",
}
"""What a retry can do for each email class (as for the coded channels: transient, permanent, consent, config)."""
RATE_LIMIT_CLASSES = frozenset({"ses_rate", "smtp_deferred", "rate_limited", "queue_overflow"})
"""Classes of every channel that say "too much, too fast": retries without backoff feed them."""


def classify_email_error(error: str | None, code: str | None = None) -> str:
    """The class of one email error (`other` when nothing matches)."""
    text = f"{code or ''} {error or ''}"
    for cls, pattern in EMAIL_PATTERNS:
        if pattern.search(text):
            return cls
    return "other"


# -- Twilio (SMS) -----------------------------------------------------------------------------------
# Source: Twilio's error dictionary, https://www.twilio.com/docs/api/errors/<code> (titles as
# published; 21211/21610/30003/30005/30006/30008 as widely quoted). "Sync" codes come back as REST
# errors on create; 30xxx codes arrive later on the Message (status failed/undelivered).
# Category says what a retry can do: transient (retry later), permanent (never, fix the data or
# content), consent (never, the recipient said no), config (never until our setup is fixed).
TRANSIENT, PERMANENT, CONSENT, CONFIG = "transient", "permanent", "consent", "config"
SMS_CATEGORIES = (TRANSIENT, PERMANENT, CONSENT, CONFIG)


class TwilioCode(NamedTuple):
    cls: str
    category: str
    title: str


TWILIO_CODES: dict[int, TwilioCode] = {
    20003: TwilioCode("auth", CONFIG, "Permission denied / authentication failed"),
    20404: TwilioCode("config", CONFIG, "Resource not found"),
    20429: TwilioCode("rate_limited", TRANSIENT, "Too many requests (REST concurrency)"),
    20500: TwilioCode("provider_error", TRANSIENT, "Internal server error"),
    20503: TwilioCode("provider_error", TRANSIENT, "Service unavailable"),
    14107: TwilioCode("rate_limited", TRANSIENT, "SMS send rate limit exceeded (reply loop)"),
    21211: TwilioCode("invalid_number", PERMANENT, "Invalid 'To' phone number"),
    21217: TwilioCode("invalid_number", PERMANENT, "Phone number does not appear to be valid"),
    21614: TwilioCode("invalid_number", PERMANENT, "'To' number is not a valid mobile number"),
    21612: TwilioCode("invalid_number", PERMANENT, "'To' number is not currently reachable via SMS"),
    21610: TwilioCode("opted_out", CONSENT, "Attempt to send to unsubscribed recipient"),
    21408: TwilioCode("config", CONFIG, "Permission to send an SMS has not been enabled for the region"),
    21608: TwilioCode("config", CONFIG, "'To' number not verified (trial account)"),
    21212: TwilioCode("sender", CONFIG, "Invalid 'From' number"),
    21606: TwilioCode("sender", CONFIG, "'From' number is not a valid, SMS-capable number for this account"),
    21611: TwilioCode("queue_overflow", TRANSIENT, "'From' number exceeded the maximum queued messages"),
    30001: TwilioCode("queue_overflow", TRANSIENT, "Queue overflow"),
    30002: TwilioCode("account_suspended", CONFIG, "Account suspended"),
    30003: TwilioCode("carrier_transient", TRANSIENT, "Unreachable destination handset"),
    30004: TwilioCode("carrier_blocked", CONSENT, "Message blocked"),
    30005: TwilioCode("invalid_number", PERMANENT, "Unknown destination handset"),
    30006: TwilioCode("invalid_number", PERMANENT, "Landline or unreachable carrier"),
    30007: TwilioCode("carrier_filtered", PERMANENT, "Message filtered (carrier or Twilio spam filtering)"),
    30008: TwilioCode("carrier_unknown", TRANSIENT, "Unknown error from the carrier"),
    30022: TwilioCode("rate_limited", TRANSIENT, "US A2P 10DLC rate limits exceeded"),
    30032: TwilioCode("sender_registration", CONFIG, "Toll-free number has not been verified"),
    30034: TwilioCode("sender_registration", CONFIG, "Message from an unregistered 10DLC number"),
    30036: TwilioCode("queue_overflow", TRANSIENT, "Validity period expired"),
}
UNKNOWN_TWILIO = TwilioCode("other", TRANSIENT, "Unknown error")


def twilio_code(code: str | int | None) -> int | None:
    """A provider error code as an int (`"30007"`, `30007`, `"30007.0"`), or None."""
    if code is None:
        return None
    try:
        return int(float(str(code).strip()))
    except ValueError:
        return None


def classify_twilio(code: str | int | None) -> TwilioCode:
    """The class, retry category and title of a Twilio error code."""
    number = twilio_code(code)
    return TWILIO_CODES.get(number, UNKNOWN_TWILIO) if number is not None else UNKNOWN_TWILIO


def classify_sms_error(error: str | None, code: str | None = None) -> str:
    """The class of one SMS error: by Twilio code when there is one, else `other`."""
    return classify_twilio(code).cls


# -- Meta Graph API (WhatsApp Cloud API) ------------------------------------------------------------
# Classified by `error.code`, never by HTTP status (Meta's OpenAPI shows 400/401/403/429 for the
# same codes). Source: Meta's WhatsApp Cloud API error codes page
# (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes), with
# descriptions as mirrored by pywa's errors.py; 133010 from public integration code.
class GraphCode(NamedTuple):
    cls: str
    category: str
    title: str


GRAPH_CODES: dict[int, GraphCode] = {
    0: GraphCode("auth", CONFIG, "AuthException"),
    3: GraphCode("auth", CONFIG, "API method / capability not available to the app"),
    10: GraphCode("auth", CONFIG, "Permission denied"),
    190: GraphCode("token", CONFIG, "Access token expired or invalid"),
    200: GraphCode("auth", CONFIG, "API permission missing"),
    4: GraphCode("rate_limited", TRANSIENT, "App-level API call rate limit"),
    80007: GraphCode("rate_limited", TRANSIENT, "WhatsApp Business Account rate limit"),
    130429: GraphCode("rate_limited", TRANSIENT, "Cloud API throughput reached"),
    131056: GraphCode("rate_limited", TRANSIENT, "Pair rate limit (same sender and recipient)"),
    131048: GraphCode("quality", PERMANENT, "Spam rate limit: too many messages blocked or flagged"),
    131049: GraphCode("marketing_limit", PERMANENT, "Not delivered to maintain healthy ecosystem engagement"),
    131050: GraphCode("opted_out", CONSENT, "User stopped marketing messages"),
    131047: GraphCode("window_closed", PERMANENT, "Re-engagement: more than 24 h since the user replied"),
    131026: GraphCode("undeliverable", PERMANENT, "Message undeliverable"),
    131051: GraphCode("bad_request", PERMANENT, "Unsupported message type"),
    100: GraphCode("bad_request", PERMANENT, "Invalid parameter"),
    131000: GraphCode("provider_transient", TRANSIENT, "Something went wrong"),
    131016: GraphCode("provider_transient", TRANSIENT, "Service temporarily unavailable"),
    131042: GraphCode("account", CONFIG, "Business payment issue"),
    368: GraphCode("account_locked", CONFIG, "Temporarily blocked for policy violations"),
    131031: GraphCode("account_locked", CONFIG, "Business account locked"),
    130497: GraphCode("account_locked", CONFIG, "Business account restricted from messaging users in this country"),
    132000: GraphCode("template_params", PERMANENT, "Template parameter count mismatch"),
    132001: GraphCode("template", CONFIG, "Template does not exist in this language or is not approved"),
    132005: GraphCode("template_params", PERMANENT, "Translated template text too long"),
    132007: GraphCode("template_params", PERMANENT, "Template format character policy violated"),
    132012: GraphCode("template_params", PERMANENT, "Template parameter format mismatch"),
    132015: GraphCode("template", CONFIG, "Template is paused (low quality)"),
    132016: GraphCode("template", CONFIG, "Template is disabled (paused too many times)"),
    133010: GraphCode("phone_not_registered", CONFIG, "Phone number not registered on the Cloud API"),
    803: GraphCode("config", CONFIG, "Object (phone number or WABA) not found"),
}
UNKNOWN_GRAPH = GraphCode("other", TRANSIENT, "Unknown error")


def classify_graph(code: str | int | None) -> GraphCode:
    """The class, retry category and title of a Graph API error code (200-299: permission)."""
    number = twilio_code(code)  # same int parsing
    if number is None:
        return UNKNOWN_GRAPH
    if 200 <= number <= 299:
        return GRAPH_CODES[200]
    return GRAPH_CODES.get(number, UNKNOWN_GRAPH)


def classify_whatsapp_error(error: str | None, code: str | None = None) -> str:
    return classify_graph(code).cls


CODED = re.compile(r"\b(?:Twilio|Graph)\s+(\d+)\b")
"""How a failed job's reason names a provider code ("Twilio 20503: Service unavailable", "Graph 190: ...")."""


def category_of(reason: str | None, channel: str) -> tuple[str, str]:
    """(class, retry category) of a failure reason as a job or a log records it, for channel `EMAIL`, `SMS` or
    `WHATSAPP`: by the provider code it names when it names one, else by the email patterns; a reason that names no
    provider error (a crash on a malformed payload) is ("other", "unknown")."""
    text = reason or ""
    coded = CODED.search(text)
    if channel.upper() == "SMS" and coded:
        info = classify_twilio(coded.group(1))
        return info.cls, info.category
    if channel.upper() == "WHATSAPP" and coded:
        graph = classify_graph(coded.group(1))
        return graph.cls, graph.category
    if channel.upper() == "EMAIL":
        cls = classify_email_error(text)
        return cls, EMAIL_CATEGORIES[cls]
    return "other", "unknown"


def class_category(channel: str, cls: str) -> str:
    """The retry category of an error class of `channel` (EMAIL, SMS, WHATSAPP): transient, permanent, consent,
    config, or unknown."""
    if channel.upper() == "EMAIL":
        return EMAIL_CATEGORIES.get(cls, "unknown")
    table = TWILIO_CODES if channel.upper() == "SMS" else GRAPH_CODES if channel.upper() == "WHATSAPP" else {}
    return next((i.category for i in table.values() if i.cls == cls), "unknown")

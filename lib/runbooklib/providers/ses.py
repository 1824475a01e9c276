"""AWS SES checks through boto3 (`ses` v1 and `sesv2`), with retries off, timeouts set and a total deadline.

botocore retries throttling and 5xx five times by default (about 8 s against a local stand-in, 13 s
on a refused connection); a runbook wants the first answer, so `total_max_attempts=1`. botocore's
timeouts bound each socket operation, so every call also runs under a total deadline (`within`).
Errors are classified by `Error.Code`: AccessDenied-style codes are `permission_denied`, bad keys
are `credentials_invalid`, `Throttling` is `throttled`, connection problems are `unreachable`.

A check *fails* only on what it established about the account (permission denied, keys rejected,
sending paused); a call that was throttled, timed out or answered with something unreadable
establishes nothing, and the check is an `error` (could not check).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.exceptions as bx
from botocore.config import Config
from botocore.parsers import ResponseParserError

from runbooklib.deadline import Dependency
from runbooklib.endpoints.ses import SesEndpoint
from runbooklib.errors import ConfigError, ProviderAuthError, ProviderResponseError, ProviderTimeout
from runbooklib.results import CheckResult, timed
from runbooklib.settings import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, optional_secret, secret
from runbooklib.thresholds import (
    SES_BOUNCE_FAIL,
    SES_BOUNCE_WARN,
    SES_COMPLAINT_FAIL,
    SES_COMPLAINT_WARN,
    SES_QUOTA_FAIL,
    SES_QUOTA_WARN,
)

PERMISSION_CODES = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError")
CREDENTIAL_CODES = ("InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
                    "ExpiredToken", "ExpiredTokenException", "IncompleteSignature")
THROTTLE_CODES = ("Throttling", "ThrottlingException", "TooManyRequestsException")
UNLIMITED = -1.0
FINDINGS = ("permission_denied", "credentials_invalid", "sending_disabled")
"""Classifications that say something about the account; every other failure means "could not check"."""
_REFUSED = {c: ("fail",) for c in FINDINGS}
STATES: dict[str, dict[str, tuple[str, ...]]] = {
    "check_quota": {**_REFUSED, "quota_exhausted": ("fail",), "quota_high": ("warn",)},
    "check_account": {**_REFUSED, "account_review": ("warn",)},
    "check_reputation": {**_REFUSED, "reputation": ("fail", "warn")},
}
"""Every state each SES check reports that is not OK (classification → statuses); any other outcome is `error`,
could not check (throttled, unreachable, unreadable)."""


def dependency(seconds: float = DEFAULT_CONNECT_TIMEOUT + DEFAULT_READ_TIMEOUT) -> Dependency:
    """SES as a run's dependency: each API call within `seconds`."""
    return Dependency("SES", seconds, ProviderTimeout)


UNREACHABLE = (bx.ConnectionError, bx.HTTPClientError)
"""botocore's errors for an endpoint that cannot be reached or broke off (connect, TLS, proxy, read timeout, a
connection closed mid-answer): SES is then known down for the run."""
NOT_CONFIGURED = tuple(getattr(bx, name) for name in (
    "NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError", "UnknownCredentialError",
    "NoAuthTokenError", "TokenRetrievalError", "UnauthorizedSSOTokenError", "SSOTokenLoadError", "NoRegionError",
    "InvalidRegionError", "UnknownRegionError") if hasattr(bx, name))
"""botocore's errors for credentials or a region this machine does not have: a `config` problem, not SES's."""


def _call(within: Dependency | None, fn: Any, what: str) -> Any:
    """One SES call under the total deadline."""
    return (within or dependency()).call(fn, f"SES {what}", down_on=UNREACHABLE)


def clients(endpoint: SesEndpoint, *, connect_timeout: float, read_timeout: float) -> tuple[Any, Any]:
    """(ses, sesv2) clients: one attempt per call, timeouts set, credentials from the named variables."""
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                    connect_timeout=connect_timeout, read_timeout=read_timeout)
    kwargs: dict[str, Any] = {"region_name": endpoint.region, "config": config}
    if endpoint.endpoint_url:
        kwargs["endpoint_url"] = endpoint.endpoint_url
    if endpoint.access_key_id_env:
        kwargs["aws_access_key_id"] = secret(endpoint.access_key_id_env, what="AWS access key id")
        kwargs["aws_secret_access_key"] = secret(endpoint.secret_access_key_env, what="AWS secret access key")
        token = optional_secret(endpoint.session_token_env)
        if token:
            kwargs["aws_session_token"] = token
    session = boto3.session.Session()
    return session.client("ses", **kwargs), session.client("sesv2", **kwargs)


def classify(exc: BaseException) -> tuple[str, str]:
    """Map a botocore/boto3 exception to (classification, detail)."""
    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", ""))
        if code in PERMISSION_CODES:
            return "permission_denied", f"{code}: {message}"
        if code in CREDENTIAL_CODES:
            return "credentials_invalid", f"{code}: {message}"
        if code in THROTTLE_CODES:
            return "throttled", f"{code}: {message}"
        if code in ("AccountSendingPausedException", "SendingPausedException"):
            return "sending_disabled", f"{code}: {message}"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return "provider_error", f"{code or f'HTTP {status}'}: {message}"
    if isinstance(exc, NOT_CONFIGURED):
        return "config", f"AWS credentials or region not usable ({exc.__class__.__name__})"
    if isinstance(exc, UNREACHABLE):
        return "unreachable", f"{exc.__class__.__name__}: {exc}"
    if isinstance(exc, ResponseParserError):
        return "bad_response", "SES answered with something boto3 cannot parse"
    if isinstance(exc, ConfigError):
        return "config", str(exc)
    if isinstance(exc, ProviderTimeout):
        return "unreachable", str(exc)
    return "provider_error", f"{exc.__class__.__name__}: {exc}"


def _failed(name: str, title: str, exc: BaseException, ms: float, facts: dict[str, Any] | None = None) -> CheckResult:
    classification, detail = classify(exc)
    status = "fail" if classification in FINDINGS else "error"
    return CheckResult(name, title, status, detail, classification=classification, facts=facts or {}, duration_ms=ms)


def check_quota(ses: Any, *, name: str = "ses_quota", within: Dependency | None = None) -> CheckResult:
    """GetSendQuota: 24-hour quota use and the maximum send rate (-1 means unlimited)."""
    title = "SES sending quota"
    with timed() as ms:
        try:
            q = _call(within, ses.get_send_quota, "GetSendQuota")
        except Exception as exc:  # classified below; a failing check is a result
            return _failed(name, title, exc, ms())
    max24, rate, sent = float(q["Max24HourSend"]), float(q["MaxSendRate"]), float(q["SentLast24Hours"])
    facts: dict[str, Any] = {"max_24_hour_send": max24, "max_send_rate": rate, "sent_last_24_hours": sent}
    if max24 == UNLIMITED or max24 <= 0:
        facts["quota_used"] = None
        return CheckResult(name, title, "ok", f"unlimited daily quota; max send rate {rate:g}/s", facts=facts,
                           duration_ms=ms())
    used = sent / max24
    facts["quota_used"] = round(used, 4)
    text = f"{sent:,.0f} of {max24:,.0f} sent in 24 h ({used:.1%}); max send rate {rate:g}/s"
    if used >= SES_QUOTA_FAIL:
        return CheckResult(name, title, "fail", "daily quota exhausted: " + text, classification="quota_exhausted",
                           facts=facts, duration_ms=ms())
    if used >= SES_QUOTA_WARN:
        return CheckResult(name, title, "warn", "most of the daily quota is used: " + text, classification="quota_high",
                           facts=facts, duration_ms=ms())
    return CheckResult(name, title, "ok", text, facts=facts, duration_ms=ms())


def check_account(ses: Any, sesv2: Any, *, name: str = "ses_account", within: Dependency | None = None) -> CheckResult:
    """Account sending switch (v1) and enforcement status / production access (v2 GetAccount)."""
    title = "SES account status"
    facts: dict[str, Any] = {}
    with timed() as ms:
        try:
            facts["sending_enabled"] = bool(_call(within, ses.get_account_sending_enabled,
                                                  "GetAccountSendingEnabled")["Enabled"])
            account = _call(within, sesv2.get_account, "GetAccount")
        except Exception as exc:
            return _failed(name, title, exc, ms(), facts)
    facts["enforcement_status"] = str(account.get("EnforcementStatus", "UNKNOWN"))
    facts["production_access"] = bool(account.get("ProductionAccessEnabled", False))
    facts["v2_sending_enabled"] = bool(account.get("SendingEnabled", True))
    enforcement = facts["enforcement_status"]
    if not facts["sending_enabled"] or not facts["v2_sending_enabled"] or enforcement == "SHUTDOWN":
        why = "sending is paused for the account" if enforcement != "SHUTDOWN" else "AWS shut down sending (SHUTDOWN)"
        return CheckResult(name, title, "fail", f"{why}; enforcement status {enforcement}",
                           classification="sending_disabled", facts=facts, duration_ms=ms())
    notes = []
    if enforcement == "PROBATION":
        notes.append("account is on PROBATION (under review)")
    if not facts["production_access"]:
        notes.append("account is in the SES sandbox (verified recipients only)")
    if notes:
        return CheckResult(name, title, "warn", "; ".join(notes), classification="account_review", facts=facts,
                           duration_ms=ms())
    return CheckResult(name, title, "ok", f"sending enabled; enforcement {enforcement}; production access",
                       facts=facts, duration_ms=ms())


def check_reputation(ses: Any, *, now: datetime | None = None, name: str = "ses_reputation",
                     within: Dependency | None = None) -> CheckResult:
    """Bounce and complaint rates from GetSendStatistics (15-minute points over two weeks)."""
    title = "SES bounce and complaint rates"
    now = now or datetime.now(UTC)
    with timed() as ms:
        try:
            points = _call(within, ses.get_send_statistics, "GetSendStatistics").get("SendDataPoints", [])
        except Exception as exc:
            return _failed(name, title, exc, ms())
    points = sorted(points, key=lambda p: p["Timestamp"])  # AWS does not document the order
    facts: dict[str, Any] = {"data_points": len(points)}
    for label, since in (("24h", now - timedelta(hours=24)), ("14d", now - timedelta(days=14))):
        recent = [p for p in points if p["Timestamp"] >= since]
        attempts = sum(int(p.get("DeliveryAttempts", 0)) for p in recent)
        facts[f"delivery_attempts_{label}"] = attempts
        facts[f"bounce_rate_{label}"] = round(sum(int(p.get("Bounces", 0)) for p in recent) / attempts, 5) if attempts else None
        facts[f"complaint_rate_{label}"] = (
            round(sum(int(p.get("Complaints", 0)) for p in recent) / attempts, 5) if attempts else None)
        facts[f"rejects_{label}"] = sum(int(p.get("Rejects", 0)) for p in recent)
    bounce, complaint = facts["bounce_rate_14d"] or 0.0, facts["complaint_rate_14d"] or 0.0
    text = f"14-day bounce rate {bounce:.2%}, complaint rate {complaint:.3%}"
    if bounce >= SES_BOUNCE_FAIL or complaint >= SES_COMPLAINT_FAIL:
        return CheckResult(name, title, "fail", text + " — at the level where AWS pauses sending",
                           classification="reputation", facts=facts, duration_ms=ms())
    if bounce >= SES_BOUNCE_WARN or complaint >= SES_COMPLAINT_WARN:
        return CheckResult(name, title, "warn", text + " — above the level AWS reviews",
                           classification="reputation", facts=facts, duration_ms=ms())
    return CheckResult(name, title, "ok", text, facts=facts, duration_ms=ms())


def send_email(ses: Any, *, source: str, to: str, subject: str, body: str,
               within: Dependency | None = None) -> dict[str, Any]:
    """SendEmail through the SES API; returns {"message_id": ...}. Raises ProviderError subclasses."""
    within = within or dependency()
    try:
        out = within.call(lambda: ses.send_email(Source=source, Destination={"ToAddresses": [to]},
                                                 Message={"Subject": {"Data": subject}, "Body": {"Text": {"Data": body}}}),
                          "SES SendEmail", changes=True)
    except ProviderTimeout:
        raise
    except Exception as exc:
        classification, detail = classify(exc)
        error = {"unreachable": ProviderTimeout, "permission_denied": ProviderAuthError,
                 "credentials_invalid": ProviderAuthError}.get(classification, ProviderResponseError)
        raise error(detail, code=classification) from exc
    return {"message_id": out.get("MessageId")}

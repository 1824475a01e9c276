"""Twilio checks and test send through the `twilio` client, used as-is with a timeout set.

The client's default HTTP client has no timeout, so one is always given. To reach a stand-in the
client keeps its own URLs and a small HTTP client subclass rewrites the host of every `*.twilio.com`
request (Twilio's edge/region settings cannot point anywhere else). Errors are normalised at this
boundary: fetch/create raise `TwilioRestException` (with `.code`), list calls raise a bare
`TwilioException("Unable to fetch page", response)`, RFC 9457 bodies raise `TwilioServiceException`,
and transport failures come from `requests`.

The client's timeout bounds each socket operation; every call also runs under a total deadline
(`within`), so a server that trickles its answer cannot hold a check open. A check fails only on
what it established (credentials rejected, account suspended, a number missing); an answer it could
not get or read (timeout, 429, 5xx) is an `error`: could not check.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from runbooklib.deadline import Dependency
from runbooklib.endpoints.twilio import ACCOUNT_STATUSES, TwilioEndpoint
from runbooklib.errors import ConfigError, ProviderAuthError, ProviderError, ProviderResponseError, ProviderTimeout
from runbooklib.results import CheckResult, timed
from runbooklib.settings import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, secret

AUTH_CODES = (20003, 20005, 20006, 20008)
"""What Twilio's Account resource says of `status`; anything else is an answer we cannot read."""
NUMBERS_PAGE = 50
STATES: dict[str, dict[str, tuple[str, ...]]] = {
    "check_account": {"auth_failed": ("fail",), "account_suspended": ("fail",)},
    "check_numbers": {"auth_failed": ("fail",), "sender_inactive": ("fail",)},
}
"""Every state each Twilio check reports that is not OK (classification → statuses); the rest is could-not-check."""


class RedirectingHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Sends every `*.twilio.com` request to `base_url`, keeping path and query (paging included)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._scheme, self._netloc = urlsplit(base_url)[:2]

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        parts = urlsplit(url)
        if parts.hostname and parts.hostname.endswith(".twilio.com"):
            url = urlunsplit((self._scheme, self._netloc, parts.path, parts.query, parts.fragment))
        return super().request(method, url, *args, **kwargs)


def dependency(seconds: float = DEFAULT_CONNECT_TIMEOUT + DEFAULT_READ_TIMEOUT) -> Dependency:
    """Twilio's API as a run's dependency: each call within `seconds`."""
    return Dependency("Twilio", seconds, ProviderTimeout)


def _call(within: Dependency | None, fn: Any, what: str, *, changes: bool = False) -> Any:
    """One Twilio call under the total deadline; a service that cannot be reached is remembered as down."""
    return (within or dependency()).call(fn, f"Twilio {what}", changes=changes, down_on=(
        requests.exceptions.ConnectionError, requests.exceptions.Timeout))


def client(endpoint: TwilioEndpoint, *, timeout: float) -> Client:
    """A Twilio client with credentials from the named variables and a request timeout."""
    sid = secret(endpoint.account_sid_env, what="Twilio account SID")
    token = secret(endpoint.auth_token_env, what="Twilio auth token")
    http: TwilioHttpClient = (RedirectingHttpClient(endpoint.api_base_url, timeout=timeout)
                              if endpoint.api_base_url else TwilioHttpClient(timeout=timeout))
    return Client(sid, token, http_client=http)


def normalise(exc: BaseException) -> ProviderError:
    """Map any Twilio or transport exception to a ProviderError with the Twilio code (or HTTP status) in `.code`."""
    if isinstance(exc, TwilioRestException):
        code = int(exc.code) if exc.code else int(exc.status)
        auth = code in AUTH_CODES or exc.status in (401, 403)
        error: type[ProviderError] = ProviderAuthError if auth else ProviderResponseError
        return error(f"Twilio {code}: {exc.msg}", code=str(code))
    if isinstance(exc, TwilioServiceException):
        service_code = int(exc.code) if exc.code else int(exc.status)
        error = ProviderAuthError if exc.status in (401, 403) else ProviderResponseError
        return error(f"Twilio {service_code}: {exc.title}", code=str(service_code))
    if isinstance(exc, TwilioException):
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", None)
        error = ProviderAuthError if status in (401, 403) else ProviderResponseError
        found = _body_code(response) or (str(status) if status else None)
        return error(f"Twilio list call failed: HTTP {status}" + (f" (code {found})" if found else ""), code=found)
    if isinstance(exc, requests.exceptions.Timeout):
        return ProviderTimeout(f"Twilio did not answer in time ({exc.__class__.__name__})", code="timeout")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ProviderTimeout("cannot connect to Twilio", code="unreachable")
    if isinstance(exc, ConfigError):
        return ProviderAuthError(str(exc), code="config")
    if isinstance(exc, ProviderError):
        return exc
    return ProviderResponseError(f"{exc.__class__.__name__}: {exc}")


def _body_code(response: Any) -> str | None:
    try:
        import json

        code = json.loads(getattr(response, "text", "") or "{}").get("code")
    except (ValueError, AttributeError):
        return None
    return str(code) if code else None


def _failed(name: str, title: str, error: ProviderError, ms: float) -> CheckResult:
    if error.code == "config":
        return CheckResult(name, title, "error", str(error), classification="config", duration_ms=ms)
    if isinstance(error, ProviderAuthError):
        return CheckResult(name, title, "fail", f"credentials rejected: {error}", classification="auth_failed",
                           facts={"code": error.code}, duration_ms=ms)
    if isinstance(error, ProviderTimeout):
        return CheckResult(name, title, "error", f"could not check: {error}", classification="unreachable",
                           duration_ms=ms)
    return CheckResult(name, title, "error", f"could not check: {error}", classification="provider_error",
                       facts={"code": error.code}, duration_ms=ms)


def check_account(endpoint: TwilioEndpoint | None, *, timeout: float, name: str = "twilio_account",
                  within: Dependency | None = None) -> CheckResult:
    """Fetch the account: status active / suspended / closed; 20003 means the credentials are rejected."""
    title = "Twilio account and credentials"
    if endpoint is None:
        return CheckResult(name, title, "skipped", "Twilio is not configured in this environment")
    with timed() as ms:
        try:
            tw = client(endpoint, timeout=timeout)
            account = _call(within, tw.api.v2010.accounts(tw.account_sid).fetch, "fetch account")
        except Exception as exc:  # every failure becomes a finding
            return _failed(name, title, normalise(exc), ms())
    facts = {"status": account.status, "type": account.type, "friendly_name": account.friendly_name}
    if account.status not in ACCOUNT_STATUSES:
        return CheckResult(name, title, "error", f"could not check: Twilio answered without a known account status "
                           f"({str(account.status)[:40]!r})", classification="bad_response", facts=facts,
                           duration_ms=ms())
    if account.status != "active":
        return CheckResult(name, title, "fail", f"account is {account.status}", classification="account_suspended",
                           facts=facts, duration_ms=ms())
    return CheckResult(name, title, "ok", f"credentials accepted; account active ({account.type})", facts=facts,
                       duration_ms=ms())


def check_numbers(endpoint: TwilioEndpoint | None, *, timeout: float, name: str = "twilio_numbers",
                  within: Dependency | None = None) -> CheckResult:
    """The configured sending numbers: present on the account and SMS-capable."""
    title = "Twilio sending numbers"
    if endpoint is None:
        return CheckResult(name, title, "skipped", "Twilio is not configured in this environment")
    if not endpoint.from_numbers:
        return CheckResult(name, title, "error", "no sending numbers are configured (twilio.from_numbers): the "
                           "senders cannot be checked", classification="config")
    with timed() as ms:
        try:
            tw = client(endpoint, timeout=timeout)
            numbers = _call(within, lambda: tw.incoming_phone_numbers.list(page_size=NUMBERS_PAGE), "list numbers")
        except Exception as exc:
            return _failed(name, title, normalise(exc), ms())
    owned = {n.phone_number: n for n in numbers}
    missing = [num for num in endpoint.from_numbers if num not in owned]
    no_sms = [num for num in endpoint.from_numbers if num in owned and not (owned[num].capabilities or {}).get("sms")]
    facts = {"configured": list(endpoint.from_numbers), "on_account": len(owned), "missing": missing,
             "not_sms_capable": no_sms}
    if missing or no_sms:
        parts = ([f"not on the account: {', '.join(missing)}"] if missing else []) + (
            [f"not SMS-capable: {', '.join(no_sms)}"] if no_sms else [])
        return CheckResult(name, title, "fail", "; ".join(parts), classification="sender_inactive", facts=facts,
                           duration_ms=ms())
    return CheckResult(name, title, "ok", f"all {len(endpoint.from_numbers)} sending numbers present and SMS-capable",
                       facts=facts, duration_ms=ms())


def send_sms(endpoint: TwilioEndpoint, *, to: str, body: str, timeout: float,
             within: Dependency | None = None) -> dict[str, Any]:
    """Create one message from the first configured number; returns its sid and status."""
    if not endpoint.from_numbers:
        raise ProviderResponseError("no sending number configured (twilio.from_numbers)", code="config")
    try:
        tw = client(endpoint, timeout=timeout)
        message = _call(within, lambda: tw.messages.create(to=to, from_=endpoint.from_numbers[0], body=body),
                        "create message", changes=True)
    except Exception as exc:
        raise normalise(exc) from exc
    return {"sid": message.sid, "status": message.status, "error_code": message.error_code}

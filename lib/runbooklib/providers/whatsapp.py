"""Meta's WhatsApp Cloud API through the Graph API (httpx; the version is a setting).

Errors are classified by the body's `error.code` (and `error_subcode`), never by the HTTP status.
Templates are listed on the WhatsApp Business Account id (`/{WABA_ID}/message_templates`), not on
the phone-number id as the old runbook's curl has it. `debug_token` can answer HTTP 200 with
`is_valid: false`, so validity is read from the body. No token value is ever put in a message,
a result or a log line.

httpx's timeouts bound each socket operation; every Graph call also runs under a total deadline
(`within`). A check fails only on what the Graph API established (token invalid, number or account
restricted, a template rejected); an error it could not get past (timeout, throttling, Meta's
transient codes, an unreadable answer) is an `error`: could not check.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from runbooklib.deadline import Dependency
from runbooklib.endpoints.whatsapp import WhatsAppEndpoint
from runbooklib.errorcodes import GRAPH_CODES, TRANSIENT, classify_graph
from runbooklib.errors import ConfigError, ProviderAuthError, ProviderError, ProviderResponseError, ProviderTimeout
from runbooklib.redact import REDACTOR
from runbooklib.results import CheckResult, timed
from runbooklib.settings import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, secret
from runbooklib.thresholds import TOKEN_WARN_DAYS

TEMPLATE_FIELDS = "id,name,status,category,language,rejected_reason,quality_score,components"
PHONE_FIELDS = ("id,display_phone_number,verified_name,quality_rating,status,name_status,code_verification_status,"
                "throughput,platform_type,whatsapp_business_manager_messaging_limit")
REQUIRED_SCOPES = ("whatsapp_business_messaging", "whatsapp_business_management")
BAD_TEMPLATE = ("REJECTED", "PAUSED", "DISABLED")
MAX_PAGES = 20
GRAPH_REFUSALS: dict[str, tuple[str, ...]] = {
    **{i.cls: ("fail",) for i in GRAPH_CODES.values() if i.category != TRANSIENT}, "config": ("fail",)}
"""A Graph error answered to a check is a state too: its code's class (`errorcodes.GRAPH_CODES`; 100 with subcode 33,
an object that does not exist, is `config`), unless its category is transient (then the check could not check)."""
STATES: dict[str, dict[str, tuple[str, ...]]] = {
    "check_templates": {**GRAPH_REFUSALS, "template_not_approved": ("fail",), "unused_not_approved": ("warn",)},
    "check_phone_number": {**GRAPH_REFUSALS, "account_locked": ("fail",), "phone_not_registered": ("fail",),
                           "quality": ("fail", "warn")},
    "check_token": {**GRAPH_REFUSALS, "token": ("fail",), "auth": ("fail",), "token_expiring": ("warn",)},
}
"""Every state each Graph check reports that is not OK (classification → statuses)."""


class GraphError(ProviderResponseError):
    """A Graph API error body: `code` is `error.code` as text, `subcode` its `error_subcode`."""

    def __init__(self, message: str, *, code: str | None, subcode: int | None = None, http_status: int = 0) -> None:
        super().__init__(message, code=code)
        self.subcode = subcode
        self.http_status = http_status


def dependency(seconds: float = DEFAULT_CONNECT_TIMEOUT + DEFAULT_READ_TIMEOUT) -> Dependency:
    """The Graph API as a run's dependency: each call within `seconds`."""
    return Dependency("the Graph API", seconds, ProviderTimeout)


class Graph:
    """A small Graph API client: base URL and version from settings, bearer token, timeouts, a total deadline."""

    def __init__(self, endpoint: WhatsAppEndpoint, *, timeout: float, transport: httpx.BaseTransport | None = None,
                 token: str | None = None, within: Dependency | None = None) -> None:
        self.endpoint = endpoint
        self.within = within or dependency()
        self._token = token if token is not None else secret(endpoint.access_token_env, what="WhatsApp access token")
        self._http = httpx.Client(base_url=f"{endpoint.graph_url.rstrip('/')}/{endpoint.api_version}",
                                  timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token if token is not None else self._token}"}
        try:
            response = self.within.call(lambda: self._http.request(method, path, headers=headers, **kwargs),
                                        f"Graph API {method} {path}", changes=method != "GET",
                                        down_on=(httpx.TransportError,))
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"Graph API {method} {path}: timed out", code="timeout") from exc
        except httpx.TransportError as exc:
            raise ProviderTimeout(f"Graph API {method} {path}: cannot connect", code="unreachable") from exc
        except httpx.HTTPError as exc:  # an answer that cannot be read: broken compression, a redirect loop
            raise ProviderResponseError(f"Graph API {method} {path}: the answer could not be read "
                                        f"({exc.__class__.__name__})") from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise ProviderResponseError(f"Graph API {method} {path}: HTTP {response.status_code}, not JSON") from exc
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
            code = str(err.get("code", ""))
            info = classify_graph(code)
            cls: type[GraphError] = GraphAuthError if info.cls in ("token", "auth") else GraphError
            raise cls(f"Graph {code} ({info.title}): {err.get('message', '')}", code=code,
                      subcode=err.get("error_subcode"), http_status=response.status_code)
        if response.status_code >= 400 or not isinstance(body, dict):
            raise ProviderResponseError(f"Graph API {method} {path}: HTTP {response.status_code}")
        return body

    def templates(self) -> list[dict[str, Any]]:
        """Every message template of the WABA (cursor paging followed, at most MAX_PAGES pages)."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"fields": TEMPLATE_FIELDS, "limit": 100}
        for _ in range(MAX_PAGES):
            page = self.request("GET", f"/{self.endpoint.waba_id}/message_templates", params=params)
            data, paging = page.get("data"), page.get("paging") or {}
            cursors = paging.get("cursors") if isinstance(paging, dict) else None
            if (not isinstance(data, list) or not all(isinstance(t, dict) for t in data) or not isinstance(paging, dict)
                    or not isinstance(cursors or {}, dict)):
                raise ProviderResponseError("Graph API: the templates answer has no list of templates in 'data'")
            out += data
            after = (cursors or {}).get("after")
            if not paging.get("next") or not after:
                break
            params = {**params, "after": after}
        return out

    def phone_number(self) -> dict[str, Any]:
        phone = self.request("GET", f"/{self.endpoint.phone_number_id}", params={"fields": PHONE_FIELDS})
        if not isinstance(phone.get("status"), str) and not isinstance(phone.get("quality_rating"), str):
            raise ProviderResponseError("Graph API: the phone number answer has neither 'status' nor 'quality_rating'")
        return phone

    def app_token(self) -> str:
        if not self.endpoint.app_id or not self.endpoint.app_secret_env:
            raise ConfigError("whatsapp.app_id and whatsapp.app_secret_env are needed to inspect or exchange tokens")
        return f"{self.endpoint.app_id}|{secret(self.endpoint.app_secret_env, what='Meta app secret')}"

    def debug_token(self, token: str | None = None) -> dict[str, Any]:
        """`data` of debug_token for `token` (default: our access token), asked with the app token."""
        body = self.request("GET", "/debug_token", params={"input_token": token or self._token}, token=self.app_token())
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("is_valid"), bool):
            raise ProviderResponseError("Graph API: the debug_token answer has no 'data.is_valid'")
        return data

    def exchange_token(self) -> tuple[str, int | None]:
        """A new long-lived token for ours (fb_exchange_token); registered for redaction at once."""
        app_secret = secret(self.endpoint.app_secret_env, what="Meta app secret")
        body = self.request("GET", "/oauth/access_token", params={
            "grant_type": "fb_exchange_token", "client_id": self.endpoint.app_id, "client_secret": app_secret,
            "fb_exchange_token": self._token})
        token = str(body.get("access_token", ""))
        if not token:
            raise ProviderResponseError("token exchange answered without an access_token")
        REDACTOR.add_secret(token)
        expires = body.get("expires_in")
        return token, int(expires) if expires is not None else None

    def submit_template(self, payload: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/{self.endpoint.waba_id}/message_templates", json=payload)

    def send_template(self, to: str, template: str, language: str) -> dict[str, Any]:
        return self.request("POST", f"/{self.endpoint.phone_number_id}/messages", json={
            "messaging_product": "whatsapp", "to": to.lstrip("+"), "type": "template",
            "template": {"name": template, "language": {"code": language}}})


class GraphAuthError(GraphError, ProviderAuthError):
    """A Graph error whose code means the token or the app's permissions are the problem (190, 0, 3, 10, 2xx)."""


def _failed(name: str, title: str, exc: Exception, ms: float) -> CheckResult:
    if isinstance(exc, ConfigError):
        return CheckResult(name, title, "error", str(exc), classification="config", duration_ms=ms)
    if isinstance(exc, ProviderTimeout):
        return CheckResult(name, title, "error", f"could not check: {exc}", classification="unreachable",
                           duration_ms=ms)
    if isinstance(exc, GraphError):
        info = classify_graph(exc.code)
        status = "error" if info.category == TRANSIENT else "fail"  # throttled or Meta's own trouble: no answer
        # 100 with subcode 33: the object the profile names (the WABA, the phone number) does not exist for us
        cls = "config" if str(exc.code) == "100" and str(exc.subcode) == "33" else info.cls
        return CheckResult(name, title, status, str(exc) if status == "fail" else f"could not check: {exc}",
                           classification=cls, facts={"code": exc.code, "subcode": exc.subcode}, duration_ms=ms)
    return CheckResult(name, title, "error", f"could not check: {exc}", classification="provider_error",
                       duration_ms=ms)


def graph(endpoint: WhatsAppEndpoint | None, *, timeout: float, within: Dependency | None = None) -> Graph:
    if endpoint is None:
        raise ConfigError("WhatsApp is not configured in this environment")
    return Graph(endpoint, timeout=timeout, within=within)


def check_templates(endpoint: WhatsAppEndpoint | None, *, timeout: float, used: dict[str, int] | None = None,
                    name: str = "wa_templates", within: Dependency | None = None) -> tuple[CheckResult, list[dict[str, Any]]]:
    """Template statuses on the WABA; the templates failing messages used, joined to their status."""
    title = "WhatsApp message templates"
    with timed() as ms:
        try:
            templates = graph(endpoint, timeout=timeout, within=within).templates()
        except (ProviderError, ConfigError) as exc:
            return _failed(name, title, exc, ms()), []
    by_name: dict[str, list[dict[str, Any]]] = {}
    for t in templates:
        by_name.setdefault(str(t.get("name")), []).append(t)
    counts: dict[str, int] = {}
    for t in templates:
        counts[str(t.get("status"))] = counts.get(str(t.get("status")), 0) + 1
    used = used or {}
    bad_used = {n: [f"{t.get('language')}:{t.get('status')}" + (f" ({t.get('rejected_reason')})"
                                                                 if t.get("rejected_reason") not in (None, "NONE") else "")
                    for t in by_name.get(n, []) if t.get("status") in BAD_TEMPLATE]
                for n in used}
    bad_used = {n: v for n, v in bad_used.items() if v}
    missing = [n for n in used if n not in by_name and n != "(none)"]
    facts: dict[str, Any] = {"templates": len(templates), "by_status": counts, "failing_templates_not_approved": bad_used,
                             "failing_templates_missing": missing}
    if bad_used or missing:
        worst = max(bad_used, key=lambda n: used.get(n, 0)) if bad_used else missing[0]
        summary = ("templates used by failing messages are not approved: "
                   + "; ".join(f"{n} {', '.join(v)} ({used.get(n, 0):,} failures)" for n, v in bad_used.items())
                   + (f"; missing on the WABA: {', '.join(missing)}" if missing else ""))
        return CheckResult(name, title, "fail", summary, classification="template_not_approved",
                           facts={**facts, "worst": worst}, duration_ms=ms()), templates
    bad = sum(counts.get(s, 0) for s in BAD_TEMPLATE)
    summary = f"{len(templates)} templates: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    if bad:
        return CheckResult(name, title, "warn", summary + " (none of the not-approved ones is used by a failing message)",
                           classification="unused_not_approved", facts=facts, duration_ms=ms()), templates
    return CheckResult(name, title, "ok", summary, facts=facts, duration_ms=ms()), templates


def check_phone_number(endpoint: WhatsAppEndpoint | None, *, timeout: float, name: str = "wa_phone",
                       within: Dependency | None = None) -> CheckResult:
    """Quality rating, status, name status, messaging limit and throughput of the sending number."""
    title = "WhatsApp phone number health"
    with timed() as ms:
        try:
            phone = graph(endpoint, timeout=timeout, within=within).phone_number()
        except (ProviderError, ConfigError) as exc:
            return _failed(name, title, exc, ms())
    if isinstance(phone.get("display_phone_number"), str):  # the number we send from: ours, shown as it is
        REDACTOR.add_public(phone["display_phone_number"])
    facts = {k: phone.get(k) for k in ("display_phone_number", "quality_rating", "status", "name_status",
                                        "code_verification_status", "platform_type")}
    facts["throughput"] = (phone.get("throughput") or {}).get("level")
    facts["messaging_limit"] = phone.get("whatsapp_business_manager_messaging_limit")
    quality, status = str(phone.get("quality_rating", "NA")), str(phone.get("status", "UNKNOWN"))
    summary = f"quality {quality}, status {status}, name {facts['name_status']}, throughput {facts['throughput']}"
    if status in ("RESTRICTED",):
        return CheckResult(name, title, "fail", summary, classification="account_locked", facts=facts, duration_ms=ms())
    if status in ("DISCONNECTED", "UNVERIFIED", "PENDING") or phone.get("platform_type") == "NOT_APPLICABLE":
        return CheckResult(name, title, "fail", summary + " — not registered for the Cloud API",
                           classification="phone_not_registered", facts=facts, duration_ms=ms())
    if quality == "RED" or status == "FLAGGED":
        return CheckResult(name, title, "fail", summary, classification="quality", facts=facts, duration_ms=ms())
    if quality == "YELLOW" or status == "RATE_LIMITED":
        return CheckResult(name, title, "warn", summary, classification="quality", facts=facts, duration_ms=ms())
    return CheckResult(name, title, "ok", summary, facts=facts, duration_ms=ms())


def check_token(endpoint: WhatsAppEndpoint | None, *, timeout: float, now: datetime | None = None,
                name: str = "wa_token", within: Dependency | None = None) -> CheckResult:
    """debug_token: valid, expiry and scopes. Validity comes from the body (HTTP 200 can say invalid).

    Without `app_id` and `app_secret_env` the token cannot be inspected: the check is skipped (the
    other Graph checks still show whether the token works)."""
    title = "WhatsApp access token"
    now = now or datetime.now(UTC)
    if endpoint is not None and not (endpoint.app_id and endpoint.app_secret_env):
        return CheckResult(name, title, "skipped", "needs whatsapp.app_id and app_secret_env to inspect the token")
    with timed() as ms:
        try:
            data = graph(endpoint, timeout=timeout, within=within).debug_token()
        except (ProviderError, ConfigError) as exc:
            return _failed(name, title, exc, ms())
    expires = int(data.get("expires_at") or 0)
    days = None if expires == 0 else round((expires - now.timestamp()) / 86400, 1)
    scopes = [str(s) for s in data.get("scopes", [])]
    missing = [s for s in REQUIRED_SCOPES if s not in scopes]
    facts: dict[str, Any] = {"is_valid": bool(data.get("is_valid")), "type": data.get("type"),
                             "expires_in_days": days, "never_expires": expires == 0, "scopes": scopes,
                             "missing_scopes": missing}
    if not data.get("is_valid") or (days is not None and days <= 0):
        why = (data.get("error") or {}).get("message") or ("expired" if days is not None and days <= 0 else "invalid")
        return CheckResult(name, title, "fail", f"token is not valid: {why}", classification="token", facts=facts,
                           duration_ms=ms())
    if missing:
        return CheckResult(name, title, "fail", f"token lacks scopes: {', '.join(missing)}", classification="auth",
                           facts=facts, duration_ms=ms())
    if days is not None and days < TOKEN_WARN_DAYS:
        return CheckResult(name, title, "warn", f"valid, but expires in {days} days", classification="token_expiring",
                           facts=facts, duration_ms=ms())
    return CheckResult(name, title, "ok", "valid, " + ("never expires (system user)" if days is None else
                                                       f"expires in {days} days") + "; scopes present",
                       facts=facts, duration_ms=ms())

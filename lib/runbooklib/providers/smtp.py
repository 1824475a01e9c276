"""SMTP connectivity check and test send (smtplib, with a timeout and a verifying TLS context).

The check walks connect → EHLO → STARTTLS → EHLO → AUTH → NOOP and classifies the first failure:
`unreachable` (refused, DNS, timeout, no greeting), `tls` (no STARTTLS, handshake or certificate
failure), `auth_rejected` (535 and friends), `server_error` (any other SMTP reply or hang-up).
smtplib's exceptions all derive from OSError, so they are caught before OSError.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from runbooklib.checks import CheckResult, Step, timed
from runbooklib.errors import ConfigError, ProviderAuthError, ProviderResponseError, ProviderTimeout
from runbooklib.settings import SmtpEndpoint, optional_secret, secret

EHLO_NAME = "runbook.lineup.app"
UNREACHABLE = "unreachable"
TLS = "tls"
AUTH_REJECTED = "auth_rejected"
SERVER_ERROR = "server_error"


def tls_context(endpoint: SmtpEndpoint) -> ssl.SSLContext:
    """A verifying context (smtplib's default does not verify); unverified only when configured so."""
    ctx = ssl.create_default_context(cafile=endpoint.ca_file or None)
    if not endpoint.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def credentials(endpoint: SmtpEndpoint) -> tuple[str, str] | None:
    """(username, password) from the variables the endpoint names; None when it names none."""
    if not endpoint.username_env and not endpoint.password_env:
        return None
    user = optional_secret(endpoint.username_env) or ""
    password = secret(endpoint.password_env, what=f"SMTP password for {endpoint.host}")
    return user, password


class _Failure(Exception):
    def __init__(self, classification: str, detail: str) -> None:
        super().__init__(detail)
        self.classification = classification


def classify(exc: BaseException, stage: str) -> tuple[str, str]:
    """Map an smtplib/socket/ssl exception raised at `stage` to (classification, detail)."""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return AUTH_REJECTED, f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return (TLS if stage == "STARTTLS" else SERVER_ERROR), str(exc)
    if isinstance(exc, smtplib.SMTPConnectError):
        return SERVER_ERROR, f"greeting {exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return (UNREACHABLE if stage == "connect" else SERVER_ERROR), str(exc) or "server closed the connection"
    if isinstance(exc, smtplib.SMTPResponseException):
        return (TLS if stage == "STARTTLS" else SERVER_ERROR), f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, smtplib.SMTPException):
        return SERVER_ERROR, str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLS, f"certificate not trusted: {getattr(exc, 'verify_message', None) or exc}"
    if isinstance(exc, ssl.SSLError):
        return TLS, f"TLS handshake failed: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, socket.gaierror):
        return UNREACHABLE, f"DNS lookup failed: {exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return UNREACHABLE, "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return UNREACHABLE, "connection refused"
    if isinstance(exc, OSError):
        return (UNREACHABLE if stage == "connect" else SERVER_ERROR), f"{exc.__class__.__name__}: {exc}"
    return SERVER_ERROR, f"{exc.__class__.__name__}: {exc}"


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _open(endpoint: SmtpEndpoint, timeout: float, steps: list[Step],
          login: tuple[str, str] | None) -> smtplib.SMTP:
    """Connect and walk the handshake, appending a Step per stage; raises _Failure on the first failure."""
    ctx = tls_context(endpoint)
    client: smtplib.SMTP | None = None

    def stage(name: str, fn: Callable[[], Any], ok_detail: Callable[[Any], str]) -> Any:
        with timed() as ms:
            try:
                out = fn()
            except Exception as exc:  # every failure is classified, none escapes as a crash
                classification, detail = classify(exc, name)
                steps.append(Step(name, False, detail, ms()))
                if client is not None:
                    _quietly_close(client)
                raise _Failure(classification, f"{name}: {detail}") from exc
        steps.append(Step(name, True, ok_detail(out), ms()))
        return out

    if endpoint.security == "ssl":
        client = stage("connect", lambda: smtplib.SMTP_SSL(endpoint.host, endpoint.port, timeout=timeout,
                                                            context=ctx), lambda c: "implicit TLS")
    else:
        client = stage("connect", lambda: smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout),
                       lambda c: "greeting received")
    assert client is not None
    smtp = client
    stage("EHLO", lambda: _expect(smtp.ehlo(EHLO_NAME), 250), lambda r: f"{r[0]}")
    if endpoint.security == "starttls":
        stage("STARTTLS", lambda: smtp.starttls(context=ctx),
              lambda r: "TLS established" + ("" if endpoint.verify_tls else " (certificate NOT verified)"))
        stage("EHLO", lambda: _expect(smtp.ehlo(EHLO_NAME), 250), lambda r: f"{r[0]} after TLS")
    if login is not None:
        stage("AUTH", lambda: smtp.login(*login), lambda r: f"{r[0]} accepted")
    return smtp


def _expect(reply: tuple[int, bytes], code: int) -> tuple[int, bytes]:
    if reply[0] != code:
        raise smtplib.SMTPResponseException(reply[0], reply[1])
    return reply


def _quietly_close(client: smtplib.SMTP) -> None:
    try:
        client.close()
    except OSError:
        pass


def check_smtp(name: str, endpoint: SmtpEndpoint | None, *, timeout: float, label: str = "SMTP") -> CheckResult:
    """Connect, EHLO, STARTTLS (verifying), AUTH and NOOP against one server; classify any failure."""
    if endpoint is None:
        return CheckResult(name, label, "skipped", "not configured in this environment")
    title = f"{label} {endpoint.host}:{endpoint.port}"
    facts: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port, "security": endpoint.security,
                             "verify_tls": endpoint.verify_tls}
    try:
        login = credentials(endpoint)
    except ConfigError as exc:
        return CheckResult(name, title, "error", str(exc), classification="config", facts=facts)
    steps: list[Step] = []
    with timed() as ms:
        try:
            client = _open(endpoint, timeout, steps, login)
            try:
                code, message = client.noop()
                if code != 250:
                    steps.append(Step("NOOP", False, f"{code} {_text(message)}"))
                    raise _Failure(SERVER_ERROR, f"NOOP answered {code} {_text(message)}")
                steps.append(Step("NOOP", True, "250"))
            except _Failure:
                raise
            except Exception as exc:
                classification, detail = classify(exc, "NOOP")
                steps.append(Step("NOOP", False, detail))
                raise _Failure(classification, f"NOOP: {detail}") from exc
            finally:
                _quietly_close(client)
        except _Failure as failure:
            return CheckResult(name, title, "fail", str(failure), classification=failure.classification,
                               facts=facts, steps=steps, duration_ms=ms())
    status = "ok" if endpoint.verify_tls or endpoint.security == "none" else "warn"
    summary = "connect, TLS, AUTH and NOOP all succeeded" if login else "connect, TLS and NOOP succeeded (no AUTH configured)"
    if endpoint.security == "none":
        summary += "; connection is NOT encrypted"
    if not endpoint.verify_tls:
        summary += "; certificate NOT verified (verify_tls: false)"
    return CheckResult(name, title, status, summary, facts=facts, steps=steps, duration_ms=ms())


def send_email(endpoint: SmtpEndpoint, *, to: str, subject: str, body: str, timeout: float) -> dict[str, Any]:
    """Send one message through `endpoint`; returns {"accepted": [...], "refused": {...}}.

    Raises ProviderTimeout, ProviderAuthError or ProviderResponseError.
    """
    message = EmailMessage()
    message["From"] = endpoint.from_address
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        login = credentials(endpoint)
    except ConfigError as exc:
        raise ProviderAuthError(str(exc), code="config") from exc
    steps: list[Step] = []
    try:
        client = _open(endpoint, timeout, steps, login)
    except _Failure as failure:
        error = {UNREACHABLE: ProviderTimeout, AUTH_REJECTED: ProviderAuthError}.get(
            failure.classification, ProviderResponseError)
        raise error(str(failure), code=failure.classification) from failure
    try:
        refused = client.send_message(message)
    except smtplib.SMTPException as exc:
        raise ProviderResponseError(f"send: {classify(exc, 'DATA')[1]}", code=SERVER_ERROR) from exc
    finally:
        _quietly_close(client)
    return {"accepted": [to] if to not in refused else [], "refused": {k: list(v) for k, v in refused.items()}}

"""SMTP connectivity check and test send (smtplib, with timeouts, a total deadline and a verifying TLS context).

The check walks connect → EHLO → STARTTLS → EHLO → AUTH → NOOP and classifies the first failure:
`unreachable` (refused, DNS, timeout, no greeting), `deferred` (a 4xx reply at any stage: 421 too
many connections, 451/454 try again later — the relay is limiting or overloaded, the credentials and
certificate may be fine), `tls` (no STARTTLS, handshake or certificate failure), `auth_rejected` (535
and friends), `server_error` (any other SMTP reply or hang-up).
smtplib's exceptions all derive from OSError, so they are caught before OSError.

smtplib's timeout bounds each socket operation; a server that trickles its greeting a byte at a
time would hold the dialogue open for ever. So the whole dialogue runs under a total deadline: a
watchdog shuts the socket down when it passes, and the stage it stopped is reported as timed out.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from runbooklib.deadline import Dependency, watchdog
from runbooklib.endpoints.smtp import SmtpEndpoint
from runbooklib.errors import ConfigError, ProviderAuthError, ProviderResponseError, ProviderTimeout
from runbooklib.results import CheckResult, Step, timed
from runbooklib.settings import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, secret

EHLO_NAME = "runbook.lineup.app"
UNREACHABLE = "unreachable"
TLS = "tls"
AUTH_REJECTED = "auth_rejected"
SERVER_ERROR = "server_error"
DEFERRED = "deferred"
INSECURE = "insecure"
STATES: dict[str, dict[str, tuple[str, ...]]] = {"check_smtp": {
    UNREACHABLE: ("fail",), DEFERRED: ("fail",), TLS: ("fail",), AUTH_REJECTED: ("fail",), SERVER_ERROR: ("fail",),
    INSECURE: ("warn",)}}
"""Every state the check reports that is not OK (classification → statuses); `config` is could-not-check."""


def tls_context(endpoint: SmtpEndpoint) -> ssl.SSLContext:
    """A verifying context (smtplib's default does not verify); unverified only when configured so.

    Raises ConfigError when `ca_file` cannot be read as CA certificates."""
    try:
        ctx = ssl.create_default_context(cafile=endpoint.ca_file or None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"ca_file {endpoint.ca_file!r} cannot be used as CA certificates: "
                          f"{exc.__class__.__name__}: {exc}") from exc
    if not endpoint.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def credentials(endpoint: SmtpEndpoint) -> tuple[str, str] | None:
    """(username, password) from the variables the endpoint names; None when it names none."""
    if not endpoint.username_env and not endpoint.password_env:
        return None
    user = secret(endpoint.username_env, what=f"SMTP username for {endpoint.host}", parts=False) if endpoint.username_env else ""
    password = secret(endpoint.password_env, what=f"SMTP password for {endpoint.host}")
    return user, password


class _Failure(Exception):
    def __init__(self, classification: str, detail: str) -> None:
        super().__init__(detail)
        self.classification = classification


def classify(exc: BaseException, stage: str) -> tuple[str, str]:
    """Map an smtplib/socket/ssl exception raised at `stage` to (classification, detail)."""
    code = getattr(exc, "smtp_code", None)
    if isinstance(exc, smtplib.SMTPResponseException) and isinstance(code, int) and 400 <= code < 500:
        return DEFERRED, f"{code} {_text(exc.smtp_error)} (at {stage}: the server defers, try again later)"
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
        return _stalled(stage, "timed out")
    if isinstance(exc, ConnectionRefusedError):
        return UNREACHABLE, "connection refused"
    if isinstance(exc, OSError):
        return (UNREACHABLE if stage == "connect" else SERVER_ERROR), f"{exc.__class__.__name__}: {exc}"
    return SERVER_ERROR, f"{exc.__class__.__name__}: {exc}"


def _stalled(stage: str, detail: str) -> tuple[str, str]:
    """No answer in time at `stage`: no greeting is `unreachable`, a handshake that stalls is `tls`, the rest
    `server_error`."""
    if stage == "connect":
        return UNREACHABLE, detail
    if stage == "STARTTLS":
        return TLS, f"TLS handshake {detail}"
    return SERVER_ERROR, f"{detail} waiting for the answer to {stage}"


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def dependency(endpoint: SmtpEndpoint, seconds: float = DEFAULT_CONNECT_TIMEOUT + DEFAULT_READ_TIMEOUT) -> Dependency:
    """The SMTP server as a run's dependency: a whole dialogue within `seconds`."""
    return Dependency(f"SMTP {endpoint.host}:{endpoint.port}", seconds, ProviderTimeout)


class _Session:
    """One SMTP dialogue under a total deadline: each stage is timed, recorded as a Step and classified."""

    def __init__(self, endpoint: SmtpEndpoint, timeout: float, steps: list[Step], within: Dependency) -> None:
        self.endpoint, self.steps, self.within = endpoint, steps, within
        self.seconds = within.allowance(f"SMTP {endpoint.host}:{endpoint.port}")
        self.timeout = min(timeout, self.seconds)
        self.client: smtplib.SMTP | None = None
        self.fired: Callable[[], bool] = lambda: False

    def stage(self, name: str, fn: Callable[[], Any], ok_detail: Callable[[Any], str]) -> Any:
        with timed() as ms:
            try:
                out = fn()
                if self.fired():  # an answer cut short by the deadline (smtplib takes a partial line as a reply)
                    raise TimeoutError("the total deadline passed")
            except Exception as exc:  # every failure is classified, none escapes as a crash
                if self.fired():
                    self.within.trip(f"gave no complete answer within {self.seconds:g}s")
                    classification, detail = _stalled(name, f"no complete answer within {self.seconds:g}s "
                                                            "(total deadline)")
                else:
                    classification, detail = classify(exc, name)
                    if classification == UNREACHABLE:
                        self.within.trip(f"could not be reached ({detail})")
                self.steps.append(Step(name, False, detail, ms()))
                self.close()
                raise _Failure(classification, f"{name}: {detail}") from exc
        self.steps.append(Step(name, True, ok_detail(out), ms()))
        return out

    def open(self, login: tuple[str, str] | None) -> smtplib.SMTP:
        """Connect and walk the handshake; raises _Failure on the first failure."""
        endpoint, ctx = self.endpoint, tls_context(self.endpoint)
        # Made unconnected, so that the watchdog can reach the socket while the greeting is read.
        client = (smtplib.SMTP_SSL(timeout=self.timeout, context=ctx) if endpoint.security == "ssl"
                  else smtplib.SMTP(timeout=self.timeout))
        client._host = endpoint.host  # type: ignore[attr-defined]  # the TLS name; smtplib sets it only when it connects
        self.client = client
        self.stage("connect", lambda: _expect(client.connect(endpoint.host, endpoint.port), 220),
                   lambda r: "implicit TLS" if endpoint.security == "ssl" else "greeting received")
        self.stage("EHLO", lambda: _expect(client.ehlo(EHLO_NAME), 250), lambda r: f"{r[0]}")
        if endpoint.security == "starttls":
            self.stage("STARTTLS", lambda: client.starttls(context=ctx),
                       lambda r: "TLS established" + ("" if endpoint.verify_tls else " (certificate NOT verified)"))
            self.stage("EHLO", lambda: _expect(client.ehlo(EHLO_NAME), 250), lambda r: f"{r[0]} after TLS")
        if login is not None:
            self.stage("AUTH", lambda: client.login(*login), lambda r: f"{r[0]} accepted")
        return client

    def socket(self) -> Any:
        return getattr(self.client, "sock", None)

    def close(self) -> None:
        if self.client is not None:
            _quietly_close(self.client)


def _expect(reply: tuple[int, bytes], code: int) -> tuple[int, bytes]:
    if reply[0] != code:
        if code == 220:  # smtplib.SMTP(host) raises this for a bad greeting; connect() alone does not
            raise smtplib.SMTPConnectError(reply[0], reply[1])
        raise smtplib.SMTPResponseException(reply[0], reply[1])
    return reply


def _quietly_close(client: smtplib.SMTP) -> None:
    try:
        client.close()
    except OSError:
        pass


def check_smtp(name: str, endpoint: SmtpEndpoint | None, *, timeout: float, label: str = "SMTP",
               within: Dependency | None = None) -> CheckResult:
    """Connect, EHLO, STARTTLS (verifying), AUTH and NOOP against one server; classify any failure.

    `timeout` bounds each socket operation, `within` the whole dialogue (and remembers a server that did
    not answer, so a second check of it in the same run fails at once).
    """
    if endpoint is None:
        return CheckResult(name, label, "skipped", "not configured in this environment")
    title = f"{label} {endpoint.host}:{endpoint.port}"
    facts: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port, "security": endpoint.security,
                             "verify_tls": endpoint.verify_tls}
    try:
        login = credentials(endpoint)
        tls_context(endpoint)
    except ConfigError as exc:
        return CheckResult(name, title, "error", str(exc), classification="config", facts=facts)
    steps: list[Step] = []
    within = within or dependency(endpoint)
    with timed() as ms:
        try:
            session = _Session(endpoint, timeout, steps, within)
        except ProviderTimeout as exc:  # known down earlier in this run, or the run's time is up
            status = "fail" if within.down else "error"
            return CheckResult(name, title, status, str(exc), classification=UNREACHABLE, facts=facts,
                               duration_ms=ms())
        with watchdog(session.seconds, session.socket) as fired:
            session.fired = fired
            try:
                client = session.open(login)
                session.stage("NOOP", lambda: _expect(client.noop(), 250), lambda r: "250")
                session.close()
            except _Failure as failure:
                return CheckResult(name, title, "fail", str(failure), classification=failure.classification,
                                   facts=facts, steps=steps, duration_ms=ms())
    status = "ok" if endpoint.verify_tls or endpoint.security == "none" else "warn"
    summary = "connect, TLS, AUTH and NOOP all succeeded" if login else "connect, TLS and NOOP succeeded (no AUTH configured)"
    if endpoint.security == "none":
        summary += "; connection is NOT encrypted"
    if not endpoint.verify_tls:
        summary += "; certificate NOT verified (verify_tls: false)"
    return CheckResult(name, title, status, summary, facts=facts, steps=steps, duration_ms=ms(),
                       classification=INSECURE if status == "warn" else None)


def send_email(endpoint: SmtpEndpoint, *, to: str, subject: str, body: str, timeout: float,
               within: Dependency | None = None) -> dict[str, Any]:
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
        tls_context(endpoint)
    except ConfigError as exc:
        raise ProviderAuthError(str(exc), code="config") from exc
    steps: list[Step] = []
    session = _Session(endpoint, timeout, steps, within or dependency(endpoint))
    with watchdog(session.seconds, session.socket) as fired:
        session.fired = fired
        try:
            client = session.open(login)
            refused = session.stage("DATA", lambda: client.send_message(message), lambda r: "accepted")
        except _Failure as failure:
            error = {UNREACHABLE: ProviderTimeout, AUTH_REJECTED: ProviderAuthError}.get(
                failure.classification, ProviderResponseError)
            unsure = "; the message may or may not have been accepted" if str(failure).startswith("DATA") else ""
            raise error(f"{failure}{unsure}", code=failure.classification) from failure
        finally:
            session.close()
    return {"accepted": [to] if to not in refused else [], "refused": {k: list(v) for k, v in refused.items()}}

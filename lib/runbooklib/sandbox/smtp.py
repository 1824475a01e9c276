"""Local SMTP servers (aiosmtpd) with STARTTLS and AUTH, in the modes a scenario asks for.

Modes: `ok` (trusted certificate, credentials accepted), `down` (nothing listens on the port),
`bad_tls` (a certificate the client does not trust), `auth_reject` (every login gets 535),
`throttled` (after `throttle.after` connections within `throttle.per_seconds`, EHLO — or, for code
454, AUTH — gets the throttle's 4xx reply: the relay limiting us), `refusing` (EHLO gets 554: the
server refuses service).
Certificates are made at start-up with `cryptography`; the trusted one is the client's CA file.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import ssl
import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runbooklib.sandbox.ports import free_port


def make_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed EC certificate for 127.0.0.1 and localhost; returns (cert, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"comms-runbooks sandbox {name}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path




class _Recorder:
    def __init__(self, ehlo: Any = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.ehlo = ehlo
        """`ehlo(session)` → a reply that replaces EHLO's, or None (the server's throttle or refusal)."""

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,  # noqa: N802
                          responses: list[str]) -> list[str]:
        refused = self.ehlo(session) if self.ehlo is not None else None
        if refused:
            session.host_name = None
            return [refused]
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                              "data": (envelope.content or b"").decode(errors="replace")
                              if isinstance(envelope.content, bytes) else str(envelope.content)})
        return "250 OK"


def _exchange(mechanism: str, auth_data: Any) -> str:
    """The AUTH exchange as the client sent it (base64), for a server that echoes it back."""
    import base64

    login = getattr(auth_data, "login", b"") or b""
    password = getattr(auth_data, "password", b"") or b""
    if mechanism == "PLAIN":
        return "AUTH PLAIN " + base64.b64encode(b"\0" + login + b"\0" + password).decode()
    return f"AUTH {mechanism} " + " ".join(base64.b64encode(part).decode() for part in (login, password))


class SmtpServer:
    """One sandbox SMTP server on 127.0.0.1."""

    def __init__(self, mode: str, *, username: str, password: str, certs: dict[str, tuple[Path, Path]],
                 echo: str = "off", throttle: dict[str, Any] | None = None) -> None:
        self.mode = mode
        self.echo = echo
        """`errors` / `always` (scenario `echo.credentials`): a refused login's 535 echoes the AUTH exchange."""
        self.username, self.password = username, password
        self.throttle = dict(throttle or {"after": 0, "per_seconds": 60, "code": 421, "message": "4.7.0 Slow down"})
        self._connections: list[float] = []
        self.port = free_port()
        self.recorder = _Recorder(self._ehlo)
        self.controller: Controller | None = None
        self.certs = certs

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.recorder.messages

    def _over_rate(self) -> bool:
        """Whether the connections within the throttle's period are over its rate."""
        now = time.monotonic()
        window = float(self.throttle["per_seconds"])
        return len([t for t in self._connections if now - t < window]) > int(self.throttle["after"])

    def _ehlo(self, session: Session) -> str | None:
        if session.ssl is None:  # each connection counted once, at its EHLO before TLS
            self._connections.append(time.monotonic())
        if self.mode == "refusing":
            return "554 5.7.1 Service unavailable; client host refused"
        if self.mode == "throttled" and int(self.throttle["code"]) != 454 and session.ssl is None and self._over_rate():
            return f"{int(self.throttle['code'])} {self.throttle['message']}"
        return None

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if self.mode == "throttled" and int(self.throttle["code"]) == 454 and self._over_rate():
            return AuthResult(success=False, handled=False, message=f"454 {self.throttle['message']}")
        ok = (self.mode != "auth_reject" and isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == self.username and auth_data.password.decode() == self.password)
        if self.echo == "always" or (self.echo == "errors" and not ok):
            echoed = _exchange(mechanism, auth_data)
            return AuthResult(success=False, handled=False, message=f"535 5.7.8 Authentication failed: {echoed}")
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpServer:
        # aiosmtpd logs a deprecation line per AUTH and a traceback per refused TLS handshake; the
        # client side is what the runbook reports, so the server's own log is kept quiet.
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)
        if self.mode == "down":
            return self  # the port was free when chosen and nothing listens on it: connection refused
        cert, key = self.certs["untrusted" if self.mode == "bad_tls" else "trusted"]
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(str(cert), str(key))
        self.controller = Controller(
            self.recorder, hostname="127.0.0.1", port=self.port, ready_timeout=5,
            server_hostname="sandbox.smtp.local", tls_context=tls, require_starttls=True,
            authenticator=self._authenticate, auth_required=True, auth_require_tls=True,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

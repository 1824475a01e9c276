"""SMTP check against real aiosmtpd servers (STARTTLS + AUTH), one per failure mode."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooklib.endpoints.smtp import SmtpEndpoint
from runbooklib.errors import ProviderAuthError, ProviderTimeout
from runbooklib.providers.smtp import check_smtp, classify, send_email
from runbooklib.sandbox.smtp import SmtpServer, make_certificate

USER, PASSWORD = "smtp-test-user-81f2", "correct-horse-battery"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("certs")
    return {n: make_certificate(d, n) for n in ("trusted", "untrusted")}


@pytest.fixture
def server(request: pytest.FixtureRequest, certs: dict[str, tuple[Path, Path]]) -> Iterator[SmtpServer]:
    srv = SmtpServer(request.param, username=USER, password=PASSWORD, certs=certs).start()
    yield srv
    srv.stop()


def endpoint(srv: SmtpServer, certs: dict[str, tuple[Path, Path]], **kw: object) -> SmtpEndpoint:
    return SmtpEndpoint(host="127.0.0.1", port=srv.port, ca_file=str(certs["trusted"][0]), username_env="T_SMTP_USER",
                        password_env="T_SMTP_PASSWORD", **kw)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_SMTP_USER", USER)
    monkeypatch.setenv("T_SMTP_PASSWORD", PASSWORD)


@pytest.mark.parametrize(("server", "status", "classification", "failed_step"), [
    ("ok", "ok", None, None),
    ("down", "fail", "unreachable", "connect"),
    ("bad_tls", "fail", "tls", "STARTTLS"),
    ("auth_reject", "fail", "auth_rejected", "AUTH"),
], indirect=["server"])
def test_each_failure_is_classified_at_its_step(server: SmtpServer, certs: dict[str, tuple[Path, Path]], status: str,
                                               classification: str | None, failed_step: str | None) -> None:
    result = check_smtp("smtp", endpoint(server, certs), timeout=3)
    assert (result.status, result.classification) == (status, classification), result.summary
    if failed_step:
        assert [s.name for s in result.steps if not s.ok] == [failed_step]
    else:
        assert [s.name for s in result.steps] == ["connect", "EHLO", "STARTTLS", "EHLO", "AUTH", "NOOP"]


@pytest.mark.parametrize("server", ["bad_tls"], indirect=True)
def test_unverified_tls_passes_but_warns(server: SmtpServer, certs: dict[str, tuple[Path, Path]]) -> None:
    result = check_smtp("smtp", endpoint(server, certs, verify_tls=False), timeout=3)
    assert result.status == "warn" and "NOT verified" in result.summary


@pytest.mark.parametrize("server", ["ok"], indirect=True)
def test_missing_password_variable_is_a_config_error(server: SmtpServer, certs: dict[str, tuple[Path, Path]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_SMTP_PASSWORD")
    result = check_smtp("smtp", endpoint(server, certs), timeout=3)
    assert result.status == "error" and "$T_SMTP_PASSWORD" in result.summary


@pytest.mark.parametrize("server", ["ok"], indirect=True)
def test_send_email_is_accepted(server: SmtpServer, certs: dict[str, tuple[Path, Path]]) -> None:
    out = send_email(endpoint(server, certs), to="oncall@lineup.app", subject="t", body="b", timeout=3)
    assert out["accepted"] == ["oncall@lineup.app"]
    assert server.messages[0]["to"] == ["oncall@lineup.app"]


@pytest.mark.parametrize(("server", "error"), [("down", ProviderTimeout), ("auth_reject", ProviderAuthError)],
                         indirect=["server"])
def test_send_email_failures_are_provider_errors(server: SmtpServer, certs: dict[str, tuple[Path, Path]],
                                                 error: type[Exception]) -> None:
    with pytest.raises(error):
        send_email(endpoint(server, certs), to="oncall@lineup.app", subject="t", body="b", timeout=3)


def test_not_configured_is_skipped() -> None:
    assert check_smtp("smtp_backup", None, timeout=1).status == "skipped"


@pytest.mark.parametrize(("exc", "stage", "expected"), [
    (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad"), "AUTH", "auth_rejected"),
    (smtplib.SMTPNotSupportedError("STARTTLS extension not supported"), "STARTTLS", "tls"),
    (smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported"), "AUTH", "server_error"),
    (smtplib.SMTPConnectError(554, b"go away"), "connect", "server_error"),
    (smtplib.SMTPServerDisconnected("Connection unexpectedly closed: timed out"), "connect", "unreachable"),
    (smtplib.SMTPServerDisconnected("closed"), "NOOP", "server_error"),
    (smtplib.SMTPResponseException(454, b"TLS not available due to temporary reason"), "STARTTLS", "deferred"),
    (smtplib.SMTPResponseException(421, b"busy"), "EHLO", "deferred"),
    (smtplib.SMTPAuthenticationError(454, b"4.7.0 Temporary authentication failure"), "AUTH", "deferred"),
    (smtplib.SMTPResponseException(554, b"5.7.1 client host refused"), "EHLO", "server_error"),
    (smtplib.SMTPResponseException(530, b"Must issue a STARTTLS command first"), "STARTTLS", "tls"),
    (smtplib.SMTPException("No suitable authentication method found."), "AUTH", "server_error"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "STARTTLS", "tls"),
    (ssl.SSLError(1, "wrong version"), "STARTTLS", "tls"),
    (socket.gaierror(-2, "Name or service not known"), "connect", "unreachable"),
    (TimeoutError(), "connect", "unreachable"),
    (ConnectionRefusedError(111, "refused"), "connect", "unreachable"),
    (ConnectionResetError(104, "reset"), "NOOP", "server_error"),
])
def test_every_smtplib_failure_maps_to_a_class(exc: BaseException, stage: str, expected: str) -> None:
    assert classify(exc, stage)[0] == expected


@pytest.mark.parametrize(("code", "failed_step"), [(421, "EHLO"), (451, "EHLO"), (454, "AUTH")])
def test_a_throttling_relay_is_deferred_not_a_credential_or_tls_problem(certs: dict[str, tuple[Path, Path]], code: int,
                                                                         failed_step: str) -> None:
    """A relay over its rate answers 4xx (421 at EHLO, 454 at AUTH): `deferred`, never `auth_rejected` or `tls`."""
    srv = SmtpServer("throttled", username=USER, password=PASSWORD, certs=certs,
                     throttle={"after": 1, "per_seconds": 60, "code": code, "message": "4.7.0 Slow down"}).start()
    try:
        first = check_smtp("smtp", endpoint(srv, certs), timeout=3)
        second = check_smtp("smtp", endpoint(srv, certs), timeout=3)
    finally:
        srv.stop()
    assert first.status == "ok", first.summary  # under the rate
    assert (second.status, second.classification) == ("fail", "deferred"), second.summary
    assert [s.name for s in second.steps if not s.ok] == [failed_step]
    assert str(code) in second.summary


def test_a_refusing_relay_is_a_server_error(certs: dict[str, tuple[Path, Path]]) -> None:
    srv = SmtpServer("refusing", username=USER, password=PASSWORD, certs=certs).start()
    try:
        result = check_smtp("smtp", endpoint(srv, certs), timeout=3)
    finally:
        srv.stop()
    assert (result.status, result.classification) == ("fail", "server_error") and "554" in result.summary

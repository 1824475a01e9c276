"""Twilio checks through the real `twilio` client against the Twilio stand-in (Twilio's wire shapes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException

from runbooklib.endpoints.twilio import TwilioEndpoint
from runbooklib.errors import ProviderAuthError, ProviderResponseError, ProviderTimeout
from runbooklib.providers import twilio as tw
from runbooklib.sandbox.ports import free_port
from runbooklib.sandbox.scenario import DEFAULTS
from runbooklib.sandbox.standins import TwilioStandIn

SID, TOKEN = "AC" + "0" * 31 + "1", "twilio-token-for-tests"


@pytest.fixture(autouse=True)
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_TWILIO_SID", SID)
    monkeypatch.setenv("T_TWILIO_TOKEN", TOKEN)


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> Iterator[TwilioStandIn]:
    srv = TwilioStandIn(sid=SID, token=TOKEN, scenario={**DEFAULTS["twilio"], **getattr(request, "param", {})}).start()
    yield srv
    srv.stop()


def endpoint(url: str, **kw: Any) -> TwilioEndpoint:
    return TwilioEndpoint(auth_token_env="T_TWILIO_TOKEN", account_sid_env="T_TWILIO_SID", api_base_url=url,
                          from_numbers=kw.pop("from_numbers", ("+15005550006",)), **kw)


@pytest.mark.parametrize(("standin", "status", "classification"), [
    ({}, "ok", None),
    ({"account_status": "suspended"}, "fail", "account_suspended"),
    ({"account_status": "closed"}, "fail", "account_suspended"),
    ({"auth": "reject"}, "fail", "auth_failed"),
], indirect=["standin"])
def test_account(standin: TwilioStandIn, status: str, classification: str | None) -> None:
    result = tw.check_account(endpoint(standin.url), timeout=3)
    assert (result.status, result.classification) == (status, classification), result.summary


@pytest.mark.parametrize(("standin", "numbers", "status", "words"), [
    ({}, ("+15005550006",), "ok", "present and SMS-capable"),
    ({}, ("+15005550009",), "fail", "not SMS-capable: +15005550009"),
    ({}, ("+15005550001",), "fail", "not on the account: +15005550001"),
    ({"auth": "reject"}, ("+15005550006",), "fail", "credentials rejected"),
], indirect=["standin"])
def test_sending_numbers(standin: TwilioStandIn, numbers: tuple[str, ...], status: str, words: str) -> None:
    result = tw.check_numbers(endpoint(standin.url, from_numbers=numbers), timeout=3)
    assert result.status == status and words in result.summary, result.summary


@pytest.mark.parametrize("standin", [{"numbers": [{"phone_number": f"+1500555{i:04d}", "sms": True}
                                                  for i in range(120)]}], indirect=True)
def test_numbers_are_read_across_pages(standin: TwilioStandIn) -> None:
    result = tw.check_numbers(endpoint(standin.url, from_numbers=("+15005550119",)), timeout=3)
    assert result.ok and result.facts["on_account"] == 120
    assert sum(1 for r in standin.requests if "IncomingPhoneNumbers" in r["path"]) == 3


def test_unreachable_twilio_is_a_finding() -> None:
    result = tw.check_account(endpoint(f"http://127.0.0.1:{free_port()}"), timeout=2)
    assert (result.status, result.classification) == ("error", "unreachable")  # could not check: no verdict on it


def test_missing_token_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_TWILIO_TOKEN")
    result = tw.check_account(endpoint("http://127.0.0.1:1"), timeout=1)
    assert result.status == "error" and "$T_TWILIO_TOKEN" in result.summary


def test_send_sms(standin: TwilioStandIn) -> None:
    out = tw.send_sms(endpoint(standin.url), to="+15551230000", body="hello", timeout=3)
    assert out["sid"].startswith("SM") and out["status"] == "queued"
    assert standin.sent[0]["to"] == "+15551230000"


@pytest.mark.parametrize("standin", [{"create_error": {"status": 429, "code": 20429, "message": "Too Many Requests"}}],
                         indirect=True)
def test_send_sms_rate_limited_keeps_the_twilio_code(standin: TwilioStandIn) -> None:
    with pytest.raises(ProviderResponseError) as info:
        tw.send_sms(endpoint(standin.url), to="+15551230000", body="hello", timeout=3)
    assert info.value.code == "20429"


class _Response:
    def __init__(self, status: int, text: str) -> None:
        self.status_code, self.text = status, text


@pytest.mark.parametrize(("exc", "error", "code"), [
    (TwilioRestException(401, "/x", "Authenticate", code=20003), ProviderAuthError, "20003"),
    (TwilioRestException(400, "/x", "Invalid To", code=21211), ProviderResponseError, "21211"),
    (TwilioRestException(500, "/x", "boom"), ProviderResponseError, "500"),
    (TwilioException("Unable to fetch page", _Response(401, '{"code": 20003}')), ProviderAuthError, "20003"),
    (TwilioException("Unable to fetch page", _Response(429, '{"code": 20429}')), ProviderResponseError, "20429"),
    (TwilioException("Unable to fetch page", _Response(502, "bad gateway")), ProviderResponseError, "502"),
    (TwilioServiceException(status=403, code=20403, title="Forbidden", detail="", instance="", type_uri=""),
     ProviderAuthError, "20403"),
    (requests.exceptions.ConnectTimeout(), ProviderTimeout, "timeout"),
    (requests.exceptions.ReadTimeout(), ProviderTimeout, "timeout"),
    (requests.exceptions.ConnectionError(), ProviderTimeout, "unreachable"),
])
def test_every_twilio_failure_is_normalised(exc: BaseException, error: type[Exception], code: str) -> None:
    mapped = tw.normalise(exc)
    assert isinstance(mapped, error) and mapped.code == code


@pytest.mark.parametrize("standin", [{"throttle": {"after": 1, "per_seconds": 60}}], indirect=True)
def test_a_throttled_api_answers_429_and_the_check_says_it_could_not_check(standin: TwilioStandIn) -> None:
    first = tw.check_account(endpoint(standin.url), timeout=3)
    second = tw.check_numbers(endpoint(standin.url), timeout=3)
    assert first.status == "ok", first.summary
    assert second.status == "error" and "20429" in second.summary, second.summary  # a 429 establishes nothing

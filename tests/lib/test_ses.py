"""SES checks through boto3 against the SES stand-in (AWS wire format: Query XML and REST JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import botocore.exceptions as bx
import pytest
from botocore.parsers import ResponseParserError

from runbooklib.endpoints.ses import SesEndpoint
from runbooklib.providers import ses
from runbooklib.sandbox.ports import free_port
from runbooklib.sandbox.scenario import DEFAULTS
from runbooklib.sandbox.standins import SesStandIn


@pytest.fixture(autouse=True)
def aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_AWS_KEY", "AKIATESTTESTTEST")
    monkeypatch.setenv("T_AWS_SECRET", "test-secret-key-value")


def start(**overrides: Any) -> SesStandIn:
    return SesStandIn(scenario={**DEFAULTS["ses"], **overrides}).start()


@pytest.fixture
def standin(request: pytest.FixtureRequest) -> Iterator[SesStandIn]:
    srv = start(**getattr(request, "param", {}))
    yield srv
    srv.stop()


def clients(url: str) -> tuple[Any, Any]:
    ep = SesEndpoint(region="us-east-1", endpoint_url=url, access_key_id_env="T_AWS_KEY",
                     secret_access_key_env="T_AWS_SECRET")
    return ses.clients(ep, connect_timeout=2, read_timeout=3)


@pytest.mark.parametrize(("standin", "status", "classification", "used"), [
    ({}, "ok", None, 0.182),
    ({"sent_last_24_hours": 50000.0}, "fail", "quota_exhausted", 1.0),
    ({"sent_last_24_hours": 42000.0}, "warn", "quota_high", 0.84),
    ({"max_24_hour_send": -1.0}, "ok", None, None),
], indirect=["standin"])
def test_quota(standin: SesStandIn, status: str, classification: str | None, used: float | None) -> None:
    v1, _ = clients(standin.url)
    result = ses.check_quota(v1)
    assert (result.status, result.classification) == (status, classification)
    assert result.facts["quota_used"] == used


@pytest.mark.parametrize(("standin", "status", "classification"), [
    ({}, "ok", None),
    ({"sending_enabled": False}, "fail", "sending_disabled"),
    ({"enforcement_status": "SHUTDOWN"}, "fail", "sending_disabled"),
    ({"enforcement_status": "PROBATION"}, "warn", "account_review"),
    ({"production_access": False}, "warn", "account_review"),
], indirect=["standin"])
def test_account(standin: SesStandIn, status: str, classification: str | None) -> None:
    result = ses.check_account(*clients(standin.url))
    assert (result.status, result.classification) == (status, classification), result.summary


@pytest.mark.parametrize(("standin", "status"), [
    ({}, "ok"), ({"bounce_rate": 0.07}, "warn"), ({"bounce_rate": 0.12}, "fail"), ({"complaint_rate": 0.006}, "fail"),
], indirect=["standin"])
def test_reputation(standin: SesStandIn, status: str) -> None:
    result = ses.check_reputation(clients(standin.url)[0], now=datetime.now(UTC))
    assert result.status == status, result.summary
    assert result.facts["data_points"] == 96


@pytest.mark.parametrize("standin", [{"access_denied": True}], indirect=True)
def test_access_denied_is_a_permission_problem_on_both_apis(standin: SesStandIn) -> None:
    v1, v2 = clients(standin.url)
    assert ses.check_quota(v1).classification == "permission_denied"
    assert ses.check_account(v1, v2).classification == "permission_denied"
    with pytest.raises(bx.ClientError):
        v2.get_account()
    try:
        v2.get_account()
    except bx.ClientError as exc:
        assert ses.classify(exc)[0] == "permission_denied"


class ThrottlingStandIn(SesStandIn):
    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Any:
        return self._error(400, "Throttling", "Maximum sending rate exceeded.")


def test_retries_are_off_so_a_throttled_call_is_sent_once() -> None:
    srv = ThrottlingStandIn(scenario=dict(DEFAULTS["ses"])).start()
    try:
        result = ses.check_quota(clients(srv.url)[0])
        assert result.classification == "throttled"
        assert len(srv.requests) == 1
    finally:
        srv.stop()


def test_unreachable_endpoint_is_a_finding_not_a_crash() -> None:
    result = ses.check_quota(clients(f"http://127.0.0.1:{free_port()}")[0])
    assert (result.status, result.classification) == ("error", "unreachable")  # could not check: no verdict on it


@pytest.mark.parametrize(("exc", "expected"), [
    (bx.ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetSendQuota"), "permission_denied"),
    (bx.ClientError({"Error": {"Code": "InvalidClientTokenId", "Message": "no"}}, "GetSendQuota"), "credentials_invalid"),
    (bx.ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "GetSendQuota"), "throttled"),
    (bx.ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow"}}, "GetAccount"), "throttled"),
    (bx.ClientError({"Error": {"Code": "AccountSendingPausedException", "Message": "p"}}, "SendEmail"), "sending_disabled"),
    (bx.ClientError({"Error": {"Code": "MessageRejected", "Message": "r"}}, "SendEmail"), "provider_error"),
    (bx.NoCredentialsError(), "config"),
    (bx.EndpointConnectionError(endpoint_url="http://x"), "unreachable"),
    (bx.ConnectTimeoutError(endpoint_url="http://x"), "unreachable"),
    (bx.ReadTimeoutError(endpoint_url="http://x"), "unreachable"),
    (ResponseParserError("bad"), "bad_response"),
])
def test_every_botocore_failure_maps_to_a_class(exc: BaseException, expected: str) -> None:
    assert ses.classify(exc)[0] == expected


@pytest.mark.parametrize("standin", [{}], indirect=True)
def test_send_email_through_the_api(standin: SesStandIn) -> None:
    out = ses.send_email(clients(standin.url)[0], source="runbook@lineup.app", to="oncall@lineup.app", subject="s",
                         body="b")
    assert out["message_id"] and standin.sent[0]["to"] == "oncall@lineup.app"

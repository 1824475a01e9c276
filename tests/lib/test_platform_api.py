from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from runbooklib.errors import PlatformAPIError, PlatformAuthError, PlatformResponseError, PlatformUnreachable
from runbooklib.platform_api import PlatformAPI
from runbooklib.sandbox.ports import free_port
from runbooklib.sandbox.scenario import DEFAULTS
from runbooklib.sandbox.standins import PlatformStandIn

TOKEN = "platform-token-for-tests"


@pytest.fixture
def standin() -> Iterator[PlatformStandIn]:
    srv = PlatformStandIn(token=TOKEN, scenario=DEFAULTS["platform"], tenants=["acme", "globex"], queue="email").start()
    yield srv
    srv.stop()


def test_queue_metrics_and_one_queue(standin: PlatformStandIn) -> None:
    api = PlatformAPI(standin.url, TOKEN)
    names = [q["queue"] for q in api.queue_metrics()]
    assert names == ["email", "sms", "whatsapp", "communication-dlq"]
    assert api.queue("communication-dlq") is not None and api.queue("nope") is None


def test_channel_read_and_switch(standin: PlatformStandIn) -> None:
    api = PlatformAPI(standin.url, TOKEN)
    assert api.get_channel("email", "acme")["provider"] == "ses"
    api.set_channel_provider("email", "acme", "smtp_backup")
    assert api.get_channel("email", "acme")["provider"] == "smtp_backup"
    assert api.get_channel("email", "globex")["provider"] == "ses"
    assert [m["query"] for m in standin.mutations()] == [{"tenant_id": "acme"}]


def test_bad_token_is_an_auth_error(standin: PlatformStandIn) -> None:
    with pytest.raises(PlatformAuthError) as info:
        PlatformAPI(standin.url, "wrong").queue_metrics()
    assert info.value.status == 401


def test_unknown_tenant_is_a_response_error(standin: PlatformStandIn) -> None:
    with pytest.raises(PlatformResponseError, match="404"):
        PlatformAPI(standin.url, TOKEN).get_channel("email", "nobody")


def test_nothing_listening_is_unreachable() -> None:
    with pytest.raises(PlatformUnreachable, match="cannot connect"):
        PlatformAPI(f"http://127.0.0.1:{free_port()}", TOKEN, connect_timeout=1).queue_metrics()


@pytest.mark.parametrize(("exc", "expected"), [
    (httpx.ConnectTimeout("t"), PlatformUnreachable), (httpx.ReadTimeout("t"), PlatformUnreachable),
    (httpx.PoolTimeout("t"), PlatformUnreachable), (httpx.WriteTimeout("t"), PlatformUnreachable),
    (httpx.ConnectError("c"), PlatformUnreachable), (httpx.ReadError("r"), PlatformUnreachable),
    (httpx.RemoteProtocolError("p"), PlatformUnreachable), (httpx.ProxyError("p"), PlatformUnreachable),
])
def test_every_transport_error_is_mapped(exc: Exception, expected: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(expected):
        PlatformAPI("http://lineup.test", TOKEN, transport=httpx.MockTransport(handler)).queue_metrics()


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, b"not json", PlatformResponseError), (200, b'{"queue": "email"}', PlatformResponseError),
    (500, b"oops", PlatformResponseError), (403, b"{}", PlatformAuthError),
])
def test_bad_answers_are_mapped(status: int, body: bytes, expected: type[Exception]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=body))
    with pytest.raises(expected):
        PlatformAPI("http://lineup.test", TOKEN, transport=transport).queue_metrics()


def test_channel_fallback_do_not_contact_and_retry(standin: PlatformStandIn) -> None:
    api = PlatformAPI(standin.url, TOKEN)
    api.update_channel("sms", "acme", {"fallback": {"channel": "WHATSAPP", "priorities": ["urgent"]}})
    assert api.get_channel("sms", "acme")["fallback"] == {"channel": "WHATSAPP", "priorities": ["urgent"]}
    api.add_do_not_contact("SMS", "acme", ["+15550000001", "+15550000002"])
    assert api.do_not_contact("SMS", "acme") == ["+15550000001", "+15550000002"]
    api.remove_do_not_contact("SMS", "acme", ["+15550000001"])
    assert api.do_not_contact("SMS", "acme") == ["+15550000002"]
    out = api.retry_failed("SMS", message_ids=["m1", "m2"], created_before="2026-12-01T00:00:00+00:00", maximum=2,
                           exclude_error_codes=["21610", "21211"])
    assert out == {"channel": "SMS", "retried": 0}
    assert standin.requests[-1]["query"] == {"channel": "SMS", "created_before": "2026-12-01T00:00:00+00:00", "max": "2",
                                             "exclude_error_codes": "21610,21211"}
    assert json.loads(standin.requests[-1]["body"]) == {"message_ids": ["m1", "m2"]}
    with pytest.raises(PlatformAPIError, match="exceed max"):  # the bound is the platform's too
        api.retry_failed("SMS", message_ids=["m1", "m2", "m3"], created_before="2026-12-01T00:00:00+00:00", maximum=2)


def test_bad_fallback_is_refused(standin: PlatformStandIn) -> None:
    with pytest.raises(PlatformResponseError, match="400"):
        PlatformAPI(standin.url, TOKEN).update_channel("sms", "acme", {"fallback": {"channel": "PIGEON"}})

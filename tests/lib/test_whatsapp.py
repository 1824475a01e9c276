"""WhatsApp Cloud API checks through httpx against the Graph API stand-in (Meta's shapes and errors)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from runbooklib.endpoints.whatsapp import WhatsAppEndpoint
from runbooklib.errors import ConfigError, ProviderTimeout
from runbooklib.providers import whatsapp as wa
from runbooklib.sandbox.ports import free_port
from runbooklib.sandbox.scenario import DEFAULTS
from runbooklib.sandbox.standins import GraphStandIn

TOKEN, SECRET, APP, WABA, PHONE = "EAAGtesttoken0123456789", "app-secret-for-tests", "740551209813274", "1022901", "1065403"


@pytest.fixture(autouse=True)
def creds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_WA_TOKEN", TOKEN)
    monkeypatch.setenv("T_WA_SECRET", SECRET)


def scenario(**overrides: Any) -> dict[str, Any]:
    state = copy.deepcopy(DEFAULTS["whatsapp"])
    for key, value in overrides.items():
        if key == "phone":
            state["phone"].update(value)
        else:
            state[key] = value
    return state


@pytest.fixture
def graph(request: pytest.FixtureRequest) -> Iterator[GraphStandIn]:
    srv = GraphStandIn(token=TOKEN, app_id=APP, app_secret=SECRET, waba_id=WABA, phone_id=PHONE,
                       scenario=scenario(**getattr(request, "param", {}))).start()
    yield srv
    srv.stop()


def endpoint(url: str) -> WhatsAppEndpoint:
    return WhatsAppEndpoint(waba_id=WABA, phone_number_id=PHONE, access_token_env="T_WA_TOKEN", graph_url=url,
                            app_id=APP, app_secret_env="T_WA_SECRET")


def test_templates_are_read_from_the_waba_across_pages(graph: GraphStandIn) -> None:
    graph.templates = [dict(t, name=f"t{i}", id=str(i)) for i, t in enumerate(graph.templates * 60)]
    result, templates = wa.check_templates(endpoint(graph.url), timeout=3)
    assert result.ok and len(templates) == 240
    assert all(r["path"] == f"/v26.0/{WABA}/message_templates" for r in graph.requests)
    assert len(graph.requests) == 3


def test_failing_templates_are_joined_to_their_status(graph: GraphStandIn) -> None:
    graph.templates[1]["status"] = "PAUSED"
    result, _ = wa.check_templates(endpoint(graph.url), timeout=3, used={"event_reminder": 40, "gone_template": 3})
    assert result.classification == "template_not_approved"
    assert result.facts["failing_templates_not_approved"] == {"event_reminder": ["en_US:PAUSED"]}
    assert result.facts["failing_templates_missing"] == ["gone_template"]


@pytest.mark.parametrize(("graph", "status", "classification"), [
    ({}, "ok", None),
    ({"phone": {"quality_rating": "YELLOW"}}, "warn", "quality"),
    ({"phone": {"quality_rating": "RED", "status": "FLAGGED"}}, "fail", "quality"),
    ({"phone": {"status": "DISCONNECTED"}}, "fail", "phone_not_registered"),
    ({"phone": {"status": "RESTRICTED"}}, "fail", "account_locked"),
], indirect=["graph"])
def test_phone_number_health(graph: GraphStandIn, status: str, classification: str | None) -> None:
    result = wa.check_phone_number(endpoint(graph.url), timeout=3)
    assert (result.status, result.classification) == (status, classification), result.summary
    assert "whatsapp_business_manager_messaging_limit" in graph.requests[0]["query"]["fields"]


@pytest.mark.parametrize(("graph", "status", "classification"), [
    ({}, "ok", None),
    ({"token": "expired"}, "fail", "token"),
    ({"token_expires_in_days": 3}, "warn", "token_expiring"),
    ({"scopes": ["whatsapp_business_management"]}, "fail", "auth"),
], indirect=["graph"])
def test_token_validity_comes_from_the_body(graph: GraphStandIn, status: str, classification: str | None) -> None:
    result = wa.check_token(endpoint(graph.url), timeout=3, now=datetime.now(UTC))
    assert (result.status, result.classification) == (status, classification), result.summary
    assert TOKEN not in str(result.to_json()) and TOKEN not in result._repr_html_()


@pytest.mark.parametrize("graph", [{"token": "expired"}], indirect=True)
def test_expired_token_is_code_190_whatever_the_http_status(graph: GraphStandIn) -> None:
    result = wa.check_phone_number(endpoint(graph.url), timeout=3)
    assert result.classification == "token" and result.facts["code"] == "190" and result.facts["subcode"] == 463


def test_exchange_gives_a_new_valid_token_that_is_registered_secret(graph: GraphStandIn) -> None:
    from runbooklib.redact import REDACTOR

    client = wa.graph(endpoint(graph.url), timeout=3)
    token, expires = client.exchange_token()
    assert token != TOKEN and expires == 60 * 86400 and token in REDACTOR.secrets
    assert client.debug_token(token)["is_valid"] is True


def test_submit_and_send(graph: GraphStandIn) -> None:
    client = wa.graph(endpoint(graph.url), timeout=3)
    out = client.submit_template({"name": "event_reminder_v2", "language": "en_US", "category": "UTILITY",
                                  "components": [{"type": "BODY", "text": "Hi {{1}}"}]})
    assert out["status"] == "PENDING" and graph.submitted[0]["name"] == "event_reminder_v2"
    sent = client.send_template("+15551230000", "event_reminder", "en_US")
    assert sent["messages"][0]["id"].startswith("wamid.")
    with pytest.raises(wa.GraphError) as info:
        client.send_template("+15551230000", "event_reminder_v2", "en_US")  # still PENDING
    assert info.value.code == "132001"


def test_unreachable_and_misconfigured() -> None:
    result = wa.check_phone_number(endpoint(f"http://127.0.0.1:{free_port()}"), timeout=1)
    assert result.classification == "unreachable"
    with pytest.raises(ConfigError, match="numeric id"):
        WhatsAppEndpoint(waba_id="my-waba", phone_number_id=PHONE, access_token_env="T_WA_TOKEN")
    with pytest.raises(ConfigError, match="v26.0"):
        WhatsAppEndpoint(waba_id=WABA, phone_number_id=PHONE, access_token_env="T_WA_TOKEN", api_version="26")


@pytest.mark.parametrize(("exc", "expected"), [(httpx.ConnectTimeout("t"), "timeout"), (httpx.ReadTimeout("t"), "timeout"),
                                               (httpx.ConnectError("c"), "unreachable")])
def test_transport_errors_are_provider_timeouts(exc: Exception, expected: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    client = wa.Graph(endpoint("http://graph.test"), timeout=1, transport=httpx.MockTransport(handler))
    with pytest.raises(ProviderTimeout) as info:
        client.phone_number()
    assert info.value.code == expected


@pytest.mark.parametrize("graph", [{"unknown_ids": True}], indirect=True)
def test_ids_that_do_not_exist_are_a_configuration_state(graph: GraphStandIn) -> None:
    phone = wa.check_phone_number(endpoint(graph.url), timeout=3)
    templates, _ = wa.check_templates(endpoint(graph.url), timeout=3)
    for result in (phone, templates):
        assert (result.status, result.classification) == ("fail", "config"), result.summary

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from runbooklib.providers.statuspage import check_status_page
from runbooklib.sandbox.ports import free_port
from runbooklib.sandbox.scenario import DEFAULTS
from runbooklib.sandbox.standins import StatusPageStandIn

SMS = r"sms|messaging"


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[StatusPageStandIn]:
    srv = StatusPageStandIn(scenario={**DEFAULTS["statuspage"], **getattr(request, "param", {})}).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize(("page", "status", "classification"), [
    ({}, "ok", None),
    ({"indicator": "minor", "components": {"SMS": "degraded_performance", "Voice": "operational"}}, "warn", "degraded"),
    ({"indicator": "minor", "components": {"SMS": "operational", "Voice": "major_outage"}}, "warn", "degraded"),
    ({"indicator": "major", "components": {"SMS": "major_outage"}}, "fail", "outage"),
    ({"indicator": "major", "components": {"SMS": "operational"},
      "incidents": [{"name": "SMS delivery delays", "impact": "major", "components": ["SMS"]}]}, "fail", "outage"),
], indirect=["page"])
def test_indicator_components_and_incidents(page: StatusPageStandIn, status: str, classification: str | None) -> None:
    result = check_status_page(page.url, component_pattern=SMS, timeout=3)
    assert (result.status, result.classification) == (status, classification), result.summary


def test_a_voice_only_outage_does_not_count_as_an_sms_outage(page: StatusPageStandIn) -> None:
    page.state = {**page.state, "components": {"SMS": "operational", "Voice": "major_outage"}}
    assert check_status_page(page.url, component_pattern=SMS, timeout=3).status != "fail"


def test_unreachable_status_page_is_a_could_not_check_not_a_crash() -> None:
    result = check_status_page(f"http://127.0.0.1:{free_port()}", component_pattern=SMS, timeout=1)
    assert (result.status, result.classification) == ("error", "unreachable")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_garbage_is_could_not_check(body: bytes) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    result = check_status_page("http://status.test", component_pattern=SMS, timeout=1, transport=transport)
    assert (result.status, result.classification) == ("error", "unreachable")



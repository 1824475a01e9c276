"""A provider's public status page (Atlassian Statuspage JSON API), e.g. https://status.twilio.com.

Reads `/api/v2/status.json` (overall indicator: none, minor, major, critical),
`/api/v2/components.json` (components whose name matches the channel) and
`/api/v2/incidents/unresolved.json`. An unreachable status page is a finding, not a crash.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from runbooklib.deadline import Dependency
from runbooklib.errors import ProviderTimeout
from runbooklib.results import CheckResult, timed

DEGRADED = ("degraded_performance", "partial_outage", "major_outage")
OUTAGE = ("partial_outage", "major_outage")
STATES: dict[str, dict[str, tuple[str, ...]]] = {"check_status_page": {"outage": ("fail",), "degraded": ("warn",)}}
"""Every state the page reports that is not OK (classification → statuses); `unreachable` is could-not-check."""


def check_status_page(base_url: str, *, component_pattern: str, timeout: float, name: str = "status_page",
                      label: str = "Provider status page", transport: httpx.BaseTransport | None = None,
                      within: Dependency | None = None) -> CheckResult:
    """Overall indicator, degraded components matching `component_pattern`, unresolved incidents.

    `within` bounds the three reads together. An unreadable page is an `error` (could not check): it
    establishes nothing, though a runbook's verdict need not rest on it (the provider's own API checks
    do), so it is listed beside the verdict rather than blocking it."""
    title = f"{label} ({base_url})"
    pattern = re.compile(component_pattern, re.IGNORECASE)
    within = within or Dependency(label, timeout * 3, ProviderTimeout)

    def read() -> tuple[dict[str, Any], list[Any], list[Any]]:
        with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport) as http:
            return (_get(http, "/api/v2/status.json"), _get(http, "/api/v2/components.json").get("components", []),
                    _get(http, "/api/v2/incidents/unresolved.json").get("incidents", []))

    with timed() as ms:
        try:
            status, components, incidents = within.call(read, "status page")
        except (httpx.HTTPError, ValueError, ProviderTimeout) as exc:
            return CheckResult(name, title, "error", f"status page not readable: {exc.__class__.__name__}: {exc}",
                               classification="unreachable", duration_ms=ms())
    indicator = str(status.get("status", {}).get("indicator", "unknown"))
    relevant = [c for c in components if pattern.search(str(c.get("name", "")))]
    degraded = [f"{c['name']}: {c['status']}" for c in relevant if c.get("status") in DEGRADED]
    outage = [c for c in relevant if c.get("status") in OUTAGE]
    relevant_names = {str(c.get("name")) for c in relevant}
    affecting = [i for i in incidents
                 if {str(c.get("name")) for c in i.get("components", [])} & relevant_names or pattern.search(str(i.get("name")))]
    facts: dict[str, Any] = {"indicator": indicator, "description": status.get("status", {}).get("description"),
                             "degraded_components": degraded,
                             "unresolved_incidents": [f"{i.get('name')} ({i.get('status')}, impact {i.get('impact')})"
                                                      for i in affecting]}
    if outage or (affecting and indicator in ("major", "critical")):
        return CheckResult(name, title, "fail", f"outage reported: {'; '.join(degraded + facts['unresolved_incidents'])}",
                           classification="outage", facts=facts, duration_ms=ms())
    if degraded or affecting or indicator not in ("none", "unknown"):
        return CheckResult(name, title, "warn", f"indicator {indicator}; " + ("; ".join(degraded + facts[
            "unresolved_incidents"]) or str(facts["description"])), classification="degraded", facts=facts,
                           duration_ms=ms())
    return CheckResult(name, title, "ok", f"{facts['description'] or 'operational'}; "
                                          f"{len(relevant)} matching components operational", facts=facts,
                       duration_ms=ms())


def _get(http: httpx.Client, path: str) -> dict[str, Any]:
    response = http.get(path)
    response.raise_for_status()
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data

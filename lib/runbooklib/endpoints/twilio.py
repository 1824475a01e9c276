"""Twilio, declared once: credential variable names, sending numbers, its status page; its stand-ins.

Checks, the test send and the error mapper are in `runbooklib.providers.twilio` (the twilio client).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from runbooklib.endpoints import Provider, Secrets, not_set

if TYPE_CHECKING:
    from runbooklib.sandbox import Site, Started

AUTH = ("ok", "reject")
ACCOUNT_STATUSES = ("active", "suspended", "closed")


@dataclass(frozen=True)
class TwilioEndpoint:
    """Twilio: credential variable names, the sending numbers, and where its status page is."""

    auth_token_env: str
    account_sid_env: str = "TWILIO_ACCOUNT_SID"
    from_numbers: tuple[str, ...] = ()
    api_base_url: str = ""  # empty: Twilio's own hosts; a URL sends every *.twilio.com call there
    status_page_url: str = "https://status.twilio.com"

    def __post_init__(self) -> None:
        object.__setattr__(self, "from_numbers", tuple(self.from_numbers))


def _missing(endpoint: TwilioEndpoint) -> list[str]:
    why = [not_set(endpoint.account_sid_env, "Twilio account SID"), not_set(endpoint.auth_token_env, "Twilio auth token")]
    if not endpoint.from_numbers:
        why.append("no sending numbers are configured (twilio.from_numbers)")
    return [w for w in why if w]


def _secrets(endpoint: TwilioEndpoint) -> Secrets:
    return Secrets(parts=(endpoint.account_sid_env, endpoint.auth_token_env), public=endpoint.from_numbers)


def _make_secret(key: str) -> str | None:
    return "AC" + secrets.token_hex(16) if key == "twilio_account_sid" else None


def _standin(site: Site) -> Started:
    from runbooklib.sandbox import Started
    from runbooklib.sandbox.standins import StatusPageStandIn, TwilioStandIn

    started = Started()
    api = started.add("twilio", site.echoing(TwilioStandIn(
        sid=site.secrets["twilio_account_sid"], token=site.secrets["twilio_auth_token"],
        scenario=site.scenario.section("twilio")).start()))
    page = started.add("statuspage", site.echoing(StatusPageStandIn(scenario=site.scenario.section("statuspage")).start()))
    started.profile["twilio"] = {"account_sid_env": site.env("twilio_account_sid"),
                                 "auth_token_env": site.env("twilio_auth_token"),
                                 "from_numbers": list(site.scenario.section("twilio")["from_numbers"]),
                                 "api_base_url": api.url, "status_page_url": page.url}
    return started


PROVIDER = Provider(
    kind="twilio",
    sections={"twilio": "Twilio"},
    endpoint=TwilioEndpoint,
    required="auth_token_env",
    client="runbooklib.providers.twilio",
    missing=_missing,
    secrets=_secrets,
    scenario={
        "twilio": {"auth": "ok", "account_status": "active",
                   "numbers": [{"phone_number": "+15005550006", "sms": True},
                               {"phone_number": "+15005550009", "sms": False}],
                   "from_numbers": ["+15005550006"], "create_error": None,
                   "throttle": {"after": None, "per_seconds": 60}},
        "statuspage": {"indicator": "none", "description": "All Systems Operational",
                       "components": {"SMS": "operational", "Programmable Messaging API": "operational",
                                      "Voice": "operational"},
                       "incidents": []},
    },
    choices={"twilio.auth": AUTH, "twilio.account_status": ACCOUNT_STATUSES},
    free_form=("numbers", "from_numbers", "components", "incidents", "create_error"),
    demo_secrets={"twilio_account_sid": "RUNBOOK_DEMO_TWILIO_ACCOUNT_SID",
                  "twilio_auth_token": "RUNBOOK_DEMO_TWILIO_AUTH_TOKEN"},
    make_secret=_make_secret,
    standin=_standin,
)

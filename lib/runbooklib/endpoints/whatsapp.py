"""Meta's WhatsApp Cloud API, declared once: Graph API base and version, account ids, token variable
names; its Graph API stand-in.

Checks, the test send and the error mapper are in `runbooklib.providers.whatsapp` (httpx).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runbooklib.endpoints import Provider, Secrets, not_set
from runbooklib.errors import ConfigError

if TYPE_CHECKING:
    from runbooklib.sandbox import Site, Started

TOKEN_STATES = ("valid", "expired")
DEMO_WABA_ID, DEMO_PHONE_NUMBER_ID, DEMO_APP_ID = "102290129340398", "106540352242922", "740551209813274"


@dataclass(frozen=True)
class WhatsAppEndpoint:
    """Meta's WhatsApp Cloud API: Graph API base and version, account ids, token variable names."""

    waba_id: str
    phone_number_id: str
    access_token_env: str
    graph_url: str = "https://graph.facebook.com"
    api_version: str = "v26.0"
    app_id: str = ""
    app_secret_env: str = ""  # with app_id: the app token for debug_token and the token exchange

    def __post_init__(self) -> None:
        for name in ("waba_id", "phone_number_id"):
            if not str(getattr(self, name)).isdigit():
                raise ConfigError(f"whatsapp.{name} must be the numeric id as text, e.g. \"102290129340398\"")
        if not re.fullmatch(r"v\d+\.\d+", self.api_version):
            raise ConfigError(f"whatsapp.api_version {self.api_version!r} must look like v26.0")


def _missing(endpoint: WhatsAppEndpoint) -> list[str]:
    why = [not_set(endpoint.access_token_env, "WhatsApp access token")]
    if endpoint.app_id and endpoint.app_secret_env:
        why.append(not_set(endpoint.app_secret_env, "Meta app secret (token checks)"))
    else:
        why.append("the token's validity and expiry are not checked: whatsapp.app_id and app_secret_env are not "
                   "configured")
    return [w for w in why if w]


def _secrets(endpoint: WhatsAppEndpoint) -> Secrets:
    return Secrets(parts=(endpoint.access_token_env, endpoint.app_secret_env))


def _make_secret(key: str) -> str | None:
    return "EAAG" + secrets.token_urlsafe(48) if key == "whatsapp_access_token" else None


def _standin(site: Site) -> Started:
    from runbooklib.sandbox import Started
    from runbooklib.sandbox.standins import GraphStandIn

    started = Started()
    graph = started.add("graph", site.echoing(GraphStandIn(
        token=site.secrets["whatsapp_access_token"], app_id=DEMO_APP_ID, app_secret=site.secrets["whatsapp_app_secret"],
        waba_id=DEMO_WABA_ID, phone_id=DEMO_PHONE_NUMBER_ID, scenario=site.scenario.section("whatsapp")).start()))
    started.profile["whatsapp"] = {"graph_url": graph.url, "waba_id": DEMO_WABA_ID,
                                   "phone_number_id": DEMO_PHONE_NUMBER_ID,
                                   "access_token_env": site.env("whatsapp_access_token"), "app_id": DEMO_APP_ID,
                                   "app_secret_env": site.env("whatsapp_app_secret")}
    return started


def _template(name: str, body: str) -> dict[str, Any]:
    return {"name": name, "status": "APPROVED", "category": "UTILITY", "language": "en_US",
            "quality_score": {"score": "GREEN"}, "rejected_reason": "NONE",
            "components": [{"type": "BODY", "text": body}]}


PROVIDER = Provider(
    kind="whatsapp",
    sections={"whatsapp": "WhatsApp Cloud API"},
    endpoint=WhatsAppEndpoint,
    required="access_token_env",
    client="runbooklib.providers.whatsapp",
    missing=_missing,
    secrets=_secrets,
    scenario={"whatsapp": {
        "token": "valid",
        "token_expires_in_days": 45,
        "scopes": ["whatsapp_business_messaging", "whatsapp_business_management"],
        "access_denied": False,
        "unknown_ids": False,
        "send_error": None,
        "phone": {
            "display_phone_number": "+1 555-010-0200", "verified_name": "Lineup", "quality_rating": "GREEN",
            "status": "CONNECTED", "name_status": "APPROVED", "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"},
            "whatsapp_business_manager_messaging_limit": "TIER_10K",
        },
        "templates": [_template("booking_confirmation_v2", "Your booking {{1}} is confirmed."),
                      _template("event_reminder", "Reminder: {{1}} starts at {{2}}."),
                      _template("ticket_delivery", "Your tickets for {{1}}: {{2}}"),
                      _template("event_reminder_plain", "Your event {{1}} is coming up.")],
    }},
    choices={"whatsapp.token": TOKEN_STATES},
    free_form=("templates", "scopes", "send_error", "throughput"),
    demo_secrets={"whatsapp_access_token": "RUNBOOK_DEMO_WHATSAPP_TOKEN",
                  "whatsapp_app_secret": "RUNBOOK_DEMO_META_APP_SECRET"},
    make_secret=_make_secret,
    standin=_standin,
)

"""Sandbox scenarios: YAML files describing a simulated incident (documented in docs/scenarios.md).

A scenario file only says what differs from a healthy system; everything else comes from
`DEFAULTS`. Unknown keys are errors (with the allowed keys named), so a typo in a drill file is
caught before anything starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbooklib.errors import ConfigError
from runbooklib.yamlfiles import load_yaml

SMTP_MODES = ("ok", "down", "bad_tls", "auth_reject")
FREE_FORM = {"tenants", "queues", "errors", "providers", "numbers", "from_numbers", "components", "incidents",
             "create_error", "templates", "scopes", "send_error", "throughput", "jobs", "dlq", "attempts"}
"""Mappings and lists whose keys are the scenario's own (tenant names, queue names, ...)."""

DEFAULTS: dict[str, Any] = {
    "name": "",
    "runbook": "",
    "description": "",
    "expect": "healthy",
    "message_logs": {
        "seed": 1,
        "channel": "EMAIL",
        "provider": "ses",
        "tenants": {"acme": 4, "globex": 3, "initech": 2, "umbrella": 1},
        "baseline": {"hours": 24, "per_hour": 300, "failure_rate": 0.01, "bounce_rate": 0.005},
        "window": {"minutes": 60, "per_minute": 30},
        "incident": {"started_minutes_ago": 0, "failure_rate": 0.0, "tenants": [], "errors": []},
        "baseline_errors": [],
    },
    "platform": {
        "providers": {"email": "ses", "sms": "twilio", "whatsapp": "meta"},
        "queues": {
            "email": {"waiting": 40, "active": 3, "delayed": 2, "failed": 12, "completed": 52000, "paused": False},
            "sms": {"waiting": 5, "active": 1, "delayed": 0, "failed": 3, "completed": 8100, "paused": False},
            "whatsapp": {"waiting": 2, "active": 1, "delayed": 0, "failed": 1, "completed": 2300, "paused": False},
            "communication-dlq": {"waiting": 14, "active": 0, "delayed": 0, "failed": 0, "completed": 0,
                                  "paused": False},
        },
        "backlog_per_sample": -10,
        "backlog_per_sample_mitigated": -300,
        "recovered_per_switch": 40,
    },
    "smtp": {"primary": "ok", "backup": "ok"},
    "ses": {
        "max_24_hour_send": 50000.0,
        "max_send_rate": 14.0,
        "sent_last_24_hours": 9100.0,
        "sending_enabled": True,
        "enforcement_status": "HEALTHY",
        "production_access": True,
        "access_denied": False,
        "bounce_rate": 0.01,
        "complaint_rate": 0.0003,
    },
    "twilio": {
        "auth": "ok",
        "account_status": "active",
        "numbers": [{"phone_number": "+15005550006", "sms": True}, {"phone_number": "+15005550009", "sms": False}],
        "from_numbers": ["+15005550006"],
        "create_error": None,
    },
    "whatsapp": {
        "token": "valid",
        "token_expires_in_days": 45,
        "scopes": ["whatsapp_business_messaging", "whatsapp_business_management"],
        "access_denied": False,
        "send_error": None,
        "phone": {
            "display_phone_number": "+1 555-010-0200", "verified_name": "Lineup", "quality_rating": "GREEN",
            "status": "CONNECTED", "name_status": "APPROVED", "code_verification_status": "VERIFIED",
            "platform_type": "CLOUD_API", "throughput": {"level": "STANDARD"},
            "whatsapp_business_manager_messaging_limit": "TIER_10K",
        },
        "templates": [
            {"name": "booking_confirmation_v2", "status": "APPROVED", "category": "UTILITY", "language": "en_US",
             "quality_score": {"score": "GREEN"}, "rejected_reason": "NONE",
             "components": [{"type": "BODY", "text": "Your booking {{1}} is confirmed."}]},
            {"name": "event_reminder", "status": "APPROVED", "category": "UTILITY", "language": "en_US",
             "quality_score": {"score": "GREEN"}, "rejected_reason": "NONE",
             "components": [{"type": "BODY", "text": "Reminder: {{1}} starts at {{2}}."}]},
            {"name": "ticket_delivery", "status": "APPROVED", "category": "UTILITY", "language": "en_US",
             "quality_score": {"score": "GREEN"}, "rejected_reason": "NONE",
             "components": [{"type": "BODY", "text": "Your tickets for {{1}}: {{2}}"}]},
            {"name": "event_reminder_plain", "status": "APPROVED", "category": "UTILITY", "language": "en_US",
             "quality_score": {"score": "GREEN"}, "rejected_reason": "NONE",
             "components": [{"type": "BODY", "text": "Your event {{1}} is coming up."}]},
        ],
    },
    "bullmq": {
        "enabled": False,
        "jobs": [],
        "dlq": [],
        "dlq_growth_per_sample": 0,
        "stalled_queue": None,
        "stalled_growth_per_sample": 0,
        "attempts": {"email": 3, "sms": 3, "whatsapp": 3},
    },
    "echo": {
        "credentials": "off",
        "recipients": False,
    },
    "statuspage": {
        "indicator": "none",
        "description": "All Systems Operational",
        "components": {"SMS": "operational", "Programmable Messaging API": "operational", "Voice": "operational"},
        "incidents": [],
    },
}
ECHO_MODES = ("off", "errors", "always")
"""`echo.credentials`: stand-ins never echo what they received, echo it in every error they answer, or answer every
request with an error that echoes it (a drill of the redaction: no form of a secret may reach a record)."""
RECIPIENT_FORMS = ("14155552671", "+1 415-555-2671", "+1 (415) 555-2671", "+44 7911 123456", "07700 900123",
                   "jane.doe%40example.com", "jörg.müller@例え.jp", "%2B447911123456")
"""With `echo.recipients`, seeded recipients and errors, and the stand-ins' error bodies, carry these forms."""
TWILIO_AUTH = ("ok", "reject")
WHATSAPP_TOKEN = ("valid", "expired")
ACCOUNT_STATUSES = ("active", "suspended", "closed")


def _merge(base: dict[str, Any], override: dict[str, Any], where: str) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise ConfigError(f"scenario {where}: unknown key {key!r}; allowed: {', '.join(base)}")
        if isinstance(base[key], dict) and key not in FREE_FORM:
            if not isinstance(value, dict):
                raise ConfigError(f"scenario {where}.{key}: expected a mapping")
            out[key] = _merge(base[key], value, f"{where}.{key}")
        elif key == "queues" and isinstance(value, dict):
            merged = copy.deepcopy(base[key])
            for queue, counts in value.items():
                merged[queue] = {**merged.get(queue, {}), **(counts or {})}
            out[key] = merged
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario (the merged mapping plus where it came from)."""

    name: str
    data: dict[str, Any]
    path: Path | None = None

    @property
    def expect(self) -> str:
        return str(self.data["expect"])

    @property
    def description(self) -> str:
        return str(self.data["description"])

    def section(self, key: str) -> dict[str, Any]:
        section: dict[str, Any] = self.data[key]
        return section

    @property
    def channel(self) -> str:
        return str(self.data["message_logs"]["channel"])

    @classmethod
    def from_mapping(cls, data: dict[str, Any], *, name: str, path: Path | None = None,
                     defaults: dict[str, Any] | None = None) -> Scenario:
        merged = _merge(_merge(DEFAULTS, defaults or {}, "runbook defaults"), data, name)
        merged["name"] = merged["name"] or name
        for role in ("primary", "backup"):
            if merged["smtp"][role] not in SMTP_MODES:
                raise ConfigError(f"scenario {name}.smtp.{role}: {merged['smtp'][role]!r}; "
                                  f"allowed: {', '.join(SMTP_MODES)}")
        if merged["twilio"]["auth"] not in TWILIO_AUTH:
            raise ConfigError(f"scenario {name}.twilio.auth: {merged['twilio']['auth']!r}; allowed: {', '.join(TWILIO_AUTH)}")
        if merged["twilio"]["account_status"] not in ACCOUNT_STATUSES:
            raise ConfigError(f"scenario {name}.twilio.account_status: {merged['twilio']['account_status']!r}; "
                              f"allowed: {', '.join(ACCOUNT_STATUSES)}")
        if merged["echo"]["credentials"] not in ECHO_MODES:
            raise ConfigError(f"scenario {name}.echo.credentials: {merged['echo']['credentials']!r}; "
                              f"allowed: {', '.join(ECHO_MODES)}")
        if not isinstance(merged["echo"]["recipients"], bool):
            raise ConfigError(f"scenario {name}.echo.recipients: expected true or false")
        if merged["whatsapp"]["token"] not in WHATSAPP_TOKEN:
            raise ConfigError(f"scenario {name}.whatsapp.token: {merged['whatsapp']['token']!r}; "
                              f"allowed: {', '.join(WHATSAPP_TOKEN)}")
        incident = merged["message_logs"]["incident"]
        if incident["failure_rate"] and not incident["errors"]:
            raise ConfigError(f"scenario {name}.message_logs.incident: a failure_rate needs errors to record")
        for i, err in enumerate(incident["errors"]):
            if not isinstance(err, dict) or "error" not in err:
                raise ConfigError(f"scenario {name}.message_logs.incident.errors[{i}]: needs 'error' "
                                  "(and optional 'error_code', 'weight')")
        for key in ("failure_rate",):
            if not 0 <= float(incident[key]) <= 1:
                raise ConfigError(f"scenario {name}.message_logs.incident.{key}: must be between 0 and 1")
        return cls(name=str(merged["name"]), data=merged, path=path)

    @classmethod
    def load(cls, path: Path, *, defaults: dict[str, Any] | None = None) -> Scenario:
        data = load_yaml(path, "scenario file", parameter="scenario") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"scenario file {path} must be a mapping", parameter="scenario")
        return cls.from_mapping(data, name=path.stem, path=path, defaults=defaults)

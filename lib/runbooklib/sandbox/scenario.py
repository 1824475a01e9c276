"""Sandbox scenarios: YAML files describing a simulated incident (documented in docs/scenarios.md).

A scenario file only says what differs from a healthy system; everything else comes from the
core's defaults (`CORE`) and those each provider declares for its own sections (`DEFAULTS` is the
whole). Unknown keys are errors (with the allowed keys named), so a typo in a drill file is caught
before anything starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbooklib import endpoints
from runbooklib.channels import CHANNELS
from runbooklib.errors import ConfigError
from runbooklib.yamlfiles import load_yaml

CORE_FREE_FORM = {"tenants", "queues", "errors", "providers", "jobs", "dlq", "attempts"}
"""Mappings and lists whose keys are the scenario's own (tenant names, queue names, ...); each provider adds its own."""
FIRST = CHANNELS[0]

CORE: dict[str, Any] = {
    "name": "",
    "runbook": "",
    "description": "",
    "expect": "healthy",
    "message_logs": {
        "seed": 1,
        "channel": FIRST.log_name,
        "provider": FIRST.default_provider,
        "tenants": {"acme": 4, "globex": 3, "initech": 2, "umbrella": 1},
        "baseline": {"hours": 24, "per_hour": 300, "failure_rate": 0.01, "bounce_rate": 0.005},
        "window": {"minutes": 60, "per_minute": 30},
        "incident": {"started_minutes_ago": 0, "failure_rate": 0.0, "tenants": [], "errors": []},
        "baseline_errors": [],
    },
    "platform": {
        "providers": {c.name: c.default_provider for c in CHANNELS},
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
}
ECHO_MODES = ("off", "errors", "always")
"""`echo.credentials`: stand-ins never echo what they received, echo it in every error they answer, or answer every
request with an error that echoes it (a drill of the redaction: no form of a secret may reach a record)."""
RECIPIENT_FORMS = ("14155552671", "+1 415-555-2671", "+1 (415) 555-2671", "+44 7911 123456", "07700 900123",
                   "jane.doe%40example.com", "jörg.müller@例え.jp", "%2B447911123456")
"""With `echo.recipients`, seeded recipients and errors, and the stand-ins' error bodies, carry these forms."""


def _declared() -> tuple[dict[str, Any], set[str], dict[str, tuple[Any, ...]]]:
    """The healthy defaults of every scenario section (the core's, then each provider's), the free-form keys,
    and the allowed values of keys that have a fixed set (`section.key`)."""
    defaults, free_form = copy.deepcopy(CORE), set(CORE_FREE_FORM)
    choices: dict[str, tuple[Any, ...]] = {"echo.credentials": ECHO_MODES}
    for provider in endpoints.providers():
        taken = sorted(set(provider.scenario) & set(CORE))
        if taken:
            raise ConfigError(f"provider {provider.kind} declares scenario sections the core has: {', '.join(taken)}")
        defaults.update(copy.deepcopy(dict(provider.scenario)))
        free_form.update(provider.free_form)
        choices.update(provider.choices)
    return defaults, free_form, choices


DEFAULTS = _declared()[0]
"""Every section's healthy defaults (tests start single stand-ins from these)."""


def _merge(base: dict[str, Any], override: dict[str, Any], where: str, free_form: set[str]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise ConfigError(f"scenario {where}: unknown key {key!r}; allowed: {', '.join(base)}")
        if isinstance(base[key], dict) and key not in free_form:
            if not isinstance(value, dict):
                raise ConfigError(f"scenario {where}.{key}: expected a mapping")
            out[key] = _merge(base[key], value, f"{where}.{key}", free_form)
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
        base, free_form, choices = _declared()
        merged = _merge(_merge(base, defaults or {}, "runbook defaults", free_form), data, name, free_form)
        merged["name"] = merged["name"] or name
        for key, allowed in choices.items():
            section, _, field = key.partition(".")
            if merged[section][field] not in allowed:
                raise ConfigError(f"scenario {name}.{key}: {merged[section][field]!r}; "
                                  f"allowed: {', '.join(map(str, allowed))}")
        if not isinstance(merged["echo"]["recipients"], bool):
            raise ConfigError(f"scenario {name}.echo.recipients: expected true or false")
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

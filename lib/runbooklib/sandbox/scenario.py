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
from runbooklib.channels import CHANNELS, LOG_NAMES
from runbooklib.errors import ConfigError
from runbooklib.yamlfiles import load_yaml

CORE_FREE_FORM = {"tenants", "queues", "errors", "providers", "jobs", "dlq", "attempts", "channels", "incidents",
                  "bursts", "paused"}
"""Mappings and lists whose keys are the scenario's own (tenant names, queue names, ...); each provider adds its own."""
FIRST = CHANNELS[0]

CORE: dict[str, Any] = {
    "name": "",
    "runbook": "",
    "description": "",
    "expect": "healthy",
    "expect_also": [],
    "expect_tenants": [],
    "forbid": [],
    "message_logs": {
        "seed": 1,
        "channel": FIRST.log_name,
        "provider": FIRST.default_provider,
        "tenants": {"acme": 4, "globex": 3, "initech": 2, "umbrella": 1},
        "baseline": {"hours": 24, "per_hour": 300, "failure_rate": 0.01, "bounce_rate": 0.005},
        "window": {"minutes": 60, "per_minute": 30},
        "incident": {"started_minutes_ago": 0, "ended_minutes_ago": None, "failure_rate": 0.0, "tenants": [],
                     "providers": [], "channels": [], "errors": []},
        "incidents": [],
        "baseline_errors": [],
        "channels": {},
        "volume": {"diurnal": 0.0, "bursts": []},
        "without_template": 0.0,
        "receipts_delay_minutes": 1,
        "backlog_minutes": 0,
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
        "hung_queue": None,
        "paused": [],
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


INCIDENT_KEYS = ("started_minutes_ago", "ended_minutes_ago", "failure_rate", "tenants", "providers", "channels",
                 "errors")
ERROR_KEYS = ("error", "error_code", "weight", "template", "retry_count", "status")
ERROR_STATUSES = ("FAILED", "RETRYING", "BOUNCED")
TENANT_KEYS = ("weight", "provider", "failure_rate")
JOB_KEYS = ("queue", "count", "fail", "fail_times", "work", "delivered", "age_minutes")


def _number(value: Any, where: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    """`value` as a number within bounds, or a ConfigError naming where and what is allowed."""
    allowed = (f"a number{' above ' if low_open else ' from '}{low:g}" if low is not None else "a number") + (
        f"{' to ' if low is not None else ' up to '}{high:g}" if high is not None else "")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"scenario {where}: {value!r}; allowed: {allowed}")
    if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        raise ConfigError(f"scenario {where}: {value!r}; allowed: {allowed}")
    return float(value)


def _keys(value: Any, allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"scenario {where}: expected a mapping with some of {', '.join(allowed)}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ConfigError(f"scenario {where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return value


def _check_errors(errors: Any, where: str) -> None:
    if not isinstance(errors, list):
        raise ConfigError(f"scenario {where}: expected a list of {{error, error_code, weight, ...}}")
    for i, err in enumerate(errors):
        if not isinstance(err, dict) or "error" not in err:
            raise ConfigError(f"scenario {where}[{i}]: needs 'error' (and optional {', '.join(ERROR_KEYS[1:])})")
        _keys(err, ERROR_KEYS, f"{where}[{i}]")
        if "weight" in err:
            _number(err["weight"], f"{where}[{i}].weight", low=0, low_open=True)
        if "retry_count" in err:
            _number(err["retry_count"], f"{where}[{i}].retry_count", low=0, high=100)
        if err.get("status") is not None and err["status"] not in ERROR_STATUSES:
            raise ConfigError(f"scenario {where}[{i}].status: {err['status']!r}; allowed: {', '.join(ERROR_STATUSES)}")


def _check_incident(incident: Any, where: str, tenants: set[str]) -> None:
    _keys(incident, INCIDENT_KEYS, where)
    rate = _number(incident.get("failure_rate", 0), f"{where}.failure_rate", low=0, high=1)
    if rate and not incident.get("errors"):
        raise ConfigError(f"scenario {where}: a failure_rate needs errors to record")
    _check_errors(incident.get("errors", []), f"{where}.errors")
    start = _number(incident.get("started_minutes_ago", 0), f"{where}.started_minutes_ago", low=0)
    if incident.get("ended_minutes_ago") is not None:
        end = _number(incident["ended_minutes_ago"], f"{where}.ended_minutes_ago", low=0)
        if end >= start:
            raise ConfigError(f"scenario {where}.ended_minutes_ago: {end:g}; allowed: less than started_minutes_ago "
                              f"({start:g}): an incident ends after it starts")
    unknown = [t for t in incident.get("tenants") or [] if str(t) not in tenants]
    if unknown:
        raise ConfigError(f"scenario {where}.tenants: {unknown[0]!r} is not a tenant; allowed: {', '.join(sorted(tenants))}")
    channels = [c for c in incident.get("channels") or [] if str(c).upper() not in LOG_NAMES]
    if channels:
        raise ConfigError(f"scenario {where}.channels: {channels[0]!r}; allowed: {', '.join(LOG_NAMES)}")


def _check_logs(logs: dict[str, Any], where: str) -> None:
    """The message_logs section: tenants, incidents, volume, channels and receipts, each with what is allowed."""
    if not isinstance(logs["tenants"], dict) or not logs["tenants"]:
        raise ConfigError(f"scenario {where}.tenants: expected a mapping of tenant: weight (or {{weight, provider, "
                          "failure_rate}})")
    for tenant, spec in logs["tenants"].items():
        if isinstance(spec, dict):
            _keys(spec, TENANT_KEYS, f"{where}.tenants.{tenant}")
            _number(spec.get("weight", 1), f"{where}.tenants.{tenant}.weight", low=0, low_open=True)
            if spec.get("failure_rate") is not None:
                _number(spec["failure_rate"], f"{where}.tenants.{tenant}.failure_rate", low=0, high=1)
        else:
            _number(spec, f"{where}.tenants.{tenant}", low=0, low_open=True)
    tenants = {str(t) for t in logs["tenants"]}
    _check_incident(logs["incident"], f"{where}.incident", tenants)
    if not isinstance(logs["incidents"], list):
        raise ConfigError(f"scenario {where}.incidents: expected a list of incidents (each like incident)")
    for i, incident in enumerate(logs["incidents"]):
        _check_incident(incident, f"{where}.incidents[{i}]", tenants)
    _check_errors(logs["baseline_errors"], f"{where}.baseline_errors")
    for key in ("failure_rate", "bounce_rate"):
        _number(logs["baseline"][key], f"{where}.baseline.{key}", low=0, high=1)
    _number(logs["window"]["minutes"], f"{where}.window.minutes", low=0, low_open=True)
    volume = _keys(logs["volume"], ("diurnal", "bursts"), f"{where}.volume")
    _number(volume["diurnal"], f"{where}.volume.diurnal", low=0, high=0.95)
    if not isinstance(volume["bursts"], list):
        raise ConfigError(f"scenario {where}.volume.bursts: expected a list of {{from_minutes_ago, to_minutes_ago, "
                          "factor}}")
    for i, burst in enumerate(volume["bursts"]):
        _keys(burst, ("from_minutes_ago", "to_minutes_ago", "factor"), f"{where}.volume.bursts[{i}]")
        start = _number(burst.get("from_minutes_ago"), f"{where}.volume.bursts[{i}].from_minutes_ago", low=0)
        end = _number(burst.get("to_minutes_ago", 0), f"{where}.volume.bursts[{i}].to_minutes_ago", low=0)
        _number(burst.get("factor"), f"{where}.volume.bursts[{i}].factor", low=0, high=20, low_open=True)
        if end >= start:
            raise ConfigError(f"scenario {where}.volume.bursts[{i}].to_minutes_ago: {end:g}; allowed: less than "
                              f"from_minutes_ago ({start:g})")
    if not isinstance(logs["channels"], dict):
        raise ConfigError(f"scenario {where}.channels: expected a mapping of channel: weight")
    for channel, weight in logs["channels"].items():
        if str(channel).upper() not in LOG_NAMES:
            raise ConfigError(f"scenario {where}.channels: {channel!r}; allowed: {', '.join(LOG_NAMES)}")
        _number(weight, f"{where}.channels.{channel}", low=0, low_open=True)
    _number(logs["without_template"], f"{where}.without_template", low=0, high=1)
    _number(logs["receipts_delay_minutes"], f"{where}.receipts_delay_minutes", low=0, high=24 * 60)
    _number(logs["backlog_minutes"], f"{where}.backlog_minutes", low=0, high=24 * 60)


def _check_bullmq(bull: dict[str, Any], where: str) -> None:
    queues = tuple(c.name for c in CHANNELS)
    for key in ("jobs", "dlq"):
        if not isinstance(bull[key], list):
            raise ConfigError(f"scenario {where}.{key}: expected a list of {{queue, count, ...}}")
        for i, group in enumerate(bull[key]):
            _keys(group, JOB_KEYS, f"{where}.{key}[{i}]")
            if group.get("queue") not in queues:
                raise ConfigError(f"scenario {where}.{key}[{i}].queue: {group.get('queue')!r}; allowed: "
                                  f"{', '.join(queues)}")
            _number(group.get("count"), f"{where}.{key}[{i}].count", low=0, high=100_000)
            if "fail_times" in group:
                _number(group["fail_times"], f"{where}.{key}[{i}].fail_times", low=1, high=50)
            if "age_minutes" in group:
                if key != "dlq":
                    raise ConfigError(f"scenario {where}.{key}[{i}].age_minutes: only DLQ jobs have an age (bullmq.dlq)")
                _number(group["age_minutes"], f"{where}.{key}[{i}].age_minutes", low=0, high=366 * 24 * 60)
    for key in ("stalled_queue", "hung_queue"):
        if bull[key] is not None and bull[key] not in queues:
            raise ConfigError(f"scenario {where}.{key}: {bull[key]!r}; allowed: {', '.join(queues)} (or null)")
    paused = bull["paused"]
    if not isinstance(paused, list) or any(q not in queues for q in paused):
        raise ConfigError(f"scenario {where}.paused: {paused!r}; allowed: a list of {', '.join(queues)}")


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
            value: Any = merged
            for part in key.split("."):
                value = value[part]
            if value not in allowed:
                raise ConfigError(f"scenario {name}.{key}: {value!r}; allowed: {', '.join(map(str, allowed))}")
        if not isinstance(merged["echo"]["recipients"], bool):
            raise ConfigError(f"scenario {name}.echo.recipients: expected true or false")
        _check_logs(merged["message_logs"], f"{name}.message_logs")
        _check_bullmq(merged["bullmq"], f"{name}.bullmq")
        for key in ("expect_also", "expect_tenants", "forbid"):
            if not isinstance(merged[key], list) or not all(isinstance(v, str) for v in merged[key]):
                raise ConfigError(f"scenario {name}.{key}: expected a list of names, e.g. [{key}_1]")
        return cls(name=str(merged["name"]), data=merged, path=path)

    @classmethod
    def load(cls, path: Path, *, defaults: dict[str, Any] | None = None) -> Scenario:
        data = load_yaml(path, "scenario file", parameter="scenario") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"scenario file {path} must be a mapping", parameter="scenario")
        return cls.from_mapping(data, name=path.stem, path=path, defaults=defaults)

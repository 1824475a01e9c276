"""Strict run parameters, shared by notebooks, the CLI and tests.

A runbook declares its parameters as a frozen dataclass whose fields carry the declared type (what
the notebook's `parameters` cell says: `str`, `int`, `float`, `bool`, `list`), the default and a
one-line help. `validate()` turns raw values (papermill-injected globals, YAML files, `-p name value`
text from the CLI) into that dataclass, or raises one `ConfigError` listing every problem, each
naming the parameter and what is allowed. Unknown names are errors, never warnings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from runbooklib.errors import ConfigError

INCIDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DURATION_RE = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$", re.ASCII)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}

DECLARED_TYPES = ("str", "int", "float", "bool", "list")
MAX_WINDOW = timedelta(days=31)
MAX_BASELINE = timedelta(days=90)
"""The longest look-back and baseline windows: beyond these `message_logs` holds nothing useful (and a window
of centuries would reach before year 1)."""


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters: an error names the value without echoing a whole file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def param(default: Any, help: str, *, declared: str = "str") -> Any:
    """Declare one run parameter (a dataclass field with its notebook type and help)."""
    if declared not in DECLARED_TYPES:
        raise ValueError(f"declared type must be one of {DECLARED_TYPES}")
    meta = {"help": help, "declared": declared}
    if isinstance(default, list | tuple):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


def parse_duration(text: str) -> timedelta:
    """Parse `30m`, `1h`, `2h30m`, `1d`, `45s` into a timedelta; raise ValueError otherwise."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION_RE.match(cleaned)
    if not cleaned or not match or not any(match.groupdict().values()):
        raise ValueError(f"{shown(text)} is not a duration; use forms like 45s, 30m, 1h, 2h30m, 1d")
    digits = {k: v or "0" for k, v in match.groupdict().items()}
    if any(len(v) > 9 for v in digits.values()):
        raise ValueError(f"{shown(text)} is far too long; durations here are minutes to days, e.g. 30m, 7d")
    parts = {k: int(v) for k, v in digits.items()}
    try:
        value = timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError:
        raise ValueError(f"{shown(text)} is far too long; durations here are minutes to days, e.g. 30m, 7d") from None
    if value <= timedelta(0):
        raise ValueError(f"{shown(text)} is zero; give a positive duration")
    return value


def format_duration(value: timedelta) -> str:
    """Format a timedelta back into the compact form `parse_duration` reads."""
    seconds = int(value.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


UNDO_PREFIX = "undo_"
"""An approval for `undo_<action>` rolls that action back (see `gates`)."""
ALLOW_UNLOCKED = "allow_unlocked"
"""An approval (audited) to apply without a lease when the environment names no shared lease store."""
DIGEST_RE = re.compile(r"[0-9a-f]{16}|[0-9a-f]{64}")
"""A plan digest as a dry run prints it (16 hex characters) or in full (64); never a shorter prefix."""


@dataclass(frozen=True)
class Approval:
    """Approval of one action, bound to the digest of the exact plan reviewed (an undo: to the plan this run
    applied)."""

    action: str
    plan_digest: str | None = None
    source: str = "parameter"

    @classmethod
    def parse(cls, text: str) -> Approval:
        """Read `action` or `action@digest` (the digest a dry run printed)."""
        action, _, digest = text.strip().partition("@")
        return cls(action=action.strip(), plan_digest=digest.strip().lower() or None)

    def __str__(self) -> str:
        return f"{self.action}@{self.plan_digest}" if self.plan_digest else self.action


@dataclass(frozen=True)
class CommonParams:
    """Parameters every runbook notebook takes, in the order of its parameters cell."""

    environment: str = param("demo", "settings profile: demo, or a profile in environments_file")
    environments_file: str = param("", "YAML file of environment profiles (empty: built-in demo only)")
    incident: str = param("DRILL", "incident id, e.g. INC-123 (letters, digits, . _ -)")
    operator: str = param("", "who runs this; required when approving an action")
    window: str = param("1h", "look-back window, e.g. 30m, 1h, 2h30m")
    baseline: str = param("24h", "comparison window just before the look-back window")
    tenant_id: str = param("", "tenant to examine and mitigate (empty: all tenants)")
    dry_run: bool = param(True, "plan mitigations only; change nothing", declared="bool")
    approve: tuple[str, ...] = param([], "plans approved for this run, as action@digest (the digest a dry run printed)",
                                     declared="list")
    recovery_samples: int = param(3, "queue-depth samples taken in recovery confirmation (1-60)", declared="int")
    recovery_interval: str = param("5s", "time between recovery samples, e.g. 5s, 1m")
    scenario: str = param("", "demo only: sandbox scenario when the notebook starts its own sandbox")
    sandbox: str = param("", "set by `runbook demo`: file describing a running sandbox")
    run_dir: str = param("", "set by `runbook run`: the run bundle folder")
    deadline: str = param("", "set by `runbook run`: when the run must end (UTC, ISO 8601; empty: no limit)")

    @property
    def window_delta(self) -> timedelta:
        return parse_duration(self.window)

    @property
    def baseline_delta(self) -> timedelta:
        return parse_duration(self.baseline)

    @property
    def approvals(self) -> tuple[Approval, ...]:
        return tuple(Approval.parse(a) for a in self.approve)


P = TypeVar("P", bound=CommonParams)


@dataclass(frozen=True)
class DeclaredParam:
    """One parameter as a notebook's parameters cell declares it."""

    name: str
    declared: str
    default: Any
    help: str


def declared_parameters(cls: type[CommonParams]) -> list[DeclaredParam]:
    """The parameters of a runbook's params class, in declaration order."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, tuple):
            default = list(default)
        out.append(DeclaredParam(f.name, f.metadata["declared"], default, f.metadata["help"]))
    return out


def coerce(declared: str, value: Any) -> Any:
    """Convert a raw value (typed, or text from the command line) to the declared type.

    Raises ValueError with a message that says what is allowed.
    """
    if declared == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"must be text, got {type(value).__name__} {shown(value)}")
    if declared == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"must be true or false, got {shown(value)}")
    if declared == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
            return int(value)
        raise ValueError(f"must be a whole number, got {shown(value)}")
    if declared == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value.isascii():
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError(f"must be a number, got {shown(value)}")
    if declared == "list":
        if isinstance(value, str):
            text = value.strip().strip("[]")
            return tuple(p.strip().strip("'\"") for p in text.split(",") if p.strip())
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(v.strip() for v in value)
        raise ValueError(f"must be a list of names, got {shown(value)}")
    raise ValueError(f"unknown declared type {declared}")


def _close_matches(name: str, known: Iterable[str]) -> str:
    import difflib

    if len(name) > 100:
        return ""
    hits = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {hits[0]!r}?)" if hits else ""


OPERATOR_MAX = 64
"""The longest operator name accepted (it is written into every record and review)."""


def operator_problem(name: str) -> str | None:
    """Why `name` is not an operator's name (one printable line, at most OPERATOR_MAX characters), or None."""
    if len(name) > OPERATOR_MAX:
        return f"the operator's name is {len(name)} characters long; at most {OPERATOR_MAX} are allowed"
    if not name.isprintable() or name != name.strip():
        return (f"{shown(name[:OPERATOR_MAX])} is not one printable line (no line breaks, tabs or control characters, "
                "no leading or trailing spaces); give a name such as alice or alice@lineup.app")
    return None


def validate(
    cls: type[P],
    raw: Mapping[str, Any],
    *,
    actions: Iterable[str],
    environments: Iterable[str],
    scenarios: Iterable[str] = (),
) -> P:
    """Build a runbook's params from raw values, or raise one ConfigError naming every problem.

    Args:
        cls: the runbook's params dataclass.
        raw: name → value; names not declared by `cls` are errors.
        actions: the action names this runbook can approve (approval of anything else is an error).
        environments: the environment profiles that exist.
        scenarios: the sandbox scenarios of this runbook (checked when `scenario` names one).
    """
    declared = {p.name: p for p in declared_parameters(cls)}
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = key if isinstance(key, str) else shown(key)
        if name not in declared:
            problems.append((name if len(name) <= 40 else name[:37] + "...",
                             f"unknown parameter{_close_matches(name, declared)}; allowed: {', '.join(declared)}"))
            continue
        try:
            values[name] = coerce(declared[name].declared, value)
        except ValueError as exc:
            problems.append((name, str(exc)))

    def check(name: str, test: bool, message: str) -> None:
        if name in values and not test:
            problems.append((name, message))

    merged = {p.name: (list(p.default) if isinstance(p.default, list) else p.default) for p in declared.values()}
    merged.update(values)
    values = merged
    for name, longest in (("window", MAX_WINDOW), ("baseline", MAX_BASELINE)):
        try:
            if parse_duration(str(values[name])) > longest:
                problems.append((name, f"{shown(values[name])} is longer than the {format_duration(longest)} allowed"))
        except ValueError as exc:
            problems.append((name, str(exc)))
    if values["deadline"]:
        try:
            when = datetime.fromisoformat(str(values["deadline"]))
            if when.tzinfo is None:
                problems.append(("deadline", "must carry its time zone, e.g. 2026-12-01T03:15:00+00:00"))
        except ValueError:
            problems.append(("deadline", f"{shown(values['deadline'])} is not an ISO 8601 time, e.g. "
                                         "2026-12-01T03:15:00+00:00 (set by `runbook run`)"))
    check("incident", bool(INCIDENT_RE.match(str(values["incident"]))),
          f"{shown(values['incident'])} is not an incident id; use letters, digits, '.', '_' or '-' (max 64), e.g. INC-123")
    known_envs = sorted(environments)
    check("environment", values["environment"] in known_envs,
          f"unknown environment {shown(values['environment'])}{_close_matches(str(values['environment']), known_envs)}; "
          f"known: {', '.join(known_envs)}")
    known_actions = sorted(actions)
    seen: set[str] = set()
    for text in values["approve"] or ():
        approval = Approval.parse(str(text))
        if approval.action in seen:
            problems.append(("approve", f"{approval.action} is approved more than once; approve one plan per action"))
            continue
        seen.add(approval.action)
        if approval.action == ALLOW_UNLOCKED:
            if "@" in str(text):
                problems.append(("approve", f"{shown(text)}: {ALLOW_UNLOCKED} takes no digest"))
            continue
        if approval.action not in known_actions:
            problems.append(("approve", f"no action named {shown(approval.action)} in this runbook"
                                        f"{_close_matches(approval.action, known_actions)}; "
                                        f"actions: {', '.join(known_actions)} (and {ALLOW_UNLOCKED})"))
            continue
        undo = approval.action.startswith("undo_")
        if "@" in str(text) and approval.plan_digest is None:
            problems.append(("approve", f"{shown(text)}: the plan digest after '@' is empty (an unset variable?); "
                                        "give the 16-character digest its dry run printed"))
        elif approval.plan_digest is not None and not DIGEST_RE.fullmatch(approval.plan_digest):
            problems.append(("approve", f"{shown(text)}: a plan digest is the 16 hex characters a dry run prints "
                                        "(or all 64); shorter prefixes are not accepted"))
        elif approval.plan_digest is None and not undo:
            problems.append(("approve", f"{shown(text)}: an approval names the plan it approves, as "
                                        f"{approval.action}@<digest>; run with dry_run true first: it prints the "
                                        "digest and the exact approve line"))
    if values["approve"] and not str(values["operator"]).strip():
        problems.append(("operator", "approving an action needs the operator's name (-p operator <name>)"))
    elif values["operator"]:
        why = operator_problem(str(values["operator"]))
        if why:
            problems.append(("operator", why))
    known_scenarios = sorted(scenarios)
    scenario = str(values["scenario"])
    if scenario and not scenario.endswith((".yaml", ".yml")) and known_scenarios:
        check("scenario", scenario in known_scenarios,
              f"unknown scenario {shown(scenario)}{_close_matches(scenario, known_scenarios)}; "
              f"known: {', '.join(known_scenarios)}")
    for p in declared.values():
        if p.name in values and isinstance(values[p.name], list):
            values[p.name] = tuple(values[p.name])
    if not 1 <= int(values["recovery_samples"]) <= 60:
        problems.append(("recovery_samples", f"must be between 1 and 60, got {values['recovery_samples']}"))
    try:
        if parse_duration(str(values["recovery_interval"])) > timedelta(minutes=10):
            problems.append(("recovery_interval", "must be at most 10m"))
    except ValueError as exc:
        problems.append(("recovery_interval", str(exc)))
    extra = _extra_checks(cls, values)
    problems.extend(extra)
    if problems:
        lines = [f"  - {name}: {message}" for name, message in problems]
        raise ConfigError("bad parameters:\n" + "\n".join(lines), parameter=problems[0][0])
    return cls(**values)


def _extra_checks(cls: type[CommonParams], values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Per-runbook checks a params class declares in `check_values` (a staticmethod)."""
    hook = getattr(cls, "check_values", None)
    return list(hook(values)) if hook else []


def is_email(text: str) -> bool:
    """True if `text` looks like one email address."""
    return bool(_EMAIL_RE.match(text))

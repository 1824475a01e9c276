"""The providers, each declared once: `PROVIDER = Provider(...)` in its module of this package.

A declaration says what a profile holds for the provider (its section(s), the endpoint's fields and the
*names* of its secret variables), what stops it being reached, which module holds its checks, test send
and error mapper, what its sandbox scenario sections default to, and how the sandbox starts its
stand-in. Settings, the sandbox and the CLI loop over `providers()`; none of them names a provider.

These modules stay light (no SDK is imported here): the runner reads them to validate a profile
before any kernel starts. Providers kept outside this package are named in `$RUNBOOK_PROVIDER_MODULES`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, get_type_hints

from runbooklib.errors import ConfigError

if TYPE_CHECKING:
    from runbooklib.sandbox import Site, Started

PACKAGE = "runbooklib.endpoints"
PROFILE_KEYS = ("database_url_env", "platform_api", "redis", "providers", "timeouts", "statement_timeout", "row_cap",
                "phone_regions")
"""A profile's own keys, beside the providers' sections."""
RESERVED = (*PROFILE_KEYS, "database")
"""Names no provider section may take: the profile's own keys and the dependencies every deployment has."""
FIELD_TYPES = ("str", "int", "bool", "tuple[str, ...]")
"""The field types an endpoint may have (what a profile section's values are checked against)."""
MODULES_ENV = "RUNBOOK_PROVIDER_MODULES"
"""Comma-separated importable modules that each declare `PROVIDER`: providers kept outside this package."""


@dataclass(frozen=True)
class Secrets:
    """The variables an endpoint names, by how the redactor masks their values."""

    parts: tuple[str, ...] = ()
    """Tokens, passwords, keys: the value and every derived form (base64, Basic pairs, pieces)."""
    whole: tuple[str, ...] = ()
    """User names and URLs: masked only whole, never by their parts."""
    public: tuple[str, ...] = ()
    """Our own sending addresses and numbers: values (not variables) that stay readable."""


@dataclass(frozen=True)
class Provider:
    """One provider, declared once.

    Attributes:
        kind: Its name in profiles, scenarios and dependencies (e.g. `twilio`).
        sections: The profile sections it serves, each with the label a responder reads; a runbook lists
            the sections it depends on in its `dependencies`.
        endpoint: The frozen dataclass one section is read into (unknown keys and wrong types refused).
        required: The key every section must give.
        client: The module holding its checks, test send and its one error mapper.
        missing: What stops an endpoint being reached, read from names only (variables unset, files unreadable).
        secrets: The variables an endpoint names, for the redactor.
        email_endpoint: Whether a platform email provider name may map to one of its sections (`providers:`).
        scenario: The sandbox scenario sections it reads, with their healthy defaults.
        choices: Allowed values of scenario keys, as `section.key` → values (checked when a scenario loads).
        free_form: Scenario keys whose mappings and lists are the scenario's own (not merged key by key).
        demo_secrets: The sandbox's generated secrets it uses: key → the demo profile's variable name.
        make_secret: How a demo secret of a given key looks (a provider's id format), or None for a random token.
        standin: Starts its stand-in(s) in a sandbox and says what the demo profile's sections are.
    """

    kind: str
    sections: Mapping[str, str]
    endpoint: type
    required: str
    client: str
    missing: Callable[[Any], list[str]]
    secrets: Callable[[Any], Secrets]
    email_endpoint: bool = False
    scenario: Mapping[str, Any] = field(default_factory=dict)
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    free_form: tuple[str, ...] = ()
    demo_secrets: Mapping[str, str] = field(default_factory=dict)
    make_secret: Callable[[str], str | None] | None = None
    standin: Callable[[Site], Started] | None = None

    def __post_init__(self) -> None:
        if not self.kind.isidentifier() or not self.sections:
            raise ValueError(f"a provider needs an identifier kind and at least one section, not {self.kind!r}")
        taken = [section for section in self.sections if section in RESERVED or not section.isidentifier()]
        if taken:
            raise ValueError(f"provider {self.kind}: sections {', '.join(taken)} are reserved or not names; "
                             f"reserved: {', '.join(RESERVED)}")
        hints = get_type_hints(self.endpoint)
        odd = [f"{name}: {_type_name(hint)}" for name, hint in hints.items() if _type_name(hint) not in FIELD_TYPES]
        if odd:
            raise ValueError(f"provider {self.kind}: endpoint fields of types a profile cannot give: {', '.join(odd)}; "
                             f"allowed: {', '.join(FIELD_TYPES)}")
        if self.required not in hints:
            raise ValueError(f"provider {self.kind}: required key {self.required!r} is not a field of its endpoint")
        for key in self.choices:
            where: Any = self.scenario
            for part in key.split("."):
                if not isinstance(where, Mapping) or part not in where:
                    raise ValueError(f"provider {self.kind}: choices name {key!r}, which its scenario does not default")
                where = where[part]


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def _module_names() -> tuple[list[str], list[str]]:
    """(built-in provider modules, those named in `$RUNBOOK_PROVIDER_MODULES`)."""
    package = importlib.import_module(PACKAGE)
    built_in = [f"{PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
                if not info.name.startswith("_")]
    return built_in, [part.strip() for part in os.environ.get(MODULES_ENV, "").split(",") if part.strip()]


@cache
def _declared(built_in: tuple[str, ...], extra: tuple[str, ...]) -> tuple[Provider, ...]:
    found: dict[str, Provider] = {}
    for name in (*built_in, *extra):
        where = f"provider module {name!r}" + (f" (from ${MODULES_ENV})" if name in extra else "")
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import {where}: {exc}") from exc
        except Exception as exc:  # its code fails, or its declaration is refused: bad settings, not our crash
            raise ConfigError(f"{where} cannot be loaded: {exc.__class__.__name__}: {exc}") from exc
        provider = getattr(module, "PROVIDER", None)
        if not isinstance(provider, Provider):
            if name in extra:
                raise ConfigError(f"{where} declares no PROVIDER = Provider(...)")
            continue
        if provider.kind in found:
            raise ConfigError(f"{where} declares provider {provider.kind!r}, which is already declared")
        for mine, what in ((provider.sections, "profile sections"), (provider.scenario, "scenario sections")):
            theirs = {s for p in found.values() for s in (p.sections if what.startswith("profile") else p.scenario)}
            taken = sorted(set(mine) & theirs)
            if taken:
                raise ConfigError(f"{where} declares {what} another provider declares: {', '.join(taken)}")
        found[provider.kind] = provider
    return tuple(sorted(found.values(), key=lambda p: p.kind))


def providers() -> tuple[Provider, ...]:
    """Every declared provider, by kind."""
    built_in, extra = _module_names()
    return _declared(tuple(built_in), tuple(extra))


def sections() -> dict[str, Provider]:
    """Profile section → the provider serving it."""
    return {section: p for p in providers() for section in p.sections}


def labels() -> dict[str, str]:
    """Profile section → the label a responder reads (e.g. "SMTP backup")."""
    return {section: label for p in providers() for section, label in p.sections.items()}


def not_set(env: str, what: str) -> str | None:
    """Why a secret variable cannot be read, or None when it is set (names only; the value is not kept)."""
    if not env:
        return f"no environment variable is configured for the {what}"
    if not os.environ.get(env):
        return f"the {what} is read from ${env}, which is not set"
    return None

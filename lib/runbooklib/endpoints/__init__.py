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
from typing import TYPE_CHECKING, Any

from runbooklib.errors import ConfigError

if TYPE_CHECKING:
    from runbooklib.sandbox import Site, Started

PACKAGE = "runbooklib.endpoints"
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
        for key in self.choices:
            section, _, name = key.partition(".")
            if section not in self.scenario or name not in self.scenario[section]:
                raise ValueError(f"provider {self.kind}: choices name {key!r}, which its scenario does not default")


def _module_names() -> list[str]:
    package = importlib.import_module(PACKAGE)
    names = [f"{PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_")]
    names += [part.strip() for part in os.environ.get(MODULES_ENV, "").split(",") if part.strip()]
    return names


@cache
def _declared(names: tuple[str, ...]) -> tuple[Provider, ...]:
    found: dict[str, Provider] = {}
    for name in names:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"cannot import provider module {name!r} (from ${MODULES_ENV}): {exc}") from exc
        provider = getattr(module, "PROVIDER", None)
        if isinstance(provider, Provider):
            found[provider.kind] = provider
    sections = [s for p in found.values() for s in p.sections]
    clash = sorted({s for s in sections if sections.count(s) > 1})
    if clash:
        raise ConfigError(f"profile sections declared by more than one provider: {', '.join(clash)}")
    return tuple(sorted(found.values(), key=lambda p: p.kind))


def providers() -> tuple[Provider, ...]:
    """Every declared provider, by kind."""
    return _declared(tuple(_module_names()))


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

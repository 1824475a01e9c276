"""Environment profiles: where each service is, and the *names* of the variables holding secrets.

A profile never holds a secret value. Profiles come from a YAML file (see
`params/environments.example.yaml`) plus the built-in `demo` profile, whose endpoints are filled in
from a running sandbox. Secret values are read from the environment only when used, and every value
read is registered with the redactor so that it can never reach a saved output.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from runbooklib import endpoints
from runbooklib.errors import ConfigError
from runbooklib.redact import PII_KEY_ENV, REDACTOR
from runbooklib.yamlfiles import load_yaml

DEMO = "demo"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_STATEMENT_TIMEOUT = 20.0
DEFAULT_ROW_CAP = 5000
DEPENDENCY_LABELS = {"database": "message_logs (database)", "platform_api": "Lineup API", "redis": "Redis (BullMQ)"}
"""The outside services every deployment has; each provider declares its own sections and labels (`endpoints`)."""
Endpoint = TypeVar("Endpoint")


def dependency_labels() -> dict[str, str]:
    """Every dependency a runbook may list (its `dependencies`), with the label a responder reads."""
    return {**DEPENDENCY_LABELS, **endpoints.labels()}


@dataclass(frozen=True)
class Profile:
    """One environment: every endpoint a runbook talks to."""

    name: str
    database_url_env: str
    platform_api_url: str
    platform_api_token_env: str
    endpoints: Mapping[str, Any] = field(default_factory=dict)
    """Profile section → its provider's endpoint (see `runbooklib.endpoints`); a section not configured is absent."""
    providers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    total_timeout: float = DEFAULT_CONNECT_TIMEOUT + DEFAULT_READ_TIMEOUT
    """Seconds one outside call may take in all (connect, every read, a whole SMTP dialogue)."""
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    row_cap: int = DEFAULT_ROW_CAP
    database_url: str = ""  # only the demo profile sets this directly (a local SQLite file, no secret)
    redis_url_env: str = ""
    redis_url: str = ""  # only the demo profile sets this directly (a sandbox Redis)
    bullmq_prefix: str = "bull"
    phone_regions: tuple[str, ...] = ()
    """Where the tenants' recipients are (ISO 3166 codes): national-format numbers of these regions are masked
    (international ones always are). Empty: `redact.DEFAULT_PHONE_REGIONS`."""

    def provider_kind(self, provider: str) -> str | None:
        """Which profile section serves a platform email provider name, if known."""
        return self.providers.get(provider)

    def endpoint(self, kind: type[Endpoint], section: str) -> Endpoint | None:
        """The endpoint configured in `section`, or None when the profile has none there."""
        found = self.endpoints.get(section)
        if found is not None and not isinstance(found, kind):
            raise TypeError(f"profile section {section!r} holds {type(found).__name__}, not {kind.__name__}")
        return found

    def resolve_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return secret(self.redis_url_env, what="Redis URL (BullMQ)", parts=False)

    def resolve_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return secret(self.database_url_env, what="database URL", parts=False)

    def missing(self, dependencies: tuple[str, ...]) -> list[dict[str, str]]:
        """What of `dependencies` this profile cannot reach as it stands: endpoints not configured, secret
        variables not set. One entry per problem: `dependency`, `label` and `why`. Nothing is read but names."""
        out: list[dict[str, str]] = []
        labels = dependency_labels()

        def note(dependency: str, why: str) -> None:
            out.append({"dependency": dependency, "label": labels.get(dependency, dependency), "why": why})

        def unset(dependency: str, env: str, what: str) -> None:
            if not env:
                note(dependency, f"no environment variable is configured for the {what}")
            elif not os.environ.get(env):
                note(dependency, f"the {what} is read from ${env}, which is not set")

        declared = endpoints.sections()
        for dependency in dependencies:
            if dependency == "database" and not self.database_url:
                unset(dependency, self.database_url_env, "database URL")
            elif dependency == "platform_api":
                unset(dependency, self.platform_api_token_env, "Lineup API token")
            elif dependency == "redis" and not self.redis_url:
                unset(dependency, self.redis_url_env, "Redis URL (BullMQ)")
            elif dependency in declared:
                endpoint = self.endpoints.get(dependency)
                if endpoint is None:
                    note(dependency, "not configured in this profile")
                for why in declared[dependency].missing(endpoint) if endpoint is not None else ():
                    note(dependency, why)
            elif dependency not in labels:
                raise ConfigError(f"unknown dependency {dependency!r}; known: {', '.join(labels)}")
        return out


def _readable(path: str) -> bool:
    try:
        return Path(path).is_file() and os.access(path, os.R_OK)
    except (OSError, ValueError):
        return False


def secret(env_name: str, *, what: str, parts: bool = True) -> str:
    """Read a secret from the environment variable `env_name`, registering it for redaction (`parts`: see
    `Redactor.add_secret`)."""
    if not env_name:
        raise ConfigError(f"no environment variable is configured for the {what}")
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"the {what} is read from ${env_name}, which is not set", parameter=env_name)
    REDACTOR.add_secret(value, f"${env_name}", parts=parts)
    return value


def optional_secret(env_name: str) -> str | None:
    """Like `secret` but returns None when no variable is named or it is unset."""
    if not env_name or not os.environ.get(env_name):
        return None
    return secret(env_name, what=env_name)


def register_profile_secrets(profile: Profile) -> None:
    """Register the value of every secret variable a profile names (set or not) for redaction, each labelled by
    its variable's name; our own sending numbers and addresses stay readable; the tenants' phone regions."""
    names = [profile.platform_api_token_env]
    whole = [profile.database_url_env, profile.redis_url_env]  # URLs and user names: masked whole, not by parts
    declared = endpoints.sections()
    for section, endpoint in profile.endpoints.items():
        found = declared[section].secrets(endpoint)
        names += found.parts
        whole += found.whole
        for value in found.public:
            REDACTOR.add_public(value)
    for name in names:
        if name:
            REDACTOR.add_secret(os.environ.get(name), f"${name}")
    for name in whole:
        if name:
            REDACTOR.add_secret(os.environ.get(name), f"${name}", parts=False)
    REDACTOR.set_phone_regions(profile.phone_regions)
    REDACTOR.add_secret(os.environ.get(PII_KEY_ENV), f"${PII_KEY_ENV}")  # the key behind recipients' references
    for url, label in ((os.environ.get(profile.database_url_env) if profile.database_url_env else profile.database_url,
                        f"${profile.database_url_env}" if profile.database_url_env else "the database URL"),
                       (os.environ.get(profile.redis_url_env) if profile.redis_url_env else profile.redis_url,
                        f"${profile.redis_url_env}" if profile.redis_url_env else "the Redis URL")):
        REDACTOR.add_secret(_url_password(url), f"the password in {label}")


def _url_password(url: str | None) -> str | None:
    if not url:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url).password
    except ArgumentError:
        return None
    return str(password) if password else None


E = TypeVar("E")


def email_sections() -> tuple[str, ...]:
    """What a platform email provider name may map to in a profile's `providers` (sections of email providers)."""
    return tuple(section for p in endpoints.providers() if p.email_endpoint for section in p.sections)

LIMITS = {"connect": (0.1, 300.0), "read": (0.1, 600.0), "total": (0.1, 900.0), "statement_timeout": (0.1, 3600.0),
          "row_cap": (1, 1_000_000)}
"""Allowed ranges of a profile's numbers (seconds; rows)."""
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ID = re.compile(r"^[0-9]{1,32}$")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {_kind(value)}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be names, got {_kind(key)} {_show(key)}")
    return value


def _kind(value: Any) -> str:
    return {str: "text", bool: "true/false", int: "a whole number", float: "a number", list: "a list",
            dict: "a mapping"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, where: str, limits: tuple[float, float], *, whole: bool = False) -> float:
    low, high = limits
    if isinstance(value, bool) or not isinstance(value, int | float) or (whole and not isinstance(value, int)):
        raise ConfigError(f"{where}: {_show(value)} is not {'a whole number' if whole else 'a number'}; "
                          f"allowed: {low:g} to {high:g}")
    if not low <= value <= high:  # also refuses NaN
        raise ConfigError(f"{where}: {_show(value)} is out of range; allowed: {low:g} to {high:g}")
    return float(value)


def _check_field(name: str, value: Any, where: str) -> None:
    """Checks by a field's name: variable names, URLs, ports, numbers, addresses."""
    if value in ("", ()):
        return
    if name.endswith("_env") and not _ENV_NAME.match(str(value)):
        raise ConfigError(f"{where}: {_show(value)} is not an environment variable name (letters, digits, _)")
    if name.endswith("_url") or name == "url":
        check_http_url(str(value), where)
    if name == "port" and not 1 <= int(value) <= 65535:
        raise ConfigError(f"{where}: port {value} is out of range; allowed: 1 to 65535")
    if name == "app_id" and not _ID.match(str(value)):
        raise ConfigError(f"{where}: must be the numeric id as text, e.g. \"740551209813274\"")
    if name == "from_numbers":
        bad = [n for n in value if not re.fullmatch(r"\+[1-9][0-9]{6,14}", n)]
        if bad:
            REDACTOR.add_public(bad[0])  # a sending number of ours, named in its error as it was written
            raise ConfigError(f"{where}: {_show(bad[0])} is not a number in E.164 form, e.g. \"+15005550006\"")
    if name == "ca_file" and not _readable(str(value)):
        raise ConfigError(f"{where}: {_show(value)} is not a readable file (a PEM bundle of CA certificates)")
    if name == "from_address" and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", str(value)):
        raise ConfigError(f"{where}: {_show(value)} is not an email address")
    if name in ("host", "region", "api_version") and (not str(value).strip() or any(c.isspace() for c in str(value))):
        raise ConfigError(f"{where}: {_show(value)} must be one word, without spaces")


def check_http_url(url: str, where: str) -> str:
    """`url` if it is an http(s) URL with a host; a ConfigError naming `where` otherwise."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or (port is not None and port == 0):
        raise ConfigError(f"{where}: {_show(url)} is not an http(s) URL; use e.g. https://lineup.app")
    return url


def _typed(cls: type[E], data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The mapping's values checked against the endpoint's field types (str, int, bool, tuple of str)."""
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints[key]
        at = f"{where}.{key}"
        if hint is str:
            if isinstance(value, int) and not isinstance(value, bool) and key in ("waba_id", "phone_number_id", "app_id"):
                value = str(value)  # an unquoted id in YAML
            if not isinstance(value, str):
                raise ConfigError(f"{at}: expected text, got {_kind(value)} {_show(value)}")
        elif hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{at}: expected a whole number, got {_kind(value)} {_show(value)}")
        elif hint is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{at}: expected true or false, got {_kind(value)} {_show(value)}")
        else:  # tuple[str, ...]
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{at}: expected a list of text, e.g. [\"+15005550006\"], got {_kind(value)} "
                                  f"{_show(value)}")
            value = tuple(value)
        _check_field(key, value, at)
        out[key] = value
    return out


def _endpoint(cls: type[Any], data: Any, where: str, required: str) -> Any:
    """Build an endpoint from its YAML mapping, rejecting unknown keys and values of the wrong type."""
    data = _mapping(data, where)
    if not data:
        return None
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    from dataclasses import MISSING

    needed = [required] + [name for name, f in cls.__dataclass_fields__.items()
                           if f.default is MISSING and f.default_factory is MISSING and name != required]
    absent = [name for name in needed if name not in data]
    if absent:
        raise ConfigError(f"{where}: {', '.join(map(repr, absent))} {'is' if len(absent) == 1 else 'are'} required")
    typed = _typed(cls, data, where)  # its errors name `where` already
    try:
        return cls(**typed)
    except ConfigError as exc:  # the endpoint's own checks name the field as `<section>.<field>` or `<field>`
        message, section = str(exc), where.rsplit(".", 1)[-1]
        parent = where[: -len(section) - 1] if where.endswith("." + section) else ""
        raise ConfigError(f"{parent}.{message}" if parent and message.startswith(section + ".")
                          else f"{where}.{message}") from exc


def _keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")


def _text(value: Any, where: str, *, name: str = "") -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {_kind(value)} {_show(value)}")
    _check_field(name or where.rsplit(".", 1)[-1], value, where)
    return value


def profile_from_mapping(name: str, data: Any, where: str = "profile") -> Profile:
    """Build a Profile from its YAML mapping, rejecting unknown keys and values of the wrong type or range."""
    data = _mapping(data, where)
    declared = endpoints.sections()
    _keys(data, {*endpoints.PROFILE_KEYS, *declared}, where)
    api = _mapping(data.get("platform_api"), f"{where}.platform_api")
    _keys(api, {"url", "token_env"}, f"{where}.platform_api")
    if "url" not in api or "token_env" not in api:
        raise ConfigError(f"{where}.platform_api: needs 'url' and 'token_env'")
    timeouts = _mapping(data.get("timeouts"), f"{where}.timeouts")
    _keys(timeouts, {"connect", "read", "total"}, f"{where}.timeouts")
    seconds = {k: _number(timeouts[k], f"{where}.timeouts.{k}", LIMITS[k]) for k in timeouts}
    connect = seconds.get("connect", DEFAULT_CONNECT_TIMEOUT)
    read = seconds.get("read", DEFAULT_READ_TIMEOUT)
    redis = _mapping(data.get("redis"), f"{where}.redis")
    _keys(redis, {"url_env", "prefix"}, f"{where}.redis")
    allowed = email_sections()
    providers = _mapping(data.get("providers"), f"{where}.providers") or {section: section for section in allowed}
    for provider, kind in providers.items():
        if kind not in allowed:
            raise ConfigError(f"{where}.providers.{provider}: {_show(kind)}; allowed: {', '.join(allowed)}")
    prefix = _text(redis.get("prefix", "bull"), f"{where}.redis.prefix")
    if not prefix.strip():
        raise ConfigError(f"{where}.redis.prefix: must not be empty (BullMQ's default is bull)")
    return Profile(
        name=name,
        database_url_env=_text(data.get("database_url_env", ""), f"{where}.database_url_env"),
        platform_api_url=check_http_url(_text(api["url"], f"{where}.platform_api.url"),
                                        f"{where}.platform_api.url").rstrip("/"),
        platform_api_token_env=_text(api["token_env"], f"{where}.platform_api.token_env"),
        endpoints={section: endpoint for section, provider in declared.items()
                   if (endpoint := _endpoint(provider.endpoint, data.get(section), f"{where}.{section}",
                                             provider.required)) is not None},
        providers=dict(providers),
        connect_timeout=connect,
        read_timeout=read,
        total_timeout=seconds.get("total", connect + read),
        statement_timeout=_number(data.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT), f"{where}.statement_timeout",
                                  LIMITS["statement_timeout"]),
        row_cap=int(_number(data.get("row_cap", DEFAULT_ROW_CAP), f"{where}.row_cap", LIMITS["row_cap"], whole=True)),
        redis_url_env=_text(redis.get("url_env", ""), f"{where}.redis.url_env"),
        bullmq_prefix=prefix,
        phone_regions=_regions(data.get("phone_regions"), f"{where}.phone_regions"),
    )


def _regions(value: Any, where: str) -> tuple[str, ...]:
    """ISO 3166 region codes that `phonenumbers` knows (e.g. [GB, US]); empty: the default list."""
    if value is None or value == []:
        return ()
    import phonenumbers

    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of region codes, e.g. [GB, US], got {_kind(value)} {_show(value)}")
    bad = [v for v in value if v.upper() not in phonenumbers.SUPPORTED_REGIONS]
    if bad:
        raise ConfigError(f"{where}: {_show(bad[0])} is not a region code phonenumbers knows; use ISO 3166 codes "
                          "such as GB, US, DE")
    return tuple(dict.fromkeys(v.upper() for v in value))


def load_profiles(environments_file: str = "") -> dict[str, Profile | None]:
    """Profiles by name. `demo` is always present (as None: its endpoints come from a sandbox)."""
    profiles: dict[str, Profile | None] = {DEMO: None}
    if not environments_file:
        return profiles
    data = load_yaml(Path(environments_file), "environments_file", parameter="environments_file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"environments_file {environments_file!r} must map profile names to settings",
                          parameter="environments_file")
    for name, body in data.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
            raise ConfigError(f"{environments_file}: {name!r} is not a profile name (letters, digits, . _ -)",
                              parameter="environments_file")
        if name == DEMO:
            raise ConfigError(f"{environments_file}: the name 'demo' is reserved for the sandbox")
        profiles[name] = profile_from_mapping(name, body, f"{environments_file}:{name}")
    return profiles


def demo_profile(sandbox: Mapping[str, Any]) -> Profile:
    """The demo profile, pointed at a running sandbox described by `sandbox` (see sandbox.Sandbox.describe)."""
    base = profile_from_mapping(DEMO, sandbox["profile"], "sandbox")
    return replace(base, database_url=str(sandbox["database_url"]), redis_url=str(sandbox.get("redis_url") or ""))

"""Environment profiles: where each service is, and the *names* of the variables holding secrets.

A profile never holds a secret value. Profiles come from a YAML file (see
`params/environments.example.yaml`) plus the built-in `demo` profile, whose endpoints are filled in
from a running sandbox. Secret values are read from the environment only when used, and every value
read is registered with the redactor so that it can never reach a saved output.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from runbooklib.errors import ConfigError
from runbooklib.redact import REDACTOR

DEMO = "demo"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_STATEMENT_TIMEOUT = 20.0
DEFAULT_ROW_CAP = 5000
SMTP_SECURITY = ("starttls", "ssl", "none")


@dataclass(frozen=True)
class SmtpEndpoint:
    """One SMTP server and the names of its credential variables."""

    host: str
    port: int = 587
    security: str = "starttls"
    verify_tls: bool = True
    ca_file: str = ""
    username_env: str = ""
    password_env: str = ""
    from_address: str = "runbook@lineup.app"


@dataclass(frozen=True)
class SesEndpoint:
    """AWS SES: region, optional endpoint override, and credential variable names (empty: default chain)."""

    region: str
    endpoint_url: str = ""
    access_key_id_env: str = ""
    secret_access_key_env: str = ""
    session_token_env: str = ""
    from_address: str = "runbook@lineup.app"


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
        import re

        for name in ("waba_id", "phone_number_id"):
            if not str(getattr(self, name)).isdigit():
                raise ConfigError(f"whatsapp.{name} must be the numeric id as text, e.g. \"102290129340398\"")
        if not re.fullmatch(r"v\d+\.\d+", self.api_version):
            raise ConfigError(f"whatsapp.api_version {self.api_version!r} must look like v26.0")


@dataclass(frozen=True)
class Profile:
    """One environment: every endpoint a runbook talks to."""

    name: str
    database_url_env: str
    platform_api_url: str
    platform_api_token_env: str
    smtp: SmtpEndpoint | None = None
    smtp_backup: SmtpEndpoint | None = None
    ses: SesEndpoint | None = None
    twilio: TwilioEndpoint | None = None
    whatsapp: WhatsAppEndpoint | None = None
    providers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
    row_cap: int = DEFAULT_ROW_CAP
    database_url: str = ""  # only the demo profile sets this directly (a local SQLite file, no secret)
    redis_url_env: str = ""
    redis_url: str = ""  # only the demo profile sets this directly (a sandbox Redis)
    bullmq_prefix: str = "bull"

    def provider_kind(self, provider: str) -> str | None:
        """Which endpoint (`smtp`, `smtp_backup`, `ses`) serves a channel provider name, if known."""
        return self.providers.get(provider)

    def resolve_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return secret(self.redis_url_env, what="Redis URL (BullMQ)")

    def resolve_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return secret(self.database_url_env, what="database URL")


def secret(env_name: str, *, what: str) -> str:
    """Read a secret from the environment variable `env_name`, registering it for redaction."""
    if not env_name:
        raise ConfigError(f"no environment variable is configured for the {what}")
    value = os.environ.get(env_name)
    if not value:
        raise ConfigError(f"the {what} is read from ${env_name}, which is not set", parameter=env_name)
    REDACTOR.add_secret(value)
    return value


def optional_secret(env_name: str) -> str | None:
    """Like `secret` but returns None when no variable is named or it is unset."""
    if not env_name or not os.environ.get(env_name):
        return None
    return secret(env_name, what=env_name)


def register_profile_secrets(profile: Profile) -> None:
    """Register the value of every secret variable a profile names (set or not) for redaction."""
    names = [profile.database_url_env, profile.platform_api_token_env, profile.redis_url_env]
    for ep in (profile.smtp, profile.smtp_backup):
        if ep is not None:
            names += [ep.password_env, ep.username_env]
    if profile.ses is not None:
        names += [profile.ses.access_key_id_env, profile.ses.secret_access_key_env, profile.ses.session_token_env]
    if profile.twilio is not None:
        names += [profile.twilio.account_sid_env, profile.twilio.auth_token_env]
        for number in profile.twilio.from_numbers:
            REDACTOR.add_public_number(number)
    if profile.whatsapp is not None:
        names += [profile.whatsapp.access_token_env, profile.whatsapp.app_secret_env]
    REDACTOR.add_secrets(os.environ.get(n) for n in names if n)
    url = os.environ.get(profile.database_url_env) if profile.database_url_env else profile.database_url
    if url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            password = make_url(url).password
        except ArgumentError:
            password = None
        REDACTOR.add_secret(str(password) if password else None)


E = TypeVar("E", SmtpEndpoint, SesEndpoint, TwilioEndpoint, WhatsAppEndpoint)


def _endpoint(cls: type[E], data: Mapping[str, Any] | None, where: str, required: str) -> E | None:
    """Build an endpoint from its YAML mapping, rejecting unknown keys and naming what is missing."""
    if not data:
        return None
    known = set(cls.__dataclass_fields__)
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    if required not in data:
        raise ConfigError(f"{where}: {required!r} is required")
    endpoint = cls(**data)
    if isinstance(endpoint, SmtpEndpoint) and endpoint.security not in SMTP_SECURITY:
        raise ConfigError(f"{where}.security: {endpoint.security!r}; allowed: {', '.join(SMTP_SECURITY)}")
    return endpoint


def profile_from_mapping(name: str, data: Mapping[str, Any], where: str = "profile") -> Profile:
    """Build a Profile from its YAML mapping, rejecting unknown keys."""
    allowed = {"database_url_env", "platform_api", "smtp", "smtp_backup", "ses", "twilio", "whatsapp", "redis",
               "providers", "timeouts",
               "statement_timeout", "row_cap"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    api = data.get("platform_api") or {}
    if "url" not in api or "token_env" not in api:
        raise ConfigError(f"{where}.platform_api: needs 'url' and 'token_env'")
    timeouts = data.get("timeouts") or {}
    redis = data.get("redis") or {}
    if set(redis) - {"url_env", "prefix"}:
        raise ConfigError(f"{where}.redis: unknown keys {sorted(set(redis) - {'url_env', 'prefix'})}; "
                          "allowed: ['prefix', 'url_env']")
    return Profile(
        name=name,
        database_url_env=str(data.get("database_url_env", "")),
        platform_api_url=str(api["url"]).rstrip("/"),
        platform_api_token_env=str(api["token_env"]),
        smtp=_endpoint(SmtpEndpoint, data.get("smtp"), f"{where}.smtp", "host"),
        smtp_backup=_endpoint(SmtpEndpoint, data.get("smtp_backup"), f"{where}.smtp_backup", "host"),
        ses=_endpoint(SesEndpoint, data.get("ses"), f"{where}.ses", "region"),
        twilio=_endpoint(TwilioEndpoint, data.get("twilio"), f"{where}.twilio", "auth_token_env"),
        whatsapp=_endpoint(WhatsAppEndpoint, data.get("whatsapp"), f"{where}.whatsapp", "access_token_env"),
        providers=dict(data.get("providers") or {"ses": "ses", "smtp": "smtp", "smtp_backup": "smtp_backup"}),
        connect_timeout=float(timeouts.get("connect", DEFAULT_CONNECT_TIMEOUT)),
        read_timeout=float(timeouts.get("read", DEFAULT_READ_TIMEOUT)),
        statement_timeout=float(data.get("statement_timeout", DEFAULT_STATEMENT_TIMEOUT)),
        row_cap=int(data.get("row_cap", DEFAULT_ROW_CAP)),
        redis_url_env=str(redis.get("url_env", "")),
        bullmq_prefix=str(redis.get("prefix", "bull")),
    )


def load_profiles(environments_file: str = "") -> dict[str, Profile | None]:
    """Profiles by name. `demo` is always present (as None: its endpoints come from a sandbox)."""
    profiles: dict[str, Profile | None] = {DEMO: None}
    if not environments_file:
        return profiles
    path = Path(environments_file)
    if not path.is_file():
        raise ConfigError(f"environments_file {environments_file!r} does not exist", parameter="environments_file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"environments_file {environments_file!r} is not valid YAML: {exc}",
                          parameter="environments_file") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"environments_file {environments_file!r} must map profile names to settings",
                          parameter="environments_file")
    for name, body in data.items():
        if name == DEMO:
            raise ConfigError(f"{environments_file}: the name 'demo' is reserved for the sandbox")
        profiles[str(name)] = profile_from_mapping(str(name), body or {}, f"{environments_file}:{name}")
    return profiles


def demo_profile(sandbox: Mapping[str, Any]) -> Profile:
    """The demo profile, pointed at a running sandbox described by `sandbox` (see sandbox.Sandbox.describe)."""
    base = profile_from_mapping(DEMO, sandbox["profile"], "sandbox")
    return replace(base, database_url=str(sandbox["database_url"]), redis_url=str(sandbox.get("redis_url") or ""))

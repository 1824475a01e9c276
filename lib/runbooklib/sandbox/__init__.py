"""The embedded default: a simulated incident on this machine, no credentials, no servers to install.

`Sandbox.from_scenario(path).start()` seeds `message_logs` (SQLite by default, or any database URL
given), starts on loopback the Lineup API and the stand-ins of the providers the runbook depends on
(each provider declares its own, in `runbooklib.endpoints`), and puts freshly generated secrets in
the environment under the demo profile's variable names. `describe()` is what a notebook needs to
reach them (endpoints and variable *names*, never values). `stop()` stops everything.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from runbooklib import endpoints
from runbooklib.errors import ConfigError
from runbooklib.sandbox import seed
from runbooklib.sandbox.scenario import Scenario
from runbooklib.sandbox.standins import PlatformStandIn

PLATFORM_SECRETS = {"api_token": "RUNBOOK_DEMO_API_TOKEN"}


def secret_env() -> dict[str, str]:
    """Every secret a sandbox may generate, by key: the demo profile's variable holding it."""
    return {**PLATFORM_SECRETS, **{key: env for p in endpoints.providers() for key, env in p.demo_secrets.items()}}


SECRET_ENV = secret_env()
"""`secret_env()` for the built-in providers."""
T = TypeVar("T")


@dataclass
class Site:
    """What a provider's stand-in is given by the sandbox it starts in."""

    scenario: Scenario
    workdir: Path
    secrets: Mapping[str, str]
    _certs: dict[str, tuple[Path, Path]] | None = None

    def env(self, key: str) -> str:
        """The demo profile's variable holding the generated secret `key`."""
        return secret_env()[key]

    def certs(self) -> dict[str, tuple[Path, Path]]:
        """A trusted and an untrusted certificate with their keys (made on first use)."""
        if self._certs is None:
            from runbooklib.sandbox.smtp import make_certificate

            self._certs = {name: make_certificate(self.workdir, name) for name in ("trusted", "untrusted")}
        return self._certs

    def ca_file(self) -> str:
        """The CA bundle a client trusts the sandbox's servers with."""
        return str(self.certs()["trusted"][0])
    def echoing(self, standin: T) -> T:
        """`standin` set to echo credentials and recipients as the scenario's `echo` section says."""
        echo = self.scenario.section("echo")
        standin.echo, standin.echo_recipients = echo["credentials"], bool(echo["recipients"])  # type: ignore[attr-defined]
        return standin


@dataclass
class Started:
    """What a provider's stand-in hook started: servers by name (each has `stop()`), and the demo profile's
    sections pointing at them."""

    servers: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, name: str, server: T) -> T:
        self.servers[name] = server
        return server


class Sandbox:
    """Stand-ins and a seeded database for one scenario.

    `dependencies` (a runbook's) picks the providers whose stand-ins start; None starts every declared one."""

    def __init__(self, scenario: Scenario, *, workdir: Path | None = None, database_url: str | None = None,
                 secret_values: dict[str, str] | None = None, redis_url: str | None = None,
                 dependencies: Iterable[str] | None = None) -> None:
        self.scenario = scenario
        self.scenario_name = scenario.name
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="runbook-sandbox-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{self.workdir / 'message_logs.db'}"
        wanted = None if dependencies is None else set(dependencies)
        if wanted is not None:
            from runbooklib.settings import dependency_labels

            known = dependency_labels()
            unknown = sorted(wanted - set(known))
            if unknown:
                raise ConfigError(f"unknown dependencies {', '.join(unknown)}; known: {', '.join(known)}")
        self.providers = tuple(p for p in endpoints.providers()
                               if p.standin is not None and (wanted is None or wanted & set(p.sections)))
        """The providers whose stand-ins this sandbox runs."""
        keys = [*PLATFORM_SECRETS, *(key for p in self.providers for key in p.demo_secrets)]
        self.secrets = {k: (secret_values or {}).get(k) or _generate(k) for k in keys}
        self.standins: dict[str, Any] = {}
        """Every running stand-in by name (also readable as an attribute: `box.graph`, `box.smtp_backup`)."""
        self._sections: dict[str, dict[str, Any]] = {}
        self.platform: PlatformStandIn | None = None
        self.rows = 0
        self.redis_url = redis_url
        self.bull: Any = None
        self.lease_server: Any = None
        self._writer: Any = None
        self._previous_env: dict[str, str | None] = {}

    def __getattr__(self, name: str) -> Any:
        standins = self.__dict__.get("standins") or {}
        if name in standins:
            return standins[name]
        raise AttributeError(f"this sandbox runs no stand-in called {name!r}; it runs: "
                             f"{', '.join(['platform', *standins]) or 'none'}")

    def labels(self) -> list[str]:
        """What this sandbox runs, as a responder reads it (e.g. "SMTP primary", "Lineup API")."""
        out = [label for p in self.providers for label in p.sections.values()]
        out.append("Lineup API")
        if self.scenario.section("bullmq").get("enabled"):
            out.append("Redis with BullMQ")
        return out

    @classmethod
    def from_scenario(cls, path: Path, *, defaults: dict[str, Any] | None = None, **kwargs: Any) -> Sandbox:
        return cls(Scenario.load(path, defaults=defaults), **kwargs)

    def start(self) -> Sandbox:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.rows = seed.seed(self.database_url, self.scenario)
        self._writer = seed.writable_engine(self.database_url)
        site = Site(self.scenario, self.workdir, self.secrets)
        for provider in self.providers:
            assert provider.standin is not None
            started = provider.standin(site)
            self.standins.update(started.servers)
            self._sections.update(started.profile)
        logs = self.scenario.section("message_logs")
        if self.scenario.section("bullmq")["enabled"]:
            from runbooklib.sandbox.bullsandbox import BullSandbox

            self.bull = BullSandbox(self.scenario.section("bullmq"), redis_url=self.redis_url, writer=self._writer,
                                    scenario=self.scenario.name).start()
            self.redis_url = self.bull.url
        elif not self.redis_url:
            self.lease_server = _lease_redis()  # the shared store applying takes its leases in
            self.redis_url = self.lease_server.url if self.lease_server else None
        self.platform = PlatformStandIn(
            token=self.secrets["api_token"], scenario=self.scenario.section("platform"),
            tenants=list(logs["tenants"]), queue=self.scenario.channel.lower(), on_change=self._on_change,
            live_queues=self.bull.platform_metrics if self.bull else None,
            attempts=self.scenario.section("bullmq")["attempts"],
            tenant_providers={t.name: t.provider for t in seed.tenants_of(logs) if t.provider},
        )
        site.echoing(self.platform).start()
        names = secret_env()
        for key, value in self.secrets.items():
            env = names[key]
            self._previous_env[env] = os.environ.get(env)
            os.environ[env] = value

    def _on_change(self, kind: str, tenant: str, channel: str, body: Any) -> int:
        """Reflect a platform change in message_logs, as the real workers would."""
        platform = self.scenario.section("platform")
        if kind == "channel" and channel == "email":
            provider = body["after"]["provider"]
            original = (self.platform.initial.get(tenant, {}).get("email", {}).get("provider")
                        if self.platform is not None else platform["providers"].get("email"))
            if provider != body["before"]["provider"] and provider != original:
                # the tenant moved off the provider it started on (the failing one): its new mail is delivered
                seed.add_delivered(self._writer, tenant=tenant, count=int(platform["recovered_per_switch"]),
                                   provider=provider)
        if kind == "retry":
            return seed.requeue_failed(self._writer, channel=channel, exclude_codes=list(body["exclude"]),
                                       ids=list(body["ids"]), created_before=datetime.fromisoformat(body["created_before"]))
        return 0

    def changes(self) -> list[str]:
        """What anything asked the stand-ins to change or send since they started: mutating Lineup API requests,
        mail accepted, SMS and WhatsApp messages sent, templates submitted (a dry run leaves this empty)."""
        out = [f"Lineup API {m['method']} {m['path']}" for m in (self.platform.mutations() if self.platform else [])]
        for name, standin in self.standins.items():
            for attribute in ("messages", "sent", "submitted"):
                found = getattr(standin, attribute, None)
                if isinstance(found, list) and found:
                    out.append(f"{name}: {len(found)} {attribute}")
        return out

    def describe(self) -> dict[str, Any]:
        """Endpoints and secret variable names for the demo profile (no secret values)."""
        assert self.platform is not None, "the sandbox is not started"
        return {
            "scenario": self.scenario.name,
            "expect": self.scenario.expect,
            "database_url": self.database_url,
            "redis_url": self.redis_url or "",
            "profile": {
                "database_url_env": "",
                "platform_api": {"url": self.platform.url, "token_env": SECRET_ENV["api_token"]},
                **self._sections,
                "timeouts": {"connect": 3, "read": 5},
            },
        }

    def write_description(self, path: Path | None = None) -> Path:
        path = path or self.workdir / "sandbox.json"
        path.write_text(json.dumps(self.describe(), indent=2))
        return path

    def stop(self) -> None:
        if self.bull is not None:
            self.bull.stop()
        if self.lease_server is not None:
            self.lease_server.stop()
            self.lease_server = None
        for standin in (*self.standins.values(), self.platform):
            if standin is not None:
                standin.stop()
        self.standins = {}
        if self._writer is not None:
            self._writer.dispose()
        for env, value in self._previous_env.items():
            if value is None:
                os.environ.pop(env, None)
            else:
                os.environ[env] = value
        self._previous_env = {}
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _lease_redis() -> Any:
    """A loopback redis-server for the sandbox's leases, or None where none can be started (the plan then says
    that no lease store is configured)."""
    from runbooklib.sandbox.redis_server import RedisServer

    try:
        return RedisServer().start()
    except (RuntimeError, OSError):
        return None


def _generate(key: str) -> str:
    """A fresh demo secret: in its provider's format where it declares one, else a user name or a token."""
    for provider in endpoints.providers():
        if key in provider.demo_secrets and provider.make_secret is not None:
            made = provider.make_secret(key)
            if made:
                return made
    if key.endswith("username"):
        return f"sandbox-{secrets.token_hex(4)}"
    return secrets.token_urlsafe(24)

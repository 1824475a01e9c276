"""SMTP, declared once: the primary and backup servers a profile names, and their sandbox stand-ins.

Checks, the test send and the error mapper are in `runbooklib.providers.smtp` (smtplib).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from runbooklib.endpoints import Provider, Secrets, not_set
from runbooklib.errors import ConfigError

if TYPE_CHECKING:
    from runbooklib.sandbox import Site, Started

SECURITY = ("starttls", "ssl", "none")
MODES = ("ok", "down", "bad_tls", "auth_reject", "throttled", "refusing")
THROTTLE_CODES = (421, 450, 451, 452, 454)
"""What a throttling relay answers: 421 closes the connection, 45x says try again later (454 at AUTH)."""
"""What a sandbox SMTP server does: answer, refuse connections, present an untrusted certificate, refuse AUTH."""


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

    def __post_init__(self) -> None:
        if self.security not in SECURITY:
            raise ConfigError(f"security: {self.security!r}; allowed: {', '.join(SECURITY)}")


def _missing(endpoint: SmtpEndpoint) -> list[str]:
    why = []
    if endpoint.username_env:
        why.append(not_set(endpoint.username_env, f"SMTP username for {endpoint.host}"))
    if endpoint.password_env:
        why.append(not_set(endpoint.password_env, f"SMTP password for {endpoint.host}"))
    if endpoint.ca_file and not (Path(endpoint.ca_file).is_file() and os.access(endpoint.ca_file, os.R_OK)):
        why.append(f"ca_file {endpoint.ca_file!r} cannot be read")
    return [w for w in why if w]


def _secrets(endpoint: SmtpEndpoint) -> Secrets:
    return Secrets(parts=(endpoint.password_env,), whole=(endpoint.username_env,), public=(endpoint.from_address,))


def _standin(site: Site) -> Started:
    from runbooklib.sandbox import Started
    from runbooklib.sandbox.smtp import SmtpServer

    section, echo, ca = site.scenario.section("smtp"), site.scenario.section("echo")["credentials"], site.ca_file()
    started = Started()
    for server, role, prefix in (("smtp_primary", "primary", "smtp"), ("smtp_backup", "backup", "smtp_backup")):
        running = started.add(server, SmtpServer(section[role], username=site.secrets[f"{prefix}_username"],
                                                 password=site.secrets[f"{prefix}_password"], certs=site.certs(),
                                                 echo=echo, throttle=section["throttle"]).start())
        started.profile[prefix] = {"host": "127.0.0.1", "port": running.port, "security": "starttls",
                                   "verify_tls": True, "ca_file": ca, "username_env": site.env(f"{prefix}_username"),
                                   "password_env": site.env(f"{prefix}_password"), "from_address": "runbook@lineup.app"}
    return started


PROVIDER = Provider(
    kind="smtp",
    sections={"smtp": "SMTP primary", "smtp_backup": "SMTP backup"},
    endpoint=SmtpEndpoint,
    required="host",
    client="runbooklib.providers.smtp",
    missing=_missing,
    secrets=_secrets,
    email_endpoint=True,
    scenario={"smtp": {"primary": "ok", "backup": "ok",
                       "throttle": {"after": 0, "per_seconds": 60, "code": 421,
                                    "message": "4.7.0 Too many connections from your host, slow down"}}},
    choices={"smtp.primary": MODES, "smtp.backup": MODES, "smtp.throttle.code": THROTTLE_CODES},
    demo_secrets={"smtp_username": "RUNBOOK_DEMO_SMTP_USERNAME", "smtp_password": "RUNBOOK_DEMO_SMTP_PASSWORD",
                  "smtp_backup_username": "RUNBOOK_DEMO_SMTP_BACKUP_USERNAME",
                  "smtp_backup_password": "RUNBOOK_DEMO_SMTP_BACKUP_PASSWORD"},
    standin=_standin,
)

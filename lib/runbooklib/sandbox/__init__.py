"""The embedded default: a simulated incident on this machine, no credentials, no servers to install.

`Sandbox.from_scenario(path).start()` seeds `message_logs` (SQLite by default, or any database URL
given), starts the stand-ins on loopback — SMTP primary and backup (aiosmtpd, STARTTLS + AUTH), SES
(HTTP stand-in speaking the AWS wire format), the Lineup API — and puts freshly generated secrets in
the environment under the demo profile's variable names. `describe()` is what a notebook needs to
reach them (endpoints and variable *names*, never values). `stop()` stops everything.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from runbooklib.sandbox import seed
from runbooklib.sandbox.scenario import Scenario
from runbooklib.sandbox.smtp import SmtpServer, make_certificate
from runbooklib.sandbox.standins import GraphStandIn, PlatformStandIn, SesStandIn, StatusPageStandIn, TwilioStandIn

SECRET_ENV = {
    "api_token": "RUNBOOK_DEMO_API_TOKEN",
    "smtp_username": "RUNBOOK_DEMO_SMTP_USERNAME",
    "smtp_password": "RUNBOOK_DEMO_SMTP_PASSWORD",
    "smtp_backup_username": "RUNBOOK_DEMO_SMTP_BACKUP_USERNAME",
    "smtp_backup_password": "RUNBOOK_DEMO_SMTP_BACKUP_PASSWORD",
    "aws_access_key_id": "RUNBOOK_DEMO_AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "RUNBOOK_DEMO_AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "RUNBOOK_DEMO_AWS_SESSION_TOKEN",
    "twilio_account_sid": "RUNBOOK_DEMO_TWILIO_ACCOUNT_SID",
    "twilio_auth_token": "RUNBOOK_DEMO_TWILIO_AUTH_TOKEN",
    "whatsapp_access_token": "RUNBOOK_DEMO_WHATSAPP_TOKEN",
    "whatsapp_app_secret": "RUNBOOK_DEMO_META_APP_SECRET",
}
WABA_ID, PHONE_NUMBER_ID, APP_ID = "102290129340398", "106540352242922", "740551209813274"


class Sandbox:
    """Stand-ins and a seeded database for one scenario."""

    def __init__(self, scenario: Scenario, *, workdir: Path | None = None, database_url: str | None = None,
                 secret_values: dict[str, str] | None = None, redis_url: str | None = None) -> None:
        self.scenario = scenario
        self.scenario_name = scenario.name
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="runbook-sandbox-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{self.workdir / 'message_logs.db'}"
        self.secrets = {k: (secret_values or {}).get(k) or _generate(k) for k in SECRET_ENV}
        self.smtp_primary: SmtpServer | None = None
        self.smtp_backup: SmtpServer | None = None
        self.platform: PlatformStandIn | None = None
        self.ses: SesStandIn | None = None
        self.twilio: TwilioStandIn | None = None
        self.statuspage: StatusPageStandIn | None = None
        self.graph: GraphStandIn | None = None
        self.rows = 0
        self.redis_url = redis_url
        self.bull: Any = None
        self.lease_server: Any = None
        self._writer: Any = None
        self._previous_env: dict[str, str | None] = {}

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
        certs = {name: make_certificate(self.workdir, name) for name in ("trusted", "untrusted")}
        smtp = self.scenario.section("smtp")
        echo = self.scenario.section("echo")
        self.smtp_primary = SmtpServer(smtp["primary"], username=self.secrets["smtp_username"],
                                       password=self.secrets["smtp_password"], certs=certs,
                                       echo=echo["credentials"]).start()
        self.smtp_backup = SmtpServer(smtp["backup"], username=self.secrets["smtp_backup_username"],
                                      password=self.secrets["smtp_backup_password"], certs=certs,
                                      echo=echo["credentials"]).start()
        self.ses = SesStandIn(scenario=self.scenario.section("ses")).start()  # type: ignore[assignment]
        self.twilio = TwilioStandIn(  # type: ignore[assignment]
            sid=self.secrets["twilio_account_sid"], token=self.secrets["twilio_auth_token"],
            scenario=self.scenario.section("twilio")).start()
        self.statuspage = StatusPageStandIn(scenario=self.scenario.section("statuspage")).start()  # type: ignore[assignment]
        self.graph = GraphStandIn(  # type: ignore[assignment]
            token=self.secrets["whatsapp_access_token"], app_id=APP_ID, app_secret=self.secrets["whatsapp_app_secret"],
            waba_id=WABA_ID, phone_id=PHONE_NUMBER_ID, scenario=self.scenario.section("whatsapp")).start()
        logs = self.scenario.section("message_logs")
        if self.scenario.section("bullmq")["enabled"]:
            from runbooklib.sandbox.bullsandbox import BullSandbox

            self.bull = BullSandbox(self.scenario.section("bullmq"), redis_url=self.redis_url, writer=self._writer,
                                    scenario=self.scenario.name).start()
            self.redis_url = self.bull.url
        elif not self.redis_url:
            self.lease_server = _lease_redis()  # the shared store applying takes its leases in
            self.redis_url = self.lease_server.url if self.lease_server else None
        self.platform = PlatformStandIn(  # type: ignore[assignment]
            token=self.secrets["api_token"], scenario=self.scenario.section("platform"),
            tenants=list(logs["tenants"]), queue=self.scenario.channel.lower(), on_change=self._on_change,
            live_queues=self.bull.platform_metrics if self.bull else None,
            attempts=self.scenario.section("bullmq")["attempts"],
        ).start()
        for standin in (self.ses, self.twilio, self.statuspage, self.graph, self.platform):
            assert standin is not None
            standin.echo, standin.echo_recipients = echo["credentials"], bool(echo["recipients"])
        for key, env in SECRET_ENV.items():
            self._previous_env[env] = os.environ.get(env)
            os.environ[env] = self.secrets[key]

    def _on_change(self, kind: str, tenant: str, channel: str, body: Any) -> int:
        """Reflect a platform change in message_logs, as the real workers would."""
        platform = self.scenario.section("platform")
        if kind == "channel" and channel == "email":
            provider = body["after"]["provider"]
            if provider != body["before"]["provider"] and provider != platform["providers"].get("email"):
                # the tenant moved off the failing provider: its new mail is delivered
                seed.add_delivered(self._writer, tenant=tenant, count=int(platform["recovered_per_switch"]),
                                   provider=provider)
        if kind == "retry":
            return seed.requeue_failed(self._writer, channel=channel, exclude_codes=list(body["exclude"]),
                                       ids=list(body["ids"]), created_before=datetime.fromisoformat(body["created_before"]))
        return 0

    def describe(self) -> dict[str, Any]:
        """Endpoints and secret variable names for the demo profile (no secret values)."""
        assert self.platform and self.ses and self.smtp_primary and self.smtp_backup
        assert self.twilio and self.statuspage and self.graph
        ca = str(self.workdir / "trusted.crt")

        def smtp(server: SmtpServer, user_env: str, password_env: str) -> dict[str, Any]:
            return {"host": "127.0.0.1", "port": server.port, "security": "starttls", "verify_tls": True,
                    "ca_file": ca, "username_env": user_env, "password_env": password_env,
                    "from_address": "runbook@lineup.app"}

        return {
            "scenario": self.scenario.name,
            "expect": self.scenario.expect,
            "database_url": self.database_url,
            "redis_url": self.redis_url or "",
            "profile": {
                "database_url_env": "",
                "platform_api": {"url": self.platform.url, "token_env": SECRET_ENV["api_token"]},
                "smtp": smtp(self.smtp_primary, SECRET_ENV["smtp_username"], SECRET_ENV["smtp_password"]),
                "smtp_backup": smtp(self.smtp_backup, SECRET_ENV["smtp_backup_username"],
                                    SECRET_ENV["smtp_backup_password"]),
                "ses": {"region": "us-east-1", "endpoint_url": self.ses.url,
                        "access_key_id_env": SECRET_ENV["aws_access_key_id"],
                        "secret_access_key_env": SECRET_ENV["aws_secret_access_key"],
                        "session_token_env": SECRET_ENV["aws_session_token"],
                        "from_address": "runbook@lineup.app"},
                "twilio": {"account_sid_env": SECRET_ENV["twilio_account_sid"],
                           "auth_token_env": SECRET_ENV["twilio_auth_token"],
                           "from_numbers": list(self.scenario.section("twilio")["from_numbers"]),
                           "api_base_url": self.twilio.url, "status_page_url": self.statuspage.url},
                "whatsapp": {"graph_url": self.graph.url, "waba_id": WABA_ID, "phone_number_id": PHONE_NUMBER_ID,
                             "access_token_env": SECRET_ENV["whatsapp_access_token"], "app_id": APP_ID,
                             "app_secret_env": SECRET_ENV["whatsapp_app_secret"]},
                "providers": {"ses": "ses", "smtp": "smtp", "smtp_backup": "smtp_backup"},
                "timeouts": {"connect": 3, "read": 5},
            },
        }

    def write_description(self, path: Path | None = None) -> Path:
        path = path or self.workdir / "sandbox.json"
        path.write_text(json.dumps(self.describe(), indent=2))
        return path

    def stop(self) -> None:
        for server in (self.smtp_primary, self.smtp_backup):
            if server is not None:
                server.stop()
        if self.bull is not None:
            self.bull.stop()
        if self.lease_server is not None:
            self.lease_server.stop()
            self.lease_server = None
        for standin in (self.platform, self.ses, self.twilio, self.statuspage, self.graph):
            if standin is not None:
                standin.stop()
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
    if key.endswith("username"):
        return f"sandbox-{secrets.token_hex(4)}"
    if key == "aws_access_key_id":
        return "AKIA" + secrets.token_hex(8).upper()
    if key == "twilio_account_sid":
        return "AC" + secrets.token_hex(16)
    if key == "whatsapp_access_token":
        return "EAAG" + secrets.token_urlsafe(48)
    if key == "aws_session_token":  # as long as STS's (650 characters of base64)
        return base64.b64encode(secrets.token_bytes(486)).decode()[:650]
    return secrets.token_urlsafe(24)

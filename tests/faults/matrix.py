"""The fault matrix: each of a runbook's own dependencies broken one way at a time, on loopback.

A `Fault` breaks one dependency of an otherwise healthy sandbox (a misbehaving server in place of
the real one, a variable unset, a table locked) and says what the run must show: the finding that
names the fault, and the verdict (`inconclusive` unless a cause is established by the fault itself,
e.g. SMTP refusing connections is `smtp_unreachable`). Never `healthy`, never a hang, never a crash.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from runbooklib import catalog
from runbooklib.sandbox import SECRET_ENV, Sandbox
from runbooklib.sandbox import seed as seeding
from tests.faults import servers as srv

ALL = catalog.slugs()
EMAIL, SMS, WHATSAPP, RETRIES = ALL
FAULT_TIMEOUTS = {"connect": 1, "read": 2, "total": 3}
FAULT_STATEMENT_TIMEOUT = 2
"""The faulty profiles' timeouts: short, so that a silent peer costs seconds, not minutes."""
TRICKLE_EVERY = 0.5
"""A trickling peer's pace: a byte well inside every per-read timeout, so only a total deadline can stop it."""


@dataclass
class World:
    """One run's surroundings: the sandbox's description (to be broken), environment changes, servers to stop."""

    box: Sandbox
    description: dict[str, Any]
    postgres: Any = None
    env: dict[str, str | None] = field(default_factory=dict)
    servers: list[Any] = field(default_factory=list)
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def of(cls, box: Sandbox, postgres: Any = None) -> World:
        description = copy.deepcopy(box.describe())
        description["profile"]["timeouts"] = dict(FAULT_TIMEOUTS)
        description["profile"]["statement_timeout"] = FAULT_STATEMENT_TIMEOUT
        return cls(box, description, postgres)

    @property
    def profile(self) -> dict[str, Any]:
        profile: dict[str, Any] = self.description["profile"]
        return profile

    def serve(self, server: Any) -> Any:
        self.servers.append(server)
        return server

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()
        srv.stop_all(self.servers)


@dataclass(frozen=True)
class Fault:
    """One way one dependency breaks, and what every run it applies to must show."""

    name: str
    dependency: str
    what: str
    runbooks: tuple[str, ...]
    breaks: Callable[[World], None]
    names: str
    """A regular expression some finding (status error or fail) must match: the fault, named."""
    verdict: dict[str, str] = field(default_factory=dict)
    """Runbook → the cause it must name; the default is `inconclusive`."""
    postgres: bool = False

    def expected(self, slug: str) -> str:
        return self.verdict.get(slug, "inconclusive")


# -- breaking things ----------------------------------------------------------------------------------
def _api(world: World, url: str) -> None:
    world.profile["platform_api"]["url"] = url


def _unset(name: str) -> Callable[[World], None]:
    def breaks(world: World) -> None:
        world.env[name] = None
    return breaks


def _database(world: World, url: str) -> None:
    world.description["database_url"] = url


def _pg_database(world: World, name: str) -> str:
    """A fresh database on the test PostgreSQL, seeded with the sandbox's scenario; its URL."""
    admin = sa.create_engine(world.postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = world.postgres.url.rsplit("/", 1)[0] + f"/{name}"
    seeding.seed(url, world.box.scenario)
    return url


def _pg_slow(world: World) -> None:
    """message_logs is a view that takes 30 s to answer anything: every query hits the statement timeout."""
    url = _pg_database(world, "faults_slow")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE message_logs RENAME TO message_logs_data"))
        conn.execute(sa.text("CREATE VIEW message_logs AS SELECT * FROM message_logs_data "
                             "WHERE (SELECT true FROM pg_sleep(30))"))
    engine.dispose()
    _database(world, url)


def _pg_strange_statuses(world: World) -> None:
    """Statuses written in another case (`failed`, `delivered`): a failure rate counting FAILED would see none."""
    url = _pg_database(world, "faults_statuses")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE message_logs SET status = lower(status)"))
    engine.dispose()
    _database(world, url)


def _pg_locked(world: World) -> None:
    """Another session holds an ACCESS EXCLUSIVE lock on message_logs for the whole run."""
    url = _pg_database(world, "faults_locked")
    engine = sa.create_engine(url)
    conn = engine.connect()
    conn.execute(sa.text("LOCK TABLE message_logs IN ACCESS EXCLUSIVE MODE"))
    world.cleanups.append(lambda: (conn.rollback(), conn.close(), engine.dispose()))
    _database(world, url)


def _pg_frozen(world: World) -> None:
    """Connects and authenticates, then the session goes silent (a proxy stops forwarding after ReadyForQuery)."""
    url = _pg_database(world, "faults_frozen")
    proxy = world.serve(srv.Proxy("127.0.0.1", world.postgres.port, freeze_after=srv.after_postgres_ready))
    _database(world, url.replace(f":{world.postgres.port}/", f":{proxy.port}/"))


def _smtp(world: World, port: int) -> None:
    world.profile["smtp"]["port"] = port


def _ses(world: World, url: str) -> None:
    world.profile["ses"]["endpoint_url"] = url


def _twilio(world: World, url: str) -> None:
    world.profile["twilio"]["api_base_url"] = url


def _graph(world: World, url: str) -> None:
    world.profile["whatsapp"]["graph_url"] = url


def _redis(world: World, url: str) -> None:
    world.description["redis_url"] = url


def _redis_port(world: World) -> int:
    port = int(str(world.box.redis_url).rsplit(":", 1)[1].split("/")[0])
    return port


def _twilio_routes(world: World, routes: dict[str, srv.Route]) -> None:
    assert world.box.twilio is not None
    _twilio(world, world.serve(srv.RoutedHTTP(world.box.twilio.url, routes)).url)


def _graph_routes(world: World, routes: dict[str, srv.Route]) -> None:
    assert world.box.graph is not None
    _graph(world, world.serve(srv.RoutedHTTP(world.box.graph.url, routes)).url)


def _no_sending_numbers(world: World) -> None:
    world.profile["twilio"]["from_numbers"] = []


def _twilio_list_fails(world: World) -> None:
    """The account fetch works; listing the incoming numbers answers 500."""
    sid = world.box.secrets["twilio_account_sid"]
    _twilio_routes(world, {f"/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers": (
        500, srv.twilio_error(20500, 500, "Internal Server Error"), JSON)})


def _redis_stalls(after: Callable[[bytes], bool]) -> Callable[[World], None]:
    """A proxy to the sandbox's Redis that stops forwarding (every connection) once Redis has sent `after`."""
    def breaks(world: World) -> None:
        proxy = world.serve(srv.Proxy("127.0.0.1", _redis_port(world), freeze_after=after, everywhere=True))
        _redis(world, f"redis://127.0.0.1:{proxy.port}/0")
    return breaks


JSON = "application/json"
FAULTS: list[Fault] = [
    # The Lineup API: every runbook reads the queue metrics from it.
    Fault("api_refused", "Lineup API", "connection refused", ALL,
          lambda w: _api(w, f"http://127.0.0.1:{srv.closed_port()}"), r"cannot connect"),
    Fault("api_silent", "Lineup API", "accepts, never answers", ALL,
          lambda w: _api(w, w.serve(srv.Silent()).url), r"no complete answer within|timed out"),
    Fault("api_401", "Lineup API", "HTTP 401", ALL,
          lambda w: _api(w, w.serve(srv.FixedHTTP(401, '{"error": "unauthorized"}')).url), r"HTTP 401"),
    Fault("api_500", "Lineup API", "HTTP 500", ALL,
          lambda w: _api(w, w.serve(srv.FixedHTTP(500, "upstream connect error", content_type="text/plain")).url),
          r"HTTP 500"),
    Fault("api_not_json", "Lineup API", "HTTP 200, not JSON", ALL,
          lambda w: _api(w, w.serve(srv.FixedHTTP(200, "<html>maintenance</html>", content_type="text/html")).url),
          r"not JSON"),
    Fault("api_trickle", "Lineup API", "a byte every 0.5 s", ALL,
          lambda w: _api(w, w.serve(srv.Trickle(srv.HTTP_TRICKLE, every=TRICKLE_EVERY)).url), r"no complete answer within"),
    Fault("api_token_unset", "Lineup API", "token variable not set", ALL,
          _unset(SECRET_ENV["api_token"]), r"\$RUNBOOK_DEMO_API_TOKEN, which is not set"),
    Fault("api_wrong_shape", "Lineup API", "HTTP 200, JSON without counts", ALL,
          lambda w: _api(w, w.serve(srv.FixedHTTP(200, json.dumps([{"queue": q} for q in (
              "email", "sms", "whatsapp", "communication-dlq")]))).url), r"has no usable counts"),
    # message_logs on PostgreSQL.
    Fault("db_refused", "PostgreSQL", "connection refused", ALL,
          lambda w: _database(w, f"postgresql://postgres@127.0.0.1:{srv.closed_port()}/postgres"),
          r"cannot reach the database"),
    Fault("db_silent", "PostgreSQL", "accepts, never answers", ALL,
          lambda w: _database(w, f"postgresql://postgres@127.0.0.1:{w.serve(srv.Silent()).port}/postgres"),
          r"cannot connect to the database: no answer within|did not accept a connection"),
    Fault("db_statement_timeout", "PostgreSQL", "every query past the statement timeout", ALL, _pg_slow,
          r"time limit", postgres=True),
    Fault("db_strange_statuses", "PostgreSQL", "statuses in lower case", ALL, _pg_strange_statuses,
          r"statuses this runbook does not know", postgres=True),
    Fault("db_locked", "PostgreSQL", "message_logs locked by another session", ALL, _pg_locked,
          r"locked by another session", postgres=True),
    Fault("db_frozen", "PostgreSQL", "session goes silent after connecting", ALL, _pg_frozen,
          r"stopped answering", postgres=True),
    # SMTP and SES (email).
    Fault("smtp_refused", "SMTP", "connection refused", (EMAIL,), lambda w: _smtp(w, srv.closed_port()),
          r"connection refused", {EMAIL: "smtp_unreachable"}),
    Fault("smtp_silent", "SMTP", "accepts, no greeting", (EMAIL,), lambda w: _smtp(w, w.serve(srv.Silent()).port),
          r"timed out|no complete answer", {EMAIL: "smtp_unreachable"}),
    Fault("smtp_trickle", "SMTP", "greeting, a byte every 0.5 s", (EMAIL,),
          lambda w: _smtp(w, w.serve(srv.Trickle(srv.SMTP_TRICKLE, every=TRICKLE_EVERY, read_first=False)).port),
          r"no complete answer within", {EMAIL: "smtp_unreachable"}),
    Fault("smtp_554", "SMTP", "554 greeting", (EMAIL,), lambda w: _smtp(w, w.serve(srv.SmtpFault("greeting_554")).port),
          r"554", {EMAIL: "smtp_server_error"}),
    Fault("smtp_bad_starttls", "SMTP", "STARTTLS agreed, then not TLS", (EMAIL,),
          lambda w: _smtp(w, w.serve(srv.SmtpFault("broken_starttls")).port), r"STARTTLS", {EMAIL: "smtp_tls_failure"}),
    Fault("smtp_username_unset", "SMTP", "username variable not set", (EMAIL,),
          _unset(SECRET_ENV["smtp_username"]), r"SMTP username .* which is not set"),
    Fault("smtp_password_unset", "SMTP", "password variable not set", (EMAIL,),
          _unset(SECRET_ENV["smtp_password"]), r"which is not set"),
    Fault("ses_throttled", "SES", "Throttling on every call", (EMAIL,),
          lambda w: _ses(w, w.serve(srv.FixedHTTP(400, srv.SES_THROTTLED, content_type="text/xml")).url),
          r"Throttling|could not be parsed|cannot parse"),
    Fault("ses_empty", "SES", "HTTP 200, empty result", (EMAIL,),
          lambda w: _ses(w, w.serve(srv.FixedHTTP(200, srv.SES_EMPTY, content_type="text/xml")).url),
          r"could not read what it got|cannot parse|could not be parsed"),
    Fault("ses_silent", "SES", "accepts, never answers", (EMAIL,), lambda w: _ses(w, w.serve(srv.Silent()).url),
          r"no complete answer within|Timeout"),
    Fault("ses_500", "SES", "HTTP 500", (EMAIL,),
          lambda w: _ses(w, w.serve(srv.FixedHTTP(500, "<html>error</html>", content_type="text/html")).url),
          r"500|cannot parse"),
    # Twilio (SMS).
    Fault("twilio_401", "Twilio", "HTTP 401 (20003)", (SMS,),
          lambda w: _twilio(w, w.serve(srv.FixedHTTP(401, srv.twilio_error(20003, 401, "Authenticate"))).url),
          r"credentials rejected", {SMS: "twilio_auth_failure"}),
    Fault("twilio_429", "Twilio", "HTTP 429 (20429)", (SMS,),
          lambda w: _twilio(w, w.serve(srv.FixedHTTP(429, srv.twilio_error(20429, 429, "Too Many Requests"))).url),
          r"20429|429"),
    Fault("twilio_list_fails", "Twilio", "the numbers list answers 500", (SMS,),
          lambda w: _twilio_list_fails(w), r"list call failed"),
    Fault("twilio_empty", "Twilio", "HTTP 200, {}", (SMS,), lambda w: _twilio(w, w.serve(srv.FixedHTTP(200, "{}")).url),
          r"without a known account status"),
    Fault("twilio_no_numbers", "Twilio", "no sending numbers configured", (SMS,), _no_sending_numbers,
          r"no sending numbers are configured"),
    Fault("twilio_silent", "Twilio", "accepts, never answers", (SMS,), lambda w: _twilio(w, w.serve(srv.Silent()).url),
          r"did not answer in time|no complete answer"),
    Fault("twilio_trickle", "Twilio", "a byte every 0.5 s", (SMS,),
          lambda w: _twilio(w, w.serve(srv.Trickle(srv.HTTP_TRICKLE, every=TRICKLE_EVERY)).url),
          r"no complete answer within|did not answer"),
    Fault("twilio_token_unset", "Twilio", "auth token variable not set", (SMS,),
          _unset(SECRET_ENV["twilio_auth_token"]), r"which is not set"),
    # The Graph API (WhatsApp).
    Fault("graph_190", "Graph API", "error 190 (token expired)", (WHATSAPP,),
          lambda w: _graph(w, w.serve(srv.FixedHTTP(401, srv.graph_error(190, "Session has expired"))).url),
          r"Graph 190", {WHATSAPP: "token_expired"}),
    Fault("graph_500", "Graph API", "HTTP 500 (code 2)", (WHATSAPP,),
          lambda w: _graph(w, w.serve(srv.FixedHTTP(500, srv.graph_error(2, "Service temporarily unavailable"))).url),
          r"Graph 2 "),
    Fault("graph_empty", "Graph API", "HTTP 200, {}", (WHATSAPP,), lambda w: _graph(w, w.serve(srv.FixedHTTP(200, "{}")).url),
          r"answer has no|has neither"),
    Fault("graph_silent", "Graph API", "accepts, never answers", (WHATSAPP,),
          lambda w: _graph(w, w.serve(srv.Silent()).url), r"no complete answer within|timed out"),
    Fault("graph_token_unset", "Graph API", "access token variable not set", (WHATSAPP,),
          _unset(SECRET_ENV["whatsapp_access_token"]), r"which is not set"),
    # Redis (BullMQ).
    Fault("redis_refused", "Redis", "connection refused", (RETRIES,),
          lambda w: _redis(w, f"redis://127.0.0.1:{srv.closed_port()}/0"), r"Redis does not answer|could not be reached"),
    Fault("redis_silent", "Redis", "accepts, never answers", (RETRIES,),
          lambda w: _redis(w, f"redis://127.0.0.1:{w.serve(srv.Silent()).port}/0"), r"Redis does not answer PING"),
    Fault("redis_stalls", "Redis", "answers PING, then stalls", (RETRIES,), _redis_stalls(srv.after_redis_pong),
          r"Redis does not answer INFO \(after PING answered\)"),
    Fault("redis_stalls_later", "Redis", "passes the health check, then stalls", (RETRIES,),
          _redis_stalls(srv.after_redis_health_check), r"no answer from Redis within|Timeout reading from"),
]


def cases() -> list[tuple[Fault, str]]:
    """(fault, runbook) for every runbook each fault applies to."""
    return [(f, slug) for f in FAULTS for slug in f.runbooks]


def apply_env(world: World) -> dict[str, str | None]:
    """Set the sandbox's secrets in the environment (with the fault's changes); returns what to restore."""
    before = {name: os.environ.get(name) for name in SECRET_ENV.values()}
    for key, name in SECRET_ENV.items():
        os.environ[name] = world.box.secrets[key]
    for name, value in world.env.items():
        before.setdefault(name, os.environ.get(name))
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return before


def restore_env(before: dict[str, str | None]) -> None:
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def names_fault(outcome_findings: dict[str, Any], pattern: str) -> list[str]:
    """The findings (status error or fail) whose summary matches `pattern`."""
    rx = re.compile(pattern, re.IGNORECASE)
    return [name for name, f in outcome_findings.items() if f.status in ("error", "fail") and rx.search(f.summary)]

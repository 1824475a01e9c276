"""Shared fixtures: real services (PostgreSQL, Redis) started once per session, a clean environment
for every test, and sandboxes built from scenario files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.redact import REDACTOR
from runbooklib.sandbox import Sandbox
from tests.services import PostgresServer, RedisServer

SECRET_PREFIXES = ("LINEUP_", "RUNBOOK_", "AWS_", "SMTP_", "TWILIO_", "WHATSAPP_")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    return postgres.url


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No real credentials leak into tests; run records go to the test's own folder; secrets a test
    registers with the process-wide redactor are forgotten after it."""
    for name in list(os.environ):
        if name.startswith(SECRET_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RUNBOOK_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RUNBOOK_PII_KEY", "test-only-pii-key-7f3c")  # keyed references, without a key file in $HOME
    registered = REDACTOR.snapshot()
    yield
    REDACTOR.restore(registered)


SandboxFactory = Callable[..., Sandbox]


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[SandboxFactory]:
    """Start a sandbox for a scenario of a runbook (`database_url` to seed another database)."""
    started: list[Sandbox] = []

    def factory(scenario: str, *, slug: str = "email_provider_failure", database_url: str | None = None,
                secret_values: dict[str, str] | None = None, redis_url: str | None = None) -> Sandbox:
        spec = catalog.get(slug)
        box = Sandbox(spec.load_scenario(scenario), workdir=tmp_path / f"sandbox-{len(started)}",
                      database_url=database_url, secret_values=secret_values, redis_url=redis_url)
        started.append(box.start())
        return box

    yield factory
    for box in reversed(started):
        box.stop()

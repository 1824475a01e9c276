from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.errors import ConfigError
from runbooklib.sandbox import SECRET_ENV, Sandbox
from runbooklib.sandbox.scenario import Scenario
from runbooklib.sandbox.seed import generate_rows

SPEC = catalog.get("email_provider_failure")


@pytest.mark.parametrize("name", SPEC.scenarios())
def test_built_in_scenarios_load_and_expect_a_documented_cause(name: str) -> None:
    scenario = SPEC.load_scenario(name)
    assert scenario.expect == name
    assert scenario.expect in SPEC.causes
    assert scenario.description


@pytest.mark.parametrize(("body", "words"), [
    ("smtp: {primary: broken}\n", "allowed: ok, down, bad_tls, auth_reject"),
    ("message_logs: {windw: {minutes: 5}}\n", "unknown key 'windw'"),
    ("ses: {quota: 5}\n", "unknown key 'quota'"),
    ("message_logs: {incident: {failure_rate: 0.5}}\n", "needs errors"),
    ("message_logs: {incident: {failure_rate: 1.5, errors: [{error: x}]}}\n", "between 0 and 1"),
    ("- just a list\n", "must be a mapping"),
])
def test_bad_scenario_files_say_what_is_wrong(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "drill.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=words):
        Scenario.load(path)


def test_seeding_is_deterministic_and_follows_the_scenario() -> None:
    scenario = SPEC.load_scenario("tenant_specific")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = generate_rows(scenario, now)
    assert rows == generate_rows(scenario, now)
    failing = {r["tenant_id"] for r in rows if r["metadata"].get("error", "").startswith("MessageRejected")}
    assert failing == {"globex"}


def test_sandbox_puts_secrets_in_the_environment_only_while_running(tmp_path: Path) -> None:
    import os

    box = Sandbox(SPEC.load_scenario("healthy"), workdir=tmp_path / "box")
    with box:
        assert os.environ[SECRET_ENV["api_token"]] == box.secrets["api_token"]
        description = str(box.describe())
        assert box.secrets["api_token"] not in description and box.secrets["smtp_password"] not in description
    assert SECRET_ENV["api_token"] not in os.environ

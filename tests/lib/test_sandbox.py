from __future__ import annotations

import re
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
    assert scenario.expect in SPEC.causes
    assert set(scenario.data["expect_also"]) <= set(SPEC.causes)
    assert scenario.description
    if name in SPEC.causes:  # a scenario named after a cause expects that cause
        assert scenario.expect == name


@pytest.mark.parametrize(("body", "words"), [
    ("smtp: {primary: broken}\n", "allowed: ok, down, bad_tls, auth_reject"),
    ("message_logs: {windw: {minutes: 5}}\n", "unknown key 'windw'"),
    ("ses: {quota: 5}\n", "unknown key 'quota'"),
    ("message_logs: {incident: {failure_rate: 0.5}}\n", "needs errors"),
    ("message_logs: {incident: {failure_rate: 1.5, errors: [{error: x}]}}\n", "1.5; allowed: a number from 0 to 1"),
    ("message_logs: {incidents: [{started_minutes_ago: 10, ended_minutes_ago: 20, failure_rate: 0.5, errors: [{error: x}]}]}\n",
     "ended_minutes_ago: 20; allowed: less than started_minutes_ago"),
    ("message_logs: {incidents: [{failure_rate: 0.5, tenants: [nobody], errors: [{error: x}]}]}\n",
     "'nobody' is not a tenant; allowed: acme, globex, initech, umbrella"),
    ("message_logs: {incidents: [{failure_rate: 0.5, errors: [{error: x, status: LOST}]}]}\n",
     "'LOST'; allowed: FAILED, RETRYING, BOUNCED"),
    ("message_logs: {tenants: {acme: {weight: 2, colour: red}}}\n", "unknown key 'colour'; allowed: weight, provider"),
    ("message_logs: {tenants: {acme: -1}}\n", "tenants.acme: -1; allowed: a number above 0"),
    ("message_logs: {volume: {bursts: [{from_minutes_ago: 5, to_minutes_ago: 10, factor: 2}]}}\n",
     "to_minutes_ago: 10; allowed: less than from_minutes_ago"),
    ("message_logs: {channels: {FAX: 1}}\n", "'FAX'; allowed: EMAIL, SMS, WHATSAPP"),
    ("message_logs: {receipts_delay_minutes: yes}\n", "receipts_delay_minutes: True; allowed: a number from 0"),
    ("bullmq: {paused: [fax]}\n", "allowed: a list of email, sms, whatsapp"),
    ("bullmq: {jobs: [{queue: sms, count: 5, fail_times: 0}]}\n", "fail_times: 0; allowed: a number from 1 to 50"),
    ("bullmq: {hung_queue: dlq}\n", "hung_queue: 'dlq'; allowed: email, sms, whatsapp (or null)"),
    ("smtp: {throttle: {code: 500}}\n", "smtp.throttle.code: 500; allowed: 421, 450, 451, 452, 454"),
    ("expect_also: rate_limited\n", "expect_also: expected a list of names"),
    ("- just a list\n", "must be a mapping"),
])
def test_bad_scenario_files_say_what_is_wrong(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "drill.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=re.escape(words)):
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

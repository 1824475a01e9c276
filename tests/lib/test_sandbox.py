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


NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _rows(data: dict[str, object]) -> list[dict[str, object]]:
    return generate_rows(Scenario.from_mapping(data, name="drill"), NOW)


def _minutes_ago(row: dict[str, object]) -> float:
    return (NOW - row["created_at"]).total_seconds() / 60  # type: ignore[operator]


def test_overlapping_incidents_have_a_start_an_end_and_cover_only_what_they_name() -> None:
    rows = _rows({"message_logs": {
        "tenants": {"acme": 3, "globex": {"weight": 2, "provider": "smtp"}, "initech": 1},
        "incidents": [
            {"started_minutes_ago": 50, "ended_minutes_ago": 20, "failure_rate": 1.0, "tenants": ["acme"],
             "errors": [{"error": "first"}]},
            {"started_minutes_ago": 30, "failure_rate": 1.0, "providers": ["smtp"],
             "errors": [{"error": "second", "status": "BOUNCED"}]}]}})
    first = [r for r in rows if r["metadata"].get("error") == "first"]  # type: ignore[union-attr]
    second = [r for r in rows if r["metadata"].get("error") == "second"]  # type: ignore[union-attr]
    assert first and all(r["tenant_id"] == "acme" and 20 < _minutes_ago(r) <= 50 for r in first)
    assert second and all(r["tenant_id"] == "globex" and r["provider"] == "smtp" and r["status"] == "BOUNCED"
                          and _minutes_ago(r) <= 30 for r in second)
    assert not [r for r in rows if r["tenant_id"] == "acme" and 20 < _minutes_ago(r) <= 50
                and not r["metadata"].get("error")]  # type: ignore[union-attr]


def test_a_tenant_keeps_its_own_background_failure_rate() -> None:
    rows = _rows({"message_logs": {"tenants": {"acme": 1, "wonka": {"weight": 1, "failure_rate": 0.3}},
                                   "baseline": {"failure_rate": 0.0, "bounce_rate": 0.0}}})
    rate = {t: sum(r["status"] == "FAILED" for r in rows if r["tenant_id"] == t) / sum(r["tenant_id"] == t for r in rows)
            for t in ("acme", "wonka")}
    assert rate["acme"] == 0 and 0.25 < rate["wonka"] < 0.35


def test_bursts_and_a_daily_cycle_shape_the_volume() -> None:
    flat = _rows({})
    burst = _rows({"message_logs": {"volume": {"bursts": [{"from_minutes_ago": 30, "to_minutes_ago": 10, "factor": 3}]}}})
    inside = [r for r in burst if 10 <= _minutes_ago(r) < 30]
    before = [r for r in flat if 10 <= _minutes_ago(r) < 30]
    assert 2.5 < len(inside) / len(before) < 3.5
    cycle = _rows({"message_logs": {"volume": {"diurnal": 0.8}}})
    by_hour = {h: sum(1 for r in cycle if r["created_at"].hour == h) for h in (2, 14)}  # type: ignore[union-attr]
    assert by_hour[14] > 3 * by_hour[2]  # the afternoon peak against the night


def test_late_receipts_leave_recent_messages_sent_and_templateless_messages_have_no_template() -> None:
    rows = _rows({"message_logs": {"receipts_delay_minutes": 20, "without_template": 0.5,
                                   "baseline": {"failure_rate": 0.0, "bounce_rate": 0.0}}})
    recent = [r for r in rows if 1 < _minutes_ago(r) < 20]
    assert recent and {r["status"] for r in recent} == {"SENT"}
    assert 0.4 < sum(r["template"] is None for r in rows) / len(rows) < 0.6


def test_a_channel_mix_seeds_each_channel() -> None:
    rows = _rows({"message_logs": {"channels": {"SMS": 2, "EMAIL": 1}}})
    share = sum(r["channel"] == "SMS" for r in rows) / len(rows)
    assert 0.6 < share < 0.72 and {r["channel"] for r in rows} == {"SMS", "EMAIL"}


def test_bullmq_drills_fail_then_succeed_pause_and_hang(redis_server: object, tmp_path: Path) -> None:
    from runbooklib.queues import QueueAdmin

    spec = catalog.get("high_retry_volume")
    scenario = Scenario.from_mapping({"bullmq": {
        "jobs": [{"queue": "sms", "count": 10, "fail": "Twilio 30003: Unreachable", "fail_times": 2},
                 {"queue": "email", "count": 5, "work": False}],
        "paused": ["email"], "hung_queue": "whatsapp"}}, name="drill", defaults=dict(spec.scenario_defaults))
    with Sandbox(scenario, workdir=tmp_path / "box", redis_url=redis_server.url,  # type: ignore[attr-defined]
                 dependencies=spec.dependencies) as box:
        admin = QueueAdmin(box.redis_url)
        sms = admin.counts("sms")
        assert (sms["completed"], sms["failed"]) == (10, 0)  # each failed twice, then went through
        assert all(j["attemptsMade"] == 3 for j in admin.jobs("sms", ["completed"], limit=100))  # 2 failed, 1 went
        assert admin.is_paused("email") and admin.counts("email")["waiting"] == 5
        hung = admin.counts("whatsapp")
        assert hung["active"] >= 20 and hung["completed"] == 0 and hung["waiting"] > 0
        admin.close()

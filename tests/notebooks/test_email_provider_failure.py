"""The Email Provider Failure notebook, executed through papermill against the sandbox, per scenario,
on SQLite and on PostgreSQL: the cause it names, what its gate did, and what reached the stand-ins."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from runbooklib import catalog
from runbooklib.audit import read_audit
from runbooklib.runbooks.email_provider_failure import SWITCHABLE
from runbooklib.runs import EXIT_DIAGNOSED, EXIT_FAILED, EXIT_HEALTHY, RunResult
from runbooklib.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.notebooks import helpers
from tests.notebooks.helpers import database_url, decisions

SLUG = "email_provider_failure"
SCENARIOS = catalog.get(SLUG).scenarios()
WHOLE_RUNS = ['healthy_noisy', 'ses_daily_quota_exceeded', 'smtp_tenants_only', 'small_tenant_down']
"""A representative slice run as whole notebooks (papermill, a kernel); every scenario is triaged in-process by
tests/test_triage.py."""
pytestmark = pytest.mark.notebook


def run(box: Sandbox, tmp_path: Path, **parameters: Any) -> RunResult:
    return helpers.run(SLUG, box, tmp_path, **parameters)


def test_every_cause_code_has_a_scenario() -> None:
    spec = catalog.get(SLUG)
    assert set(spec.causes) - {"unknown"} <= set(SCENARIOS), "every cause has a scenario named after it"
    assert {spec.load_scenario(s).expect for s in SCENARIOS} <= set(spec.causes)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
@pytest.mark.parametrize("scenario", WHOLE_RUNS)
def test_dry_run_names_the_cause_and_changes_nothing(scenario: str, database: str, make_sandbox: SandboxFactory,
                                                     tmp_path: Path, request: pytest.FixtureRequest) -> None:
    box = make_sandbox(scenario, database_url=database_url(request, database))
    result = run(box, tmp_path)

    assert result.status == "completed", result.failed_cell
    assert result.cause == box.scenario.expect, result.summary["diagnosis"]
    assert result.exit_code == (EXIT_HEALTHY if result.cause == "healthy" else EXIT_DIAGNOSED)
    assert box.platform is not None and box.ses is not None
    assert box.platform.mutations() == []
    assert box.platform.channels == box.platform.initial
    assert box.smtp_primary is not None and box.smtp_backup is not None
    assert box.smtp_primary.messages == [] and box.smtp_backup.messages == []
    assert box.ses.sent == []
    expected = "dry_run" if result.cause in SWITCHABLE else "not_needed"
    assert decisions(result)["switch_email_provider"] == expected
    assert decisions(result)["send_test_email"] == "not_needed"
    assert sorted(p.name for p in result.bundle.iterdir()) == ["audit.jsonl", "evidence", "notebook.html",
                                                               "notebook.ipynb", "summary.json"]
    index = [json.loads(line) for line in (result.bundle / "evidence" / "index.jsonl").read_text().splitlines()]
    assert len(index) == result.summary["evidence"]["queries"] >= 6
    for entry in index:
        text = (result.bundle / "evidence" / entry["file"]).read_text()
        assert hashlib.sha256(text.encode()).hexdigest() == entry["sha256"]
        assert "FROM message_logs" in entry["sql"] and "since" in entry["params"]
    assert result.summary["status"] == "completed"
    assert result.summary["diagnosis"]["evidence"], "a diagnosis comes with its evidence"


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_approved_switch_is_applied_verified_audited_and_undone(database: str, make_sandbox: SandboxFactory,
                                                                tmp_path: Path, request: pytest.FixtureRequest) -> None:
    box = make_sandbox("smtp_auth_failure", database_url=database_url(request, database))
    assert box.platform is not None
    result = run(box, tmp_path, dry_run=False, operator="alice",
                 approve=["switch_email_provider", "undo_switch_email_provider"])

    assert result.status == "completed", result.failed_cell
    patches = [json.loads(m["body"])["provider"] for m in box.platform.mutations() if m["method"] == "PATCH"]
    tenants = len(box.platform.channels)
    assert patches == ["smtp_backup"] * tenants + ["smtp"] * tenants
    assert box.platform.channels == box.platform.initial
    audit = {e["action"]: e for e in read_audit(result.bundle / "audit.jsonl")}
    switch = audit["switch_email_provider"]
    assert switch["decision"] == "applied"
    assert switch["approval"]["by"] == "alice" and switch["approval"]["plan_digest"] == switch["plan_digest"]
    assert switch["result"]["verified"] is True
    assert {s["to"] for s in switch["plan"]["steps"]} == {"smtp_backup"}
    assert audit["undo_switch_email_provider"]["decision"] == "undone"
    assert result.exit_code == EXIT_DIAGNOSED


def test_applied_switch_recovers_and_test_email_goes_through_the_backup(make_sandbox: SandboxFactory,
                                                                        tmp_path: Path) -> None:
    box = make_sandbox("ses_daily_quota_exceeded")
    assert box.platform is not None and box.smtp_backup is not None and box.ses is not None
    result = run(box, tmp_path, dry_run=False, operator="bob", test_recipient="oncall@lineup.app",
                 approve=["switch_email_provider", "send_test_email"])

    assert result.status == "completed", result.failed_cell
    assert {c["email"]["provider"] for c in box.platform.channels.values()} == {"smtp_backup"}
    assert decisions(result) == {"switch_email_provider": "applied", "undo_switch_email_provider": "not_needed",
                                 "send_test_email": "applied"}
    assert [m["to"] for m in box.smtp_backup.messages] == [["oncall@lineup.app"]]
    assert box.ses.sent == []
    findings = result.summary["findings"]
    assert findings["queue_trend"]["status"] == "ok", findings["queue_trend"]
    assert findings["recovery_failure_rate"]["status"] == "ok", findings["recovery_failure_rate"]


def test_approval_is_bound_to_the_plan_it_approved(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make_sandbox("smtp_unreachable")
    assert box.platform is not None
    dry = run(box, tmp_path)
    digest = next(a for a in dry.summary["actions"] if a["action"] == "switch_email_provider")["plan"]["digest"]

    stale = run(box, tmp_path, dry_run=False, operator="carol", approve=["switch_email_provider@0123456789abcdef"])
    assert decisions(stale)["switch_email_provider"] == "refused"
    assert box.platform.mutations() == []
    for given, why in ((f"switch_email_provider@{digest[:12]}", "shorter prefixes are not accepted"),
                       ("switch_email_provider@", "empty")):
        refused = run(box, tmp_path, dry_run=False, operator="carol", approve=[given])
        assert refused.status == "failed" and why in str(refused.failed_cell), refused.failed_cell
        assert box.platform.mutations() == []

    exact = run(box, tmp_path, dry_run=False, operator="carol", approve=[f"switch_email_provider@{digest}"])
    assert decisions(exact)["switch_email_provider"] == "applied"
    assert len(box.platform.mutations()) == len(box.platform.channels)


def test_approval_without_dry_run_false_still_changes_nothing(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make_sandbox("smtp_unreachable")
    assert box.platform is not None
    result = run(box, tmp_path, operator="dave", approve=["switch_email_provider"])
    assert decisions(result)["switch_email_provider"] == "dry_run"
    assert box.platform.mutations() == []


def test_planted_secrets_and_personal_data_never_reach_the_bundle(make_sandbox: SandboxFactory,
                                                                  tmp_path: Path) -> None:
    planted = {"api_token": "PLANTED-api-token-7f3a9c51", "smtp_username": "PLANTED-smtp-user-44d1",
               "smtp_password": "PLANTED-smtp-pass-2b8e0d", "smtp_backup_username": "PLANTED-backup-user-9a0c",
               "smtp_backup_password": "PLANTED-backup-pass-c3d4e5", "aws_access_key_id": "AKIAPLANTED0000KEY1",
               "aws_secret_access_key": "PLANTED/aws+secret=key/0f9e8d7c"}
    box = make_sandbox("ses_daily_quota_exceeded", secret_values=planted)
    result = run(box, tmp_path, dry_run=False, operator="erin", test_recipient="oncall@lineup.app",
                 approve=["switch_email_provider", "send_test_email"])
    assert result.status == "completed", result.failed_cell
    assert decisions(result)["send_test_email"] == "applied"  # the secrets were really used
    helpers.assert_nothing_sensitive(result.bundle, list(planted.values()),
                                     [r"user\d+@example\.com", r"oncall@lineup\.app"])


def test_misspelled_parameter_stops_the_run_before_any_check(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make_sandbox("healthy")
    assert box.platform is not None
    result = run(box, tmp_path, windw="2h")
    assert result.status == "failed" and result.exit_code == EXIT_FAILED
    assert result.failed_cell is not None
    assert "windw" in result.failed_cell["error"] and "did you mean 'window'" in result.failed_cell["error"]
    assert box.platform.requests == []
    assert (result.bundle / "notebook.html").exists()

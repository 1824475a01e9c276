"""The WhatsApp Delivery Failure notebook, executed through papermill against the sandbox (Graph API
stand-in), per scenario, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from runbooklib import catalog
from runbooklib.runs import EXIT_DIAGNOSED, EXIT_HEALTHY, RunResult
from runbooklib.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.notebooks import helpers
from tests.notebooks.helpers import audit, database_url, decisions

SLUG = "whatsapp_delivery_failure"
SCENARIOS = catalog.get(SLUG).scenarios()
WHOLE_RUNS = ['healthy_noisy', 'template_rejected', 'rate_limit_and_window', 'token_expiring']
"""A representative slice run as whole notebooks (papermill, a kernel); every scenario is triaged in-process by
tests/test_triage.py."""
PHONE = r"\+1555\d{7}"
pytestmark = pytest.mark.notebook


def run(box: Sandbox, tmp_path: Path, **parameters: Any) -> RunResult:
    return helpers.run(SLUG, box, tmp_path, **{"fallback_template": "event_reminder_plain", **parameters})


def make(make_sandbox: SandboxFactory, scenario: str, **kwargs: Any) -> Sandbox:
    return make_sandbox(scenario, slug=SLUG, **kwargs)


def test_every_cause_code_has_a_scenario() -> None:
    spec = catalog.get(SLUG)
    named = {s for s in SCENARIOS}
    assert set(spec.causes) - {"unknown"} <= named, "every cause has a scenario named after it"
    assert {spec.load_scenario(s).expect for s in SCENARIOS} <= set(spec.causes)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
@pytest.mark.parametrize("scenario", WHOLE_RUNS)
def test_dry_run_names_the_cause_and_changes_nothing(scenario: str, database: str, make_sandbox: SandboxFactory,
                                                     tmp_path: Path, request: pytest.FixtureRequest) -> None:
    box = make(make_sandbox, scenario, database_url=database_url(request, database))
    result = run(box, tmp_path)

    assert result.status == "completed", result.failed_cell
    assert result.cause == box.scenario.expect, result.summary["diagnosis"]
    assert result.exit_code == (EXIT_HEALTHY if result.cause == "healthy" else EXIT_DIAGNOSED)
    assert box.platform is not None and box.graph is not None
    assert box.platform.mutations() == [] and box.platform.channels == box.platform.initial
    assert box.graph.sent == [] and box.graph.submitted == [] and box.graph.issued == []
    assert set(decisions(result).values()) <= {"not_needed", "dry_run", "blocked"}
    helpers.assert_nothing_sensitive(result.bundle, [box.secrets["whatsapp_access_token"]], [PHONE])


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_fallback_template_is_applied_verified_audited_and_undone(
        database: str, make_sandbox: SandboxFactory, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    box = make(make_sandbox, "template_rejected", database_url=database_url(request, database))
    assert box.platform is not None
    result = run(box, tmp_path, dry_run=False, operator="alice",
                 approve=["use_fallback_template", "undo_use_fallback_template"])

    assert result.status == "completed", result.failed_cell
    entries = audit(result)
    applied = entries["use_fallback_template"]
    assert applied["decision"] == "applied" and applied["result"]["verified"] is True
    assert {json.dumps(s["to"], sort_keys=True) for s in applied["plan"]["steps"]} == {
        json.dumps({"event_reminder": "event_reminder_plain"})}
    assert entries["undo_use_fallback_template"]["decision"] == "undone"
    assert box.platform.channels == box.platform.initial


def test_corrected_template_is_submitted_with_the_exact_planned_payload(make_sandbox: SandboxFactory,
                                                                        tmp_path: Path) -> None:
    payload = {"name": "event_reminder_v2", "language": "en_US", "category": "UTILITY",
               "components": [{"type": "BODY", "text": "Reminder: {{1}} starts at {{2}}."}]}
    path = tmp_path / "corrected.json"
    path.write_text(json.dumps(payload))
    box = make(make_sandbox, "template_rejected")
    assert box.graph is not None
    dry = run(box, tmp_path, template_payload_file=str(path))
    planned = next(a for a in dry.summary["actions"] if a["action"] == "submit_corrected_template")["plan"]
    assert planned["steps"][0]["payload"] == payload and box.graph.submitted == []

    live = run(box, tmp_path, template_payload_file=str(path), dry_run=False, operator="bob",
               approve=[f"submit_corrected_template@{planned['digest']}"])
    assert decisions(live)["submit_corrected_template"] == "applied"
    assert box.graph.submitted == [payload]

    # The probe: the same approval run again (as after a run killed right after the submission) submits nothing.
    again = run(box, tmp_path, template_payload_file=str(path), dry_run=False, operator="bob",
                approve=[f"submit_corrected_template@{planned['digest']}"])
    entry = audit(again)["submit_corrected_template"]
    assert entry["decision"] in ("already_applied", "blocked"), entry
    assert box.graph.submitted == [payload], "the template was submitted twice"
    (live.bundle / "audit.jsonl").unlink()  # even with the first run's record gone, the world shows it is there
    lost = run(box, tmp_path, template_payload_file=str(path), dry_run=False, operator="bob",
               approve=[f"submit_corrected_template@{planned['digest']}"])
    assert audit(lost)["submit_corrected_template"]["decision"] == "blocked"
    assert box.graph.submitted == [payload]


def test_without_a_payload_file_the_submission_is_blocked_with_a_draft(make_sandbox: SandboxFactory,
                                                                       tmp_path: Path) -> None:
    box = make(make_sandbox, "template_rejected")
    result = run(box, tmp_path, dry_run=False, operator="bob", approve=["submit_corrected_template"])
    entry = audit(result)["submit_corrected_template"]
    assert entry["decision"] == "blocked" and "template_payload_file" in entry["message"]
    assert entry["plan"]["details"]["draft_from_rejected_template"]["name"] == "event_reminder_v2"


def test_window_expired_lists_conversations_and_switches_to_template_sends(make_sandbox: SandboxFactory,
                                                                          tmp_path: Path) -> None:
    box = make(make_sandbox, "window_expired")
    assert box.platform is not None and box.graph is not None
    result = run(box, tmp_path, dry_run=False, operator="carol", approve=["use_template_outside_window"])

    assert result.status == "completed", result.failed_cell
    with (result.bundle / "window_expired_conversations.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["error_code"] for r in rows} == {"131047"}
    assert decisions(result)["use_template_outside_window"] == "applied"
    assert {c["whatsapp"]["outside_window_template"] for c in box.platform.channels.values()} == {"event_reminder_plain"}
    assert box.graph.sent == []  # nothing free-form (or anything else) was re-sent
    helpers.assert_nothing_sensitive(result.bundle, [], [PHONE])


def test_token_refresh_never_shows_a_token(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    planted = {"whatsapp_access_token": "EAAGPLANTEDtoken0000aaaa1111bbbb", "whatsapp_app_secret": "PLANTED-app-secret-77"}
    box = make(make_sandbox, "token_expiring", secret_values=planted)  # still valid: Meta exchanges it
    assert box.platform is not None and box.graph is not None
    result = run(box, tmp_path, dry_run=False, operator="dana", approve=["refresh_access_token"])

    assert result.status == "completed", result.failed_cell
    entry = audit(result)["refresh_access_token"]
    assert entry["decision"] == "applied" and entry["result"]["verified"] is True, entry
    assert len(box.graph.issued) == 1 and set(box.platform.access_tokens.values()) == {box.graph.issued[0]}
    helpers.assert_nothing_sensitive(result.bundle, [*planted.values(), box.graph.issued[0]], [PHONE])


def test_test_message_is_an_approved_template_and_only_when_approved(make_sandbox: SandboxFactory,
                                                                     tmp_path: Path) -> None:
    box = make(make_sandbox, "healthy")
    assert box.graph is not None
    result = run(box, tmp_path, test_whatsapp="+15557654321", dry_run=False, operator="eve",
                 approve=["send_test_whatsapp"])
    assert decisions(result)["send_test_whatsapp"] == "applied"
    assert box.graph.sent == [{"to": "15557654321", "type": "template", "id": box.graph.sent[0]["id"],
                               "template": "event_reminder_plain"}]

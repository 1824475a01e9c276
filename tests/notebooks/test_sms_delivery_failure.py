"""The SMS Delivery Failure notebook, executed through papermill against the sandbox (Twilio and
status page stand-ins), per scenario, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from runbooklib import catalog
from runbooklib.runs import EXIT_DIAGNOSED, EXIT_HEALTHY, RunResult
from runbooklib.sandbox import Sandbox
from runbooklib.schema import message_logs
from tests.conftest import SandboxFactory
from tests.notebooks import helpers
from tests.notebooks.helpers import audit, database_url, decisions

SLUG = "sms_delivery_failure"
SCENARIOS = catalog.get(SLUG).scenarios()
WHOLE_RUNS = ['healthy_noisy', 'rate_limited', 'outage_with_optouts', 'small_tenant_bad_list']
"""A representative slice run as whole notebooks (papermill, a kernel); every scenario is triaged in-process by
tests/test_triage.py."""
PHONE = r"\+1555\d{7}"
pytestmark = pytest.mark.notebook


def run(box: Sandbox, tmp_path: Path, **parameters: Any) -> RunResult:
    return helpers.run(SLUG, box, tmp_path, **parameters)


def make(make_sandbox: SandboxFactory, scenario: str, **kwargs: Any) -> Sandbox:
    return make_sandbox(scenario, slug=SLUG, **kwargs)


def test_every_cause_code_has_a_scenario() -> None:
    spec = catalog.get(SLUG)
    named = {s for s in SCENARIOS}
    assert set(spec.causes) - {"unknown"} <= named, "every cause has a scenario named after it"
    assert {spec.load_scenario(s).expect for s in SCENARIOS} <= set(spec.causes)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
@pytest.mark.parametrize("scenario", WHOLE_RUNS)
def test_dry_run_names_the_cause_sends_nothing_and_changes_nothing(
        scenario: str, database: str, make_sandbox: SandboxFactory, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    box = make(make_sandbox, scenario, database_url=database_url(request, database))
    result = run(box, tmp_path)

    assert result.status == "completed", result.failed_cell
    assert result.cause == box.scenario.expect, result.summary["diagnosis"]
    assert result.exit_code == (EXIT_HEALTHY if result.cause == "healthy" else EXIT_DIAGNOSED)
    assert box.platform is not None and box.twilio is not None
    assert box.platform.mutations() == [] and box.platform.channels == box.platform.initial
    assert box.twilio.sent == []
    assert set(decisions(result).values()) <= {"not_needed", "dry_run", "blocked"}
    helpers.assert_nothing_sensitive(result.bundle, [], [PHONE])


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_approved_do_not_contact_is_applied_verified_audited_and_undone(
        database: str, make_sandbox: SandboxFactory, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    box = make(make_sandbox, "recipients_unsubscribed", database_url=database_url(request, database))
    assert box.platform is not None
    result = run(box, tmp_path, dry_run=False, operator="alice",
                 approve=["mark_do_not_contact", "undo_mark_do_not_contact"])

    assert result.status == "completed", result.failed_cell
    entries = audit(result)
    marked = entries["mark_do_not_contact"]
    assert marked["decision"] == "applied" and marked["result"]["verified"] is True
    assert marked["result"]["marked"] > 0 and marked["approval"]["by"] == "alice"
    assert entries["undo_mark_do_not_contact"]["decision"] == "undone"
    methods = [m["method"] for m in box.platform.mutations()]
    assert methods.count("POST") == methods.count("DELETE") == len(marked["plan"]["steps"])
    assert all(not v for v in box.platform.do_not_contact.values())
    assert decisions(result)["retry_failed_sms"] == "not_needed"  # a retry cannot fix STOP replies: never proposed
    helpers.assert_nothing_sensitive(result.bundle, [], [PHONE])


def test_outage_routes_urgent_sms_to_whatsapp_and_undo_restores(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make(make_sandbox, "twilio_outage")
    assert box.platform is not None
    result = run(box, tmp_path, dry_run=False, operator="bob",
                 approve=["route_urgent_to_whatsapp", "undo_route_urgent_to_whatsapp", "retry_failed_sms"])

    assert result.status == "completed", result.failed_cell
    got = decisions(result)
    assert got["route_urgent_to_whatsapp"] == "applied" and got["undo_route_urgent_to_whatsapp"] == "undone"
    assert got["retry_failed_sms"] == "not_needed"  # retrying into an outage only fails again
    fallbacks = [m for m in box.platform.mutations() if m["method"] == "PATCH"]
    assert len(fallbacks) == 2 * len(box.platform.channels)
    assert box.platform.channels == box.platform.initial


def test_retry_requeues_only_transient_failures(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make(make_sandbox, "rate_limited")
    assert box.platform is not None
    result = run(box, tmp_path, dry_run=False, operator="carol", approve=["retry_failed_sms"])

    assert result.status == "completed", result.failed_cell
    retry = audit(result)["retry_failed_sms"]
    assert retry["decision"] == "applied", retry
    step = retry["plan"]["steps"][0]
    assert retry["result"]["retried"] == step["count"] == len(step["message_ids"]) > 0
    posted = [m for m in box.platform.mutations() if m["method"] == "POST"]
    assert len(posted) == 1 and "21610" in posted[0]["query"]["exclude_error_codes"]
    assert "30022" not in posted[0]["query"]["exclude_error_codes"].split(",")
    body = json.loads(posted[0]["body"])
    assert body["message_ids"] == step["message_ids"], "exactly the approved ids are sent"
    assert posted[0]["query"]["max"] == str(step["count"]) and posted[0]["query"]["created_before"]


def test_failures_that_arrive_after_the_dry_run_are_not_retried_under_its_approval(
        make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    """The probe: dry-run "re-queue N", then 3,000 more failures arrive; the old digest must not re-queue N + 3,000."""
    box = make(make_sandbox, "rate_limited")
    assert box.platform is not None
    dry = run(box, tmp_path)
    planned = next(a for a in dry.actions if a["action"] == "retry_failed_sms")
    assert planned["decision"] == "dry_run", planned
    engine = sa.create_engine(box.database_url)
    late = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)  # in the window: still a rate limit
    with engine.begin() as conn:
        conn.execute(message_logs.insert(), [{
            "id": f"late-{n:05d}", "tenant_id": "acme", "channel": "SMS", "status": "FAILED", "provider": "twilio",
            "recipient": "+15550001111", "template": "booking_confirmation", "created_at": late, "updated_at": late,
            "retry_count": 3, "metadata": {"error": "Queue overflow", "error_code": "30001"}} for n in range(3000)])
    engine.dispose()
    stale = run(box, tmp_path, dry_run=False, operator="carol",
                approve=[f"retry_failed_sms@{planned['plan']['digest']}"])
    decision = audit(stale)["retry_failed_sms"]
    assert decision["decision"] == "refused", decision
    assert "added 3,000" in decision["message"] and planned["plan"]["digest"] in decision["message"]
    assert [m for m in box.platform.mutations() if m["method"] == "POST"] == [], "nothing re-queued"


def test_invalid_numbers_review_list_is_written_masked(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make(make_sandbox, "invalid_numbers")
    result = run(box, tmp_path)
    assert result.status == "completed", result.failed_cell
    with (result.bundle / "invalid_numbers_review.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["error_code"] for r in rows} <= {"21211", "21614", "30005", "30006", "21217", "21612"}
    assert all("*" in r["recipient_masked"] for r in rows)
    assert result.summary["invalid_numbers_review"]["recipients"] == len(rows)
    helpers.assert_nothing_sensitive(result.bundle, [], [PHONE])


def test_test_sms_is_sent_only_when_approved(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    planted = {"twilio_auth_token": "PLANTED-twilio-token-93ab7e1f", "twilio_account_sid": "AC" + "5" * 32}
    box = make(make_sandbox, "healthy", secret_values=planted)
    assert box.twilio is not None
    dry = run(box, tmp_path, test_phone="+15557654321")
    assert decisions(dry)["send_test_sms"] == "dry_run" and box.twilio.sent == []
    live = run(box, tmp_path, test_phone="+15557654321", dry_run=False, operator="dan", approve=["send_test_sms"])
    assert decisions(live)["send_test_sms"] == "applied"
    assert [m["to"] for m in box.twilio.sent] == ["+15557654321"]
    helpers.assert_nothing_sensitive(live.bundle, list(planted.values()), [PHONE])

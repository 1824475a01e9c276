"""Every drill of every runbook, triaged in this process (`runbooklib.triage`): the runbook's own notebook cells run
as a dry run against the scenario's sandbox, with real sockets and the production clients.

Each must name the scenario's cause, list what it expects beside it, name the tenants it expects, propose no
mitigation that cannot fix the cause (nor one the scenario forbids), never give an all-clear where the scenario
has a cause, and change nothing. Whole notebook runs of a representative slice are in `tests/notebooks/`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.triage import every_scenario, triage

CASES = every_scenario()
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = sorted((p.parent.name, p) for p in (ROOT / "benchmarks" / "variants").glob("*/*.yaml"))
"""Drills written by a tester from the providers' documented behaviour, without reading the rules."""


def _artifacts() -> Path:
    folder = Path(os.environ.get("RUNBOOK_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "triage"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize(("slug", "scenario"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_every_drill_names_its_cause_with_no_forbidden_outcome(slug: str, scenario: str, tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    bull = catalog.get(slug).load_scenario(scenario).section("bullmq")["enabled"]
    redis = request.getfixturevalue("redis_server").url if bull else None
    result = triage(slug, scenario, workdir=tmp_path, redis_url=redis)
    (_artifacts() / f"{slug}--{scenario}.json").write_text(json.dumps({
        "runbook": slug, "scenario": scenario, "expect": result.expect, "cause": result.cause, "others": result.others,
        "proposed": result.proposed, "forbidden": result.forbidden, "missing": result.missing,
        "seconds": round(result.seconds, 2)}, indent=1))

    assert result.crash is None, result.crash
    assert result.cause == result.expect, result.summary.get("diagnosis")
    assert not result.forbidden, result.forbidden
    assert not result.missing, (result.missing, result.summary.get("diagnosis"))
    assert result.changes == [], result.changes
    assert result.summary["diagnosis"]["figures"] or result.cause == "inconclusive", "the card shows its figures"


@pytest.mark.parametrize(("slug", "path"), VARIANTS, ids=[f"{s}-{p.stem}" for s, p in VARIANTS])
def test_every_independently_written_variant_is_named_right(slug: str, path: Path, tmp_path: Path,
                                                              request: pytest.FixtureRequest) -> None:
    bull = catalog.get(slug).load_scenario(str(path)).section("bullmq")["enabled"]
    redis = request.getfixturevalue("redis_server").url if bull else None
    result = triage(slug, path, workdir=tmp_path, redis_url=redis)
    assert result.crash is None, result.crash
    assert result.cause == result.expect, result.summary.get("diagnosis")
    assert not result.forbidden and not result.missing, (result.forbidden, result.missing)
    assert result.changes == [], result.changes


def test_a_retry_plan_holds_exactly_the_incident_windows_failures_of_the_causes_codes(tmp_path: Path) -> None:
    """The same rate-limit codes failed all day at a low level: the plan re-queues only the window's, and only the
    rate limit's codes — never the background carrier errors, never the previous day."""
    import sqlalchemy as sa

    drill = tmp_path / "drill.yaml"
    drill.write_text("""
expect: rate_limited
message_logs:
  baseline_errors:
    - {error: "Too Many Requests", error_code: "20429"}
    - {error: "Unreachable destination handset", error_code: "30003"}
  incident:
    started_minutes_ago: 30
    failure_rate: 0.4
    errors: [{error: "Too Many Requests", error_code: "20429"}, {error: "Queue overflow", error_code: "30001"}]
""")
    result = triage("sms_delivery_failure", drill, workdir=tmp_path / "run")
    assert result.cause == "rate_limited" and "retry_failed_sms" in result.proposed
    plan = next(a["plan"] for a in result.summary["actions"] if a["action"] == "retry_failed_sms")
    planned = set(plan["steps"][0]["message_ids"])
    since = result.summary["window"]["since"]
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'run' / 'sandbox' / 'message_logs.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, created_at, json_extract(metadata, '$.error_code') AS code "
                                    "FROM message_logs WHERE status = 'FAILED'")).all()
    engine.dispose()
    in_window = {r.id for r in rows if r.created_at >= since.replace("T", " ")[:19] and r.code in ("20429", "30001")}
    earlier = {r.id for r in rows if r.created_at < since.replace("T", " ")[:19] and r.code == "20429"}
    assert earlier, "the drill has rate-limit failures before the window"
    assert planned == in_window, (len(planned), len(in_window))
    assert plan["steps"][0]["error_codes"] == ["14107", "20429", "21611", "30001", "30022", "30036"]


def test_the_judge_calls_out_an_all_clear_a_harmful_plan_and_what_is_missing() -> None:
    """The judge itself can fail a run: each forbidden outcome and each unmet expectation is named."""
    from runbooklib.triage import judge

    spec = catalog.get("sms_delivery_failure")
    scenario = {"expect": "invalid_numbers", "expect_also": ["recipients_unsubscribed"], "expect_tenants": ["hooli"],
                "forbid": ["mark_do_not_contact"]}
    summary = {"diagnosis": {"cause": "healthy", "others": [], "explanation": "all fine"},
               "actions": [{"action": "retry_failed_sms", "decision": "dry_run"},
                           {"action": "mark_do_not_contact", "decision": "dry_run"},
                           {"action": "send_test_sms", "decision": "dry_run"},
                           {"action": "route_urgent_to_whatsapp", "decision": "not_needed"}]}
    forbidden, missing = judge(spec, scenario, summary)
    assert forbidden == ["all-clear during an incident: healthy where the scenario has invalid_numbers",
                         "harmful mitigation planned: retry_failed_sms cannot fix invalid_numbers, recipients_unsubscribed",
                         "harmful mitigation planned: mark_do_not_contact (the scenario forbids it)"]
    assert missing == ["recipients_unsubscribed not listed beside the cause", "tenant hooli not named"]
    fine = {"diagnosis": {"cause": "invalid_numbers", "others": [{"cause": "recipients_unsubscribed"}],
                          "explanation": "tenant hooli …"}, "actions": [{"action": "send_test_sms", "decision": "dry_run"}]}
    assert judge(spec, scenario, fine) == ([], [])

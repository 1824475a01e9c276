"""The rules and action decisions of each runbook, without a database, a provider or a kernel: findings and
typed evidence are set as the checks leave them, so a threshold or a rule's order is tested in milliseconds.

Each case states the evidence a check would have recorded and the cause (or decision) it must lead to; the
edge cases sit on either side of a threshold from `runbooks/rules.py`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runbooklib import catalog
from runbooklib.context import RunContext
from runbooklib.diagnosis import Diagnosis
from runbooklib.evidence import Key, NotYet
from runbooklib.results import CheckResult
from runbooklib.runbooks import email_provider_failure as email
from runbooklib.runbooks import high_retry_volume as hrv
from runbooklib.runbooks import rules
from runbooklib.runbooks import sms_delivery_failure as sms
from runbooklib.runbooks import whatsapp_delivery_failure as whatsapp
from runbooklib.runbooks.log_facts import ERROR_CLASSES, TENANT_SPLIT, WINDOW_RATE, ErrorClasses, TenantSplit, WindowRate
from tests.lib.test_verdict_rests_on import context_for

ELEVATED: list[Any] = [WindowRate(total=1000, failed=400, rate=0.4, baseline_total=24000, baseline_rate=0.01,
                                  elevated=True)]
"""What the failure-rate check leaves when the window is far above its baseline."""
CALM: list[Any] = [WindowRate(total=1000, failed=3, rate=0.003, baseline_total=24000, baseline_rate=0.01)]
"""And when it is at its baseline."""
KEYS: dict[type, Key[Any]] = {WindowRate: WINDOW_RATE, ErrorClasses: ERROR_CLASSES, TenantSplit: TENANT_SPLIT}


def _ctx(slug: str, tmp_path: Path, *, evidence: list[Any] | None = None,
         failing: dict[str, str] | None = None, **raw: object) -> RunContext:
    """A run context whose every needed check ran and passed, then `failing` (check → classification) failed and
    `evidence` kept, as the checks would have left them."""
    ctx = context_for(slug, tmp_path, **raw)
    for needed in catalog.get(slug).needed(ctx):
        ctx.findings[needed.check] = CheckResult(needed.check, needed.what, "ok", "fine")
    for name, classification in (failing or {}).items():
        ctx.findings[name] = CheckResult(name, name, "fail", f"{name} failed", classification=classification)
    for value in evidence or []:
        ctx.evidence.put(KEYS[type(value)], value)
    return ctx


def _shares(**shares: float) -> list[Any]:
    top = max(shares, key=lambda k: shares[k])
    return [*ELEVATED, ErrorClasses(total=400, shares=shares, dominant=top)]


def _tenant(share: float, *, top_rate: float = 0.6, rest_rate: float = 0.01) -> list[Any]:
    return [*ELEVATED, TenantSplit(tenants=4, failing=3, top_tenant="globex", top_share=share, top_rate=top_rate,
                                   rest_rate=rest_rate)]


# -- Shared thresholds ------------------------------------------------------------------------------
@pytest.mark.parametrize(("rate", "baseline", "failed", "expected"), [
    (0.40, 0.01, 400, True),
    (0.061, 0.01, 61, True),    # 5 points above and over twice the baseline
    (0.059, 0.01, 59, False),   # under 5 points above
    (0.30, 0.20, 300, False),   # 10 points above but under twice the baseline
    (0.50, 0.01, rules.MIN_FAILURES - 1, False),  # too few failures to call
])
def test_elevated_needs_twice_the_baseline_five_points_above_and_enough_failures(rate: float, baseline: float,
                                                                                 failed: int, expected: bool) -> None:
    assert rules.elevated(rate, baseline, failed) is expected


# -- Email ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("failing", "evidence", "cause"), [
    ({"ses_quota": "quota_exhausted"}, ELEVATED, "ses_daily_quota_exceeded"),
    ({"ses_account": "sending_disabled"}, ELEVATED, "ses_sending_disabled"),
    ({"ses_quota": "permission_denied"}, ELEVATED, "ses_permission_denied"),
    ({"smtp_primary": "unreachable"}, ELEVATED, "smtp_unreachable"),
    ({"smtp_primary": "tls"}, ELEVATED, "smtp_tls_failure"),
    ({"smtp_primary": "auth_rejected"}, ELEVATED, "smtp_auth_failure"),
    ({}, _shares(ses_rate=0.7, other=0.3), "ses_rate_throttled"),
    ({}, _shares(ses_daily_quota=0.9, other=0.1), "ses_daily_quota_exceeded"),  # from the logs alone
    ({}, _tenant(0.9), "tenant_specific"),
    ({}, CALM, "healthy"),
])
def test_email_rules(tmp_path: Path, failing: dict[str, str], evidence: list[Any], cause: str) -> None:
    assert email.diagnose_email(_ctx(email.SLUG, tmp_path, failing=failing, evidence=evidence)).cause == cause


def test_email_rules_are_tried_in_priority_order_and_the_others_are_listed(tmp_path: Path) -> None:
    ctx = _ctx(email.SLUG, tmp_path, failing={"ses_quota": "permission_denied", "smtp_primary": "unreachable"},
               evidence=_tenant(0.9))
    d = email.diagnose_email(ctx)
    assert d.cause == "ses_permission_denied"
    assert [o["cause"] for o in d.others] == ["smtp_unreachable", "tenant_specific"]


@pytest.mark.parametrize(("share", "top_rate", "rest_rate", "cause"), [
    (rules.TENANT_SHARE, 0.6, 0.01, "tenant_specific"),
    (rules.TENANT_SHARE - 0.01, 0.6, 0.01, "unknown"),   # the tenant carries under 80% of the failures
    (0.9, 0.29, 0.01, "unknown"),                         # under 30% of its own messages fail
    (0.9, 0.6, 0.07, "unknown"),                          # the other tenants fail too
])
def test_the_tenant_rule_sits_on_its_thresholds(tmp_path: Path, share: float, top_rate: float, rest_rate: float,
                                                cause: str) -> None:
    ctx = _ctx(email.SLUG, tmp_path, evidence=_tenant(share, top_rate=top_rate, rest_rate=rest_rate))
    assert email.diagnose_email(ctx).cause == cause


def test_a_needed_check_that_could_not_run_makes_no_failure_healthy(tmp_path: Path) -> None:
    ctx = _ctx(email.SLUG, tmp_path, evidence=CALM)
    ctx.findings["smtp_primary"] = CheckResult("smtp_primary", "SMTP primary", "error", "timed out",
                                               classification="timeout")
    d = email.diagnose_email(ctx)
    assert d.cause == "inconclusive" and [u["check"] for u in d.unchecked] == ["smtp_primary"]


@pytest.mark.parametrize(("cause", "needed"), [
    ("smtp_unreachable", True), ("ses_daily_quota_exceeded", True), ("tenant_specific", False), ("healthy", False),
])
def test_switching_the_email_provider_is_proposed_only_when_the_primary_cannot_send(tmp_path: Path, cause: str,
                                                                                     needed: bool) -> None:
    ctx = _ctx(email.SLUG, tmp_path)
    assert email.SwitchEmailProvider(ctx).needed()[0] is False  # no diagnosis yet
    ctx.diagnosis = Diagnosis(email.SLUG, cause, "why")
    decided, reason = email.SwitchEmailProvider(ctx).needed()
    assert decided is needed and (needed or cause in reason)


# -- SMS --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("failing", "evidence", "cause"), [
    ({"twilio_account": "auth_failed"}, ELEVATED, "twilio_auth_failure"),
    ({"twilio_numbers": "auth_failed"}, ELEVATED, "twilio_auth_failure"),
    ({"twilio_account": "account_suspended"}, ELEVATED, "twilio_account_suspended"),
    ({"status_page": "outage"}, ELEVATED, "twilio_outage"),
    ({"twilio_numbers": "sender_inactive"}, ELEVATED, "sender_number_inactive"),
    ({}, _shares(invalid_number=0.6, opted_out=0.4), "invalid_numbers"),
    ({}, _shares(opted_out=0.55, invalid_number=0.45), "recipients_unsubscribed"),
    ({}, _shares(carrier_filtered=0.3, carrier_blocked=0.3, rate_limited=0.4), "carrier_filtering"),
    ({}, _shares(rate_limited=0.45, other=0.55), "unknown"),  # no class carries half the failures
    ({}, _tenant(0.85), "tenant_specific"),
])
def test_sms_rules(tmp_path: Path, failing: dict[str, str], evidence: list[Any], cause: str) -> None:
    assert sms.diagnose_sms(_ctx(sms.SLUG, tmp_path, failing=failing, evidence=evidence)).cause == cause


def test_a_provider_outage_is_not_our_cause_while_our_failures_are_at_baseline(tmp_path: Path) -> None:
    ctx = _ctx(sms.SLUG, tmp_path, failing={"status_page": "outage"},
               evidence=CALM)
    assert sms.diagnose_sms(ctx).cause != "twilio_outage"


@pytest.mark.parametrize(("cause", "transient", "needed"), [
    ("rate_limited", 120, True),
    ("twilio_outage", 120, False),          # a retry cannot beat an outage
    ("twilio_auth_failure", 120, False),
    ("rate_limited", 0, False),             # nothing transient to retry
])
def test_retrying_failed_sms_waits_for_the_causes_a_retry_cannot_beat(tmp_path: Path, cause: str, transient: int,
                                                                      needed: bool) -> None:
    ctx = _ctx(sms.SLUG, tmp_path, evidence=[ErrorClasses(categories={"transient": transient})])
    ctx.diagnosis = Diagnosis(sms.SLUG, cause, "why")
    assert sms.RetryFailedSms(ctx).needed()[0] is needed


# -- WhatsApp ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("failing", "evidence", "cause"), [
    ({"wa_token": "token"}, ELEVATED, "token_expired"),
    ({}, _shares(token=0.8, other=0.2), "token_expired"),
    ({"wa_phone": "account_locked"}, ELEVATED, "account_restricted"),
    ({"wa_phone": "phone_not_registered"}, ELEVATED, "phone_not_registered"),
    ({"wa_phone": "quality"}, ELEVATED, "phone_number_quality"),
    ({}, _shares(window_closed=0.7, other=0.3), "window_expired"),
    ({}, _shares(rate_limited=0.6, other=0.4), "rate_limited"),
    ({}, _tenant(0.95), "tenant_specific"),
])
def test_whatsapp_rules(tmp_path: Path, failing: dict[str, str], evidence: list[Any], cause: str) -> None:
    ctx = _ctx(whatsapp.SLUG, tmp_path, failing=failing, evidence=evidence)
    assert whatsapp.diagnose_whatsapp(ctx).cause == cause


# -- High retry volume ------------------------------------------------------------------------------
def test_a_tenant_change_before_the_tenant_split_ran_is_blocked_naming_it(tmp_path: Path) -> None:
    from runbooklib.actions.bases import TenantChannelChange

    class MoveTenants(TenantChannelChange):
        name, title, channel, key = "move_tenants", "Move tenants", "email", "provider"

        def needed(self) -> tuple[bool, str]:
            return True, "a test"

        def target(self, current: Any) -> Any:
            return "backup"

    ctx = _ctx(email.SLUG, tmp_path)
    outcome = ctx.gate.run(MoveTenants(ctx))
    assert outcome.decision == "blocked"
    assert "the window's failures per tenant is not on record in this run: check_tenant_split must run" in outcome.message


def test_cleaning_failed_jobs_needs_exhausted_jobs_and_the_review_list_first(tmp_path: Path) -> None:
    ctx = _ctx(hrv.SLUG, tmp_path)
    action = hrv.CleanFailedJobs(ctx)
    with pytest.raises(NotYet, match="the failed jobs read from BullMQ is not on record in this run: "
                                     "check_failed_jobs must run"):
        action.needed()  # "no permanently failed jobs" would be a guess: the jobs were never read
    outcome = ctx.gate.run(action)
    assert outcome.decision == "blocked" and "check_failed_jobs must run (and succeed) first" in outcome.message
    ctx.evidence.put(hrv.FAILED_JOBS, [])
    assert action.needed() == (False, "no permanently failed jobs")
    ctx.evidence.put(hrv.FAILED_JOBS, [{"queue": "sms", "id": "7", "exhausted": True},
                                       {"queue": "sms", "id": "8", "exhausted": False}])
    assert action.needed() == (True, "1 failed jobs exhausted their attempts")
    assert action.plan().blocked == "write the review list first (review_failed_jobs)"
    ctx.evidence.put(hrv.REVIEW_WRITTEN, "failed_jobs_review.csv")
    plan = action.plan()
    assert not plan.blocked
    assert plan.steps == [{"bullmq": "remove_failed", "queue": "sms", "job_ids": ["7"], "jobs": 1}]


def test_facts_that_are_plain_data_reach_the_summary_and_frames_do_not(tmp_path: Path) -> None:
    import pandas as pd

    ctx = _ctx(sms.SLUG, tmp_path, evidence=[*ELEVATED, ErrorClasses(400, {"rate_limited": 0.7}, "rate_limited",
                                                                       {"transient": 3})])
    ctx.facts.update(levels=[1, 2], frame=pd.DataFrame({"a": [1]}))
    facts = ctx.summary().facts
    assert facts["error_class_shares"] == {"rate_limited": 0.7} and facts["category_counts"] == {"transient": 3}
    assert facts["window_failed"] == 400 and facts["incident_present"] is True  # the typed evidence, by its old names
    assert facts["levels"] == [1, 2] and "frame" not in facts


@pytest.mark.parametrize(("patterns", "failing", "cause"), [
    (hrv.RetryPatterns(repeat_offenders=4, problem_messages=12, top_error_share=0.3), {}, "poison_messages"),
    (hrv.RetryPatterns(problems_elevated=True, top_error_share=0.8, top_error_retry_levels=3, problem_messages=900,
                       top_error="Twilio 30008", top_error_channel="SMS"), {}, "systemic_provider_failure"),
    (hrv.RetryPatterns(problems_elevated=True, top_error_share=0.8, top_error_retry_levels=1, problem_messages=900,
                       retry_ratio=2.5, baseline_retry_ratio=0.2), {}, "retry_amplification"),  # one level: not systemic
    (hrv.RetryPatterns(problems_elevated=True, significant_errors=3, problem_messages=900, top_error_share=0.3,
                       retry_ratio=0.9, baseline_retry_ratio=0.5), {}, "multiple_root_causes"),
    (hrv.RetryPatterns(retry_ratio=0.9, baseline_retry_ratio=0.5), {}, "healthy"),  # under twice the baseline and 1.0
    (hrv.RetryPatterns(), {"queue_growth": "stalled"}, "queue_stalled"),
])
def test_high_retry_volume_rules(tmp_path: Path, patterns: hrv.RetryPatterns, failing: dict[str, str],
                                 cause: str) -> None:
    ctx = _ctx(hrv.SLUG, tmp_path, failing=failing)
    ctx.evidence.put(hrv.RETRY_PATTERNS, patterns)
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", dlq_size=0, failed_jobs=10))
    assert hrv.diagnose_retries(ctx).cause == cause


@pytest.mark.parametrize(("dlq", "cause", "needed"), [(14, "healthy", True), (0, "healthy", False),
                                                      (14, "poison_messages", False)])
def test_the_dlq_is_replayed_only_once_the_system_is_healthy(tmp_path: Path, dlq: int, cause: str,
                                                             needed: bool) -> None:
    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", dlq_size=dlq, failed_jobs=0))
    ctx.diagnosis = Diagnosis(hrv.SLUG, cause, "why")
    assert hrv.ReplayDlq(ctx).needed()[0] is needed

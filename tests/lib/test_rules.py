"""The rules and action decisions of each runbook, without a database, a provider or a kernel: findings and
typed evidence are set as the checks leave them, so a rule, its ranking or an action's decision is tested in
milliseconds.

Each case states the evidence a check would have recorded (counts in the window and the baseline, which the
rules test with `stats.compare`) and the cause or decision it must lead to. The tables each runbook concludes
from are enumerated: every error class and every not-OK provider state leads somewhere."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from runbooklib import catalog, errorcodes
from runbooklib.context import RunContext
from runbooklib.diagnosis import Diagnosis
from runbooklib.evidence import Key, NotYet
from runbooklib.results import CheckResult
from runbooklib.runbooks import email_provider_failure as email
from runbooklib.runbooks import high_retry_volume as hrv
from runbooklib.runbooks import sms_delivery_failure as sms
from runbooklib.runbooks import whatsapp_delivery_failure as whatsapp
from runbooklib.runbooks.log_facts import ERROR_CLASSES, TENANT_SPLIT, WINDOW_RATE, ErrorClasses, TenantSplit, WindowRate
from runbooklib.stats import compare
from tests.lib.test_verdict_rests_on import context_for

KEYS: dict[type, Key[Any]] = {WindowRate: WINDOW_RATE, ErrorClasses: ERROR_CLASSES, TenantSplit: TENANT_SPLIT}
WINDOW, BASELINE = 2000, 48000
"""Messages in the window and in the baseline of every case below (a 1 h window, a 24 h baseline)."""


def rate(failed: int, base_failed: int = 480, total: int = WINDOW, base_total: int = BASELINE) -> WindowRate:
    """What the failure-rate check leaves: `failed` of `total` against `base_failed` of `base_total`."""
    test = compare("failure rate", failed, total, base_failed, base_total)
    return WindowRate(total, failed, failed / total, base_total, base_failed / base_total, elevated=test.elevated,
                      baseline_failed=base_failed, comparison=test)


ELEVATED = rate(800)
CALM = rate(22)


def classes(**counts: int | tuple[int, int]) -> ErrorClasses:
    """What the top-errors check leaves: class → window count, or (window, baseline) counts."""
    window = {c: (v if isinstance(v, int) else v[0]) for c, v in counts.items()}
    base = {c: (0 if isinstance(v, int) else v[1]) for c, v in counts.items()}
    total = sum(window.values())
    shares = {c: n / total for c, n in window.items()} if total else {}
    return ErrorClasses(total, shares, max(window, key=lambda c: window[c]) if window else None, counts=window,
                        baseline_counts=base, messages=WINDOW, baseline_messages=BASELINE)


def tenants(rows: dict[str, tuple[int, int, int, int]]) -> TenantSplit:
    """What the tenant split leaves: tenant → (failed, total, baseline failed, baseline total), each tenant tested
    against its own baseline as the check does."""
    from runbooklib.stats import family_alpha
    from runbooklib.thresholds import MIN_TENANT_FAILURES, SIGNIFICANCE

    alpha = family_alpha(len(rows), SIGNIFICANCE)
    tests = [compare(f"tenant {t}", f, n, bf, bn, min_failures=MIN_TENANT_FAILURES, alpha=alpha)
             for t, (f, n, bf, bn) in rows.items()]
    elevated = tuple(c.what.removeprefix("tenant ") for c in sorted(tests, key=lambda c: -c.excess) if c.elevated)
    others = [v for t, v in rows.items() if t not in elevated]
    rest = compare("the other tenants", *(sum(v[i] for v in others) for i in range(4))) if elevated else None
    return TenantSplit(len(rows), sum(1 for v in rows.values() if v[0]), comparisons=tuple(tests),
                       elevated_tenants=elevated, active=len(rows), rest=rest,
                       top_errors={t: "MessageRejected: not verified (class rejected, 100% of its errors)"
                                   for t in elevated})


HEALTHY_TENANTS = {"acme": (10, 800, 240, 19200), "globex": (7, 600, 180, 14400), "initech": (5, 400, 120, 9600),
                   "umbrella": (2, 200, 60, 4800)}


def _ctx(slug: str, tmp_path: Path, *, evidence: list[Any] | None = None,
         failing: dict[str, str] | None = None, warning: dict[str, str] | None = None, **raw: object) -> RunContext:
    """A run context whose every needed check ran and passed, then `failing` (check → classification) failed,
    `warning` warned, and `evidence` was kept, as the checks would have left them."""
    ctx = context_for(slug, tmp_path, **raw)
    for needed in catalog.get(slug).needed(ctx):
        ctx.findings[needed.check] = CheckResult(needed.check, needed.what, "ok", "fine")
    for status, found in (("fail", failing), ("warn", warning)):
        for name, classification in (found or {}).items():
            ctx.findings[name] = CheckResult(name, name, status, f"{name} {status}", classification=classification)
    for value in evidence or []:
        ctx.evidence.put(KEYS[type(value)], value)
    return ctx


# -- Elevated: a test that accounts for volume --------------------------------------------------------
@pytest.mark.parametrize(("failed", "total", "base_failed", "base_total", "elevated", "why"), [
    (400, 2000, 480, 48000, True, "far above, large volumes"),
    (10, 40, 480, 48000, True, "ten in forty is a real rise"),
    (30, 2000, 480, 48000, False, "1.5% against 1%: within chance"),
    (10, 100, 1, 50, False, "a thin baseline cannot tell 10% from 2%"),
    (9, 9, 480, 48000, False, "every message failed, but fewer than the minimum to call"),
    (330, 5000, 1800, 48000, False, "significant and twice the baseline, but under 5 points above it"),
])
def test_elevated_is_decided_by_an_exact_test_a_minimum_count_and_a_material_rise(
        failed: int, total: int, base_failed: int, base_total: int, elevated: bool, why: str) -> None:
    test = compare("x", failed, total, base_failed, base_total)
    assert test.elevated is elevated, (why, test.line())


def test_the_p_value_is_the_conditional_binomial_test_scipy_gives() -> None:
    from scipy.stats import binomtest

    test = compare("x", 40, 2000, 480, 48000)
    expected = binomtest(40, 40 + 480, 2000 / (2000 + 48000), alternative="greater").pvalue
    assert test.p_value == pytest.approx(expected, rel=1e-9)


def test_with_no_baseline_the_window_is_compared_with_an_assumed_rate_and_says_so() -> None:
    test = compare("x", 200, 1000, 0, 0)
    assert test.baseline_source == "assumed" and test.elevated and "assumed" in test.line()
    assert not compare("x", 25, 1000, 0, 0).elevated


# -- Per-tenant evidence -----------------------------------------------------------------------------
def test_a_small_tenant_failing_entirely_among_noisy_healthy_ones_is_named(tmp_path: Path) -> None:
    rows = {**HEALTHY_TENANTS, "hooli": (24, 24, 3, 600)}  # 1% of the volume, every message failing
    split = tenants(rows)
    assert split.elevated_tenants == ("hooli",)
    window = rate(sum(v[0] for v in rows.values()), sum(v[2] for v in rows.values()))
    assert not window.elevated, "the channel as a whole is not elevated: the tenant would be diluted away"
    ctx = _ctx(email.SLUG, tmp_path, evidence=[window, split, classes(rejected=24, other=(24, 600))])
    d = email.diagnose_email(ctx)
    assert d.cause == "tenant_specific" and "hooli" in d.explanation and "MessageRejected" in d.explanation
    assert any(f["what"] == "tenant hooli" and f["elevated"] for f in d.figures), "the card shows the figures it used"


def test_no_all_clear_while_a_tenant_is_far_above_its_own_baseline(tmp_path: Path) -> None:
    # half the tenants elevated: not tenant_specific, and no error class explains it — never healthy
    rows = {**HEALTHY_TENANTS, "hooli": (60, 100, 3, 600), "stark": (50, 90, 3, 500), "wayne": (40, 80, 2, 400),
            "wonka": (45, 85, 2, 450)}
    split = tenants(rows)
    assert len(split.elevated_tenants) == 4
    ctx = _ctx(email.SLUG, tmp_path, evidence=[rate(219, 612, 2555, 50150), split, classes(other=(219, 612))])
    assert email.diagnose_email(ctx).cause == "unknown"


def test_a_tenant_at_its_own_high_baseline_is_not_elevated() -> None:
    split = tenants({**HEALTHY_TENANTS, "wonka": (16, 200, 384, 4800)})  # 8% now and always
    assert split.elevated_tenants == ()


# -- Email -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("failing", "evidence", "cause"), [
    ({"ses_quota": "quota_exhausted"}, [ELEVATED], "ses_daily_quota_exceeded"),
    ({"ses_account": "sending_disabled"}, [ELEVATED], "ses_sending_disabled"),
    ({"ses_quota": "permission_denied"}, [ELEVATED], "ses_permission_denied"),
    ({"smtp_primary": "unreachable"}, [ELEVATED], "smtp_unreachable"),
    ({"smtp_primary": "tls"}, [ELEVATED], "smtp_tls_failure"),
    ({"smtp_primary": "auth_rejected"}, [ELEVATED], "smtp_auth_failure"),
    ({"smtp_primary": "server_error"}, [ELEVATED], "smtp_server_error"),
    ({"smtp_primary": "deferred"}, [ELEVATED, classes(smtp_deferred=(700, 480))], "smtp_throttled"),
    ({}, [ELEVATED, classes(ses_rate=560, other=(240, 480))], "ses_rate_throttled"),
    ({}, [ELEVATED, classes(ses_daily_quota=720, other=(80, 480))], "ses_daily_quota_exceeded"),  # logs alone
    ({}, [ELEVATED, classes(rejected=700, other=(100, 480))], "messages_rejected"),
    ({}, [CALM, classes(bounce=(300, 240), other=(22, 480))], "recipients_bouncing"),  # bounces are not failures
    ({"ses_reputation": "reputation"}, [CALM], "ses_reputation_risk"),
    ({}, [CALM], "healthy"),
])
def test_email_rules(tmp_path: Path, failing: dict[str, str], evidence: list[Any], cause: str) -> None:
    assert email.diagnose_email(_ctx(email.SLUG, tmp_path, failing=failing, evidence=evidence)).cause == cause


def test_email_warnings_name_a_cause_only_while_failures_show_it(tmp_path: Path) -> None:
    restricted = _ctx(email.SLUG, tmp_path / "a", warning={"ses_account": "account_review"},
                      evidence=[ELEVATED, classes(rejected=700, other=(100, 480))])
    d = email.diagnose_email(restricted)
    assert d.cause == "ses_account_restricted" and [o["cause"] for o in d.others] == ["messages_rejected"]
    calm = email.diagnose_email(_ctx(email.SLUG, tmp_path / "b", warning={"ses_account": "account_review"},
                                     evidence=[CALM]))
    assert calm.cause == "healthy" and any("not ses_account_restricted" in n for n in calm.notes)
    paused = _ctx(email.SLUG, tmp_path / "c", warning={"email_queue": "paused"}, evidence=[CALM])
    assert email.diagnose_email(paused).cause == "queue_paused"


def test_email_rules_rank_blocking_states_then_tenants_then_shares(tmp_path: Path) -> None:
    ctx = _ctx(email.SLUG, tmp_path, failing={"ses_quota": "permission_denied", "smtp_primary": "unreachable"},
               evidence=[ELEVATED, tenants({**HEALTHY_TENANTS, "hooli": (24, 24, 3, 600)})])
    d = email.diagnose_email(ctx)
    assert d.cause == "ses_permission_denied"
    assert [o["cause"] for o in d.others] == ["smtp_unreachable", "tenant_specific"]


def test_among_causes_the_logs_establish_the_one_explaining_most_failures_is_named(tmp_path: Path) -> None:
    ctx = _ctx(email.SLUG, tmp_path, evidence=[ELEVATED, classes(bounce=250, ses_rate=550, other=(0, 480))])
    d = email.diagnose_email(ctx)
    assert d.cause == "ses_rate_throttled" and [o["cause"] for o in d.others] == ["recipients_bouncing"]


def test_unknown_cites_what_the_providers_observed(tmp_path: Path) -> None:
    ctx = _ctx(email.SLUG, tmp_path, warning={"ses_quota": "quota_high", "smtp_backup": "insecure"},
               evidence=[ELEVATED, classes(other=(800, 480))])
    d = email.diagnose_email(ctx)
    assert d.cause == "unknown"
    cited = [e for e in d.evidence if e.startswith("might explain it:")]
    assert any("ses_quota" in e for e in cited) and any("smtp_backup" in e for e in cited)
    assert any("class other rose" in e for e in cited), "an error that rose but names no cause is cited"


@pytest.mark.parametrize(("cause", "needed"), [
    ("smtp_unreachable", True), ("ses_daily_quota_exceeded", True), ("smtp_throttled", True),
    ("ses_account_restricted", True), ("tenant_specific", False), ("messages_rejected", False),
    ("recipients_bouncing", False), ("ses_reputation_risk", False), ("queue_paused", False), ("healthy", False),
])
def test_switching_the_email_provider_is_proposed_only_when_the_primary_cannot_send(tmp_path: Path, cause: str,
                                                                                     needed: bool) -> None:
    ctx = _ctx(email.SLUG, tmp_path)
    assert email.SwitchEmailProvider(ctx).needed()[0] is False  # no diagnosis yet
    ctx.diagnosis = Diagnosis(email.SLUG, cause, "why")
    decided, reason = email.SwitchEmailProvider(ctx).needed()
    assert decided is needed and (needed or cause in reason)


def test_the_switch_moves_only_tenants_on_the_provider_that_cannot_send(tmp_path: Path) -> None:
    ctx = _ctx(email.SLUG, tmp_path)
    ctx.diagnosis = Diagnosis(email.SLUG, "smtp_auth_failure", "why")
    switch = email.SwitchEmailProvider(ctx)
    assert switch.target("smtp") == switch.backup
    assert switch.target("ses") == "ses", "a tenant on SES is not moved for an SMTP failure"
    ctx.diagnosis = Diagnosis(email.SLUG, "ses_daily_quota_exceeded", "why")
    assert switch.target("ses") == switch.backup and switch.target("smtp") == "smtp"


# -- SMS ---------------------------------------------------------------------------------------------
PAGE_OUTAGE = CheckResult("status_page", "Twilio status page", "fail", "outage reported: SMS: major_outage",
                          classification="outage", facts={"degraded_components": ["SMS: major_outage"]})


@pytest.mark.parametrize(("failing", "evidence", "cause"), [
    ({"twilio_account": "auth_failed"}, [ELEVATED], "twilio_auth_failure"),
    ({"twilio_numbers": "auth_failed"}, [ELEVATED], "twilio_auth_failure"),
    ({"twilio_account": "account_suspended"}, [ELEVATED], "twilio_account_suspended"),
    ({"twilio_numbers": "sender_inactive"}, [ELEVATED], "sender_number_inactive"),
    ({}, [ELEVATED, classes(invalid_number=480, opted_out=320, carrier_unknown=(0, 480))], "invalid_numbers"),
    ({}, [ELEVATED, classes(opted_out=440, invalid_number=360)], "recipients_unsubscribed"),
    ({}, [ELEVATED, classes(carrier_filtered=240, carrier_blocked=240, rate_limited=320)], "carrier_filtering"),
    ({}, [ELEVATED, classes(rate_limited=360, carrier_unknown=(20, 480))], "rate_limited"),  # noise at its baseline
    ({}, [ELEVATED, classes(provider_error=700)], "twilio_api_errors"),
    ({}, [ELEVATED, classes(carrier_transient=(400, 240), carrier_unknown=(400, 240))], "carrier_delivery_errors"),
    ({}, [ELEVATED, classes(sender_registration=760)], "sender_not_registered"),
    ({}, [ELEVATED, classes(config=700)], "twilio_configuration"),
    ({}, [ELEVATED, classes(other=(800, 480))], "unknown"),
    ({}, [CALM, classes(carrier_unknown=(11, 240), invalid_number=(11, 240))], "healthy"),  # the usual trickle
])
def test_sms_rules(tmp_path: Path, failing: dict[str, str], evidence: list[Any], cause: str) -> None:
    assert sms.diagnose_sms(_ctx(sms.SLUG, tmp_path, failing=failing, evidence=evidence)).cause == cause


def test_a_provider_outage_is_our_cause_only_when_our_failures_look_like_one(tmp_path: Path) -> None:
    calm = _ctx(sms.SLUG, tmp_path / "a", evidence=[CALM])
    calm.findings["status_page"] = PAGE_OUTAGE
    assert sms.diagnose_sms(calm).cause == "healthy"
    invalid = _ctx(sms.SLUG, tmp_path / "b", evidence=[ELEVATED, classes(invalid_number=800)])
    invalid.findings["status_page"] = PAGE_OUTAGE
    d = sms.diagnose_sms(invalid)
    assert d.cause == "invalid_numbers", "an outage page is a red herring when the failures are invalid numbers"
    down = _ctx(sms.SLUG, tmp_path / "c", evidence=[ELEVATED, classes(provider_error=500, carrier_unknown=300)])
    down.findings["status_page"] = PAGE_OUTAGE
    assert sms.diagnose_sms(down).cause == "twilio_outage"


@pytest.mark.parametrize(("cause", "others", "needed"), [
    ("rate_limited", [], True),
    ("carrier_delivery_errors", [], True),
    ("invalid_numbers", ["rate_limited"], True),      # the rate-limited part can go through later
    ("twilio_outage", ["rate_limited"], False),       # a retry cannot beat an outage
    ("twilio_auth_failure", [], False),
    ("invalid_numbers", [], False),                   # nothing a retry fixes
    ("healthy", [], False),                           # never a retry on a healthy system
])
def test_retrying_failed_sms_is_proposed_only_for_causes_a_retry_fixes(tmp_path: Path, cause: str,
                                                                       others: list[str], needed: bool) -> None:
    ctx = _ctx(sms.SLUG, tmp_path)
    ctx.diagnosis = Diagnosis(sms.SLUG, cause, "why", others=[{"cause": o, "explanation": ""} for o in others])
    assert sms.RetryFailedSms(ctx).needed()[0] is needed


def test_a_retry_is_bounded_to_the_codes_of_the_causes_it_fixes(tmp_path: Path) -> None:
    ctx = _ctx(sms.SLUG, tmp_path)
    ctx.diagnosis = Diagnosis(sms.SLUG, "rate_limited", "why")
    codes = sms.RetryFailedSms(ctx)._retry_codes()
    assert {"20429", "30022", "30001", "14107"} <= set(codes)
    assert not {"30003", "30008", "20503", "21211"} & set(codes), "only the rate limit's own codes"


# -- WhatsApp ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("failing", "evidence", "cause"), [
    ({"wa_token": "token"}, [ELEVATED], "token_expired"),
    ({}, [ELEVATED, classes(token=700)], "token_expired"),
    ({"wa_templates": "auth"}, [ELEVATED], "app_permission_denied"),
    ({"wa_phone": "account_locked"}, [ELEVATED], "account_restricted"),
    ({"wa_phone": "phone_not_registered"}, [ELEVATED], "phone_not_registered"),
    ({"wa_phone": "config"}, [ELEVATED], "whatsapp_configuration"),
    ({"wa_phone": "quality"}, [ELEVATED, classes(quality=700)], "phone_number_quality"),
    ({}, [ELEVATED, classes(window_closed=600, other=(200, 480))], "window_expired"),
    ({}, [ELEVATED, classes(rate_limited=500, window_closed=300)], "rate_limited"),
    ({}, [ELEVATED, classes(account=780)], "billing_issue"),
    ({}, [ELEVATED, classes(marketing_limit=600)], "marketing_limited"),
    ({}, [ELEVATED, classes(undeliverable=(700, 240))], "recipients_undeliverable"),
    ({}, [ELEVATED, classes(template_params=700)], "template_parameters"),
    ({}, [ELEVATED, classes(provider_transient=(700, 240))], "meta_service_errors"),
])
def test_whatsapp_rules(tmp_path: Path, failing: dict[str, str], evidence: list[Any], cause: str) -> None:
    ctx = _ctx(whatsapp.SLUG, tmp_path, failing=failing, evidence=evidence)
    assert whatsapp.diagnose_whatsapp(ctx).cause == cause


def test_an_expiring_token_is_a_cause_and_its_refresh_is_offered_but_never_for_an_expired_one(tmp_path: Path) -> None:
    ctx = _ctx(whatsapp.SLUG, tmp_path, warning={"wa_token": "token_expiring"}, evidence=[CALM])
    assert whatsapp.diagnose_whatsapp(ctx).cause == "token_expiring"
    assert whatsapp.RefreshAccessToken(ctx).needed()[0] is True
    expired = _ctx(whatsapp.SLUG, tmp_path / "b", failing={"wa_token": "token"}, evidence=[ELEVATED])
    whatsapp.diagnose_whatsapp(expired)
    decided, why = whatsapp.RefreshAccessToken(expired).needed()
    assert decided is False and "exchanges only a token that is still valid" in why


# -- Every class and every provider state leads somewhere ------------------------------------------------
CLASSES = {email.SLUG: [c for c in errorcodes.EMAIL_CLASSES if c != "other"],
           sms.SLUG: sorted({i.cls for i in errorcodes.TWILIO_CODES.values()}),
           whatsapp.SLUG: sorted({i.cls for i in errorcodes.GRAPH_CODES.values()} | {"config"})}


@pytest.mark.parametrize("slug", sorted(CLASSES))
def test_every_error_class_the_classifier_gives_names_a_documented_cause(slug: str) -> None:
    spec = catalog.get(slug)
    table = spec.module.CONCLUSIONS.classes
    assert set(CLASSES[slug]) <= set(table), set(CLASSES[slug]) - set(table)
    assert set(table.values()) <= set(spec.causes)


@pytest.mark.parametrize("slug", sorted(CLASSES))
def test_every_not_ok_state_a_provider_check_reports_names_a_cause_or_is_noted_with_why(slug: str) -> None:
    conclusions = catalog.get(slug).module.CONCLUSIONS
    for finding, source in conclusions.sources.items():
        module, function = source.split(":")
        declared = vars(importlib.import_module(module))
        table = (declared.get("STATES") or declared["QUEUE_STATES"])[function]
        for classification, statuses in table.items():
            for status in statuses:
                state = next((s for s in conclusions.states if s.check == finding and s.classification == classification
                              and status in s.statuses), None)
                assert state is not None, (finding, classification, status)
                assert state.cause in catalog.get(slug).causes or (state.cause is None and state.why), state


@pytest.mark.parametrize(("slug", "cause"), [(s, c) for s in sorted(CLASSES) for c in catalog.get(s).causes
                                             if c not in ("healthy", "unknown", "tenant_specific", "twilio_outage")])
def test_every_cause_is_established_by_a_class_or_a_provider_state(slug: str, cause: str) -> None:
    conclusions = catalog.get(slug).module.CONCLUSIONS
    assert cause in set(conclusions.classes.values()) | conclusions.state_causes(), cause


def _modules_that_declare_states() -> list[str]:
    return ["runbooklib.providers.smtp", "runbooklib.providers.ses", "runbooklib.providers.twilio",
            "runbooklib.providers.statuspage", "runbooklib.providers.whatsapp", "runbooklib.runbooks.channel_checks"]


@pytest.mark.parametrize("module", _modules_that_declare_states())
def test_every_fail_or_warn_classification_a_check_writes_is_declared(module: str) -> None:
    """Scan each check for CheckResult(..., "fail" | "warn", ..., classification=<literal or constant>): every one is
    in the module's declared states, so the tables above cannot miss a state the code reports."""
    import ast
    import inspect

    mod = importlib.import_module(module)
    declared = getattr(mod, "STATES", None) or mod.QUEUE_STATES
    tree = ast.parse(inspect.getsource(mod))
    scanned = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
               and (hasattr(mod, "STATES") or n.name in declared)]  # the queue check, not the message_logs ones
    assert scanned
    for fn in scanned:
        for call in (n for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "CheckResult"):
            status = next((a.value for a in call.args[2:3] if isinstance(a, ast.Constant)), None)
            kw = {k.arg: k.value for k in call.keywords}
            if status not in ("fail", "warn") or "classification" not in kw:
                continue
            value = kw["classification"]
            name = (value.value if isinstance(value, ast.Constant) else getattr(mod, value.id, None)
                    if isinstance(value, ast.Name) else None)
            if name is None:  # worked out at run time (a classifier): declared from its table, checked above
                continue
            assert any(name in states for states in declared.values()), (fn.name, name)


# -- Mitigations: offered only for the causes they fix ---------------------------------------------------------
@pytest.mark.parametrize("slug", [email.SLUG, sms.SLUG, whatsapp.SLUG])
def test_each_tabled_action_is_proposed_exactly_for_the_causes_it_can_fix(slug: str, tmp_path: Path) -> None:
    spec = catalog.get(slug)
    table: dict[str, set[str]] = spec.module.MITIGATES
    classes_for = {"window_expired": classes(window_closed=600)}
    for action_name, fixes in table.items():
        factory = getattr(spec.module, action_name, None) or next(
            getattr(spec.module, n) for n in dir(spec.module) if getattr(getattr(spec.module, n), "name", "") == action_name)
        for cause in spec.causes:
            ctx = _ctx(slug, tmp_path / f"{action_name}-{cause}", evidence=[classes_for.get(cause, classes())],
                       warning={"wa_token": "token_expiring"} if cause == "token_expiring" else None)
            ctx.diagnosis = Diagnosis(slug, cause, "why")
            decided, why = factory(ctx).needed()
            assert decided is (cause in fixes), (action_name, cause, why)


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


def test_facts_that_are_plain_data_reach_the_summary_and_frames_do_not(tmp_path: Path) -> None:
    import pandas as pd

    ctx = _ctx(sms.SLUG, tmp_path, evidence=[ELEVATED, ErrorClasses(400, {"rate_limited": 0.7}, "rate_limited",
                                                                     {"transient": 3})])
    ctx.facts.update(levels=[1, 2], frame=pd.DataFrame({"a": [1]}))
    facts = ctx.summary().facts
    assert facts["error_class_shares"] == {"rate_limited": 0.7} and facts["category_counts"] == {"transient": 3}
    assert facts["window_failed"] == 800 and facts["incident_present"] is True  # the typed evidence, by its old names
    assert facts["levels"] == [1, 2] and "frame" not in facts


# -- High retry volume ---------------------------------------------------------------------------------
def group(error: str, messages: int, *, baseline: int = 0, levels: int = 3, repeat: int = 0, max_retry: int = 3,
          channel: str = "SMS") -> hrv.ErrorGroup:
    return hrv.ErrorGroup(channel, error, messages, levels, repeat, max_retry, messages * max_retry,
                          compare(f"{channel} error {error}", messages, WINDOW, baseline, BASELINE, min_failures=5))


def patterns(*groups: hrv.ErrorGroup, ratio: float = 0.05, base_ratio: float = 0.03, retried: int = 20) -> hrv.RetryPatterns:
    failing = sum(g.messages for g in groups) + 20
    return hrv.RetryPatterns(retry_ratio=ratio, baseline_retry_ratio=base_ratio,
                             problems=compare("problems", failing, WINDOW, 480, BASELINE), groups=groups,
                             retried_messages=retried, messages=WINDOW)


POISON = group("TypeError: cannot read 'phoneNumber'", 8, repeat=8, max_retry=9, levels=1)


@pytest.mark.parametrize(("found", "failing", "cause", "others"), [
    (patterns(POISON), {}, "poison_messages", []),
    (patterns(group("Service unavailable", 1500, levels=3), ratio=6, retried=1500), {}, "systemic_provider_failure",
     ["retry_amplification"]),
    (patterns(group("Service unavailable", 1500, levels=3), POISON, ratio=6, retried=1500), {},
     "systemic_provider_failure", ["retry_amplification", "poison_messages"]),
    # a storm: every failing message retried many times is amplification, not poison
    (patterns(group("Unknown error", 500, levels=6, repeat=300, max_retry=6),
              group("Unreachable handset", 450, levels=6, repeat=250, max_retry=6), ratio=3.5, retried=950), {},
     "retry_amplification", []),
    (patterns(group("Unknown error", 500, levels=6, repeat=300, max_retry=6),
              group("Unreachable handset", 450, levels=6, repeat=250, max_retry=6), POISON, ratio=3.5, retried=950),
     {}, "retry_amplification", ["poison_messages"]),
    # a few poison messages while an unrelated error carries most failures
    (patterns(group("Unreachable handset", 60, baseline=240, levels=2), POISON), {}, "poison_messages", []),
    (patterns(group("a", 200), group("b", 180), group("c", 150)), {}, "multiple_root_causes", []),
    (patterns(ratio=0.9, base_ratio=0.5), {}, "healthy", []),
    (patterns(), {"queue_growth": "stalled"}, "queue_stalled", []),
])
def test_high_retry_volume_rules(tmp_path: Path, found: hrv.RetryPatterns, failing: dict[str, str], cause: str,
                                 others: list[str]) -> None:
    ctx = _ctx(hrv.SLUG, tmp_path, failing=failing)
    ctx.evidence.put(hrv.RETRY_PATTERNS, found)
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", dlq_size=0, failed_jobs=10))
    d = hrv.diagnose_retries(ctx)
    assert d.cause == cause, d.explanation
    assert [o["cause"] for o in d.others] == others


def test_a_paused_queue_is_a_cause_and_its_resume_is_offered_only_then(tmp_path: Path) -> None:
    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.evidence.put(hrv.RETRY_PATTERNS, patterns())
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", dlq_size=0, failed_jobs=0, paused=("email",)))
    assert hrv.diagnose_retries(ctx).cause == "queue_paused"
    assert hrv.ResumeQueue(ctx).needed()[0] is True
    ctx.diagnosis = Diagnosis(hrv.SLUG, "systemic_provider_failure", "why")
    assert hrv.ResumeQueue(ctx).needed()[0] is False


def _jobs(*reasons: tuple[str, str, bool]) -> list[dict[str, Any]]:
    return [{"queue": q, "id": str(i), "exhausted": exhausted, "failedReason": reason, "message_id": f"m{i}",
             "age_minutes": 3.0} for i, (q, reason, exhausted) in enumerate(reasons)]


def test_cleaning_deletes_only_permanent_failures_after_the_review_list_and_never_during_a_provider_failure(
        tmp_path: Path) -> None:
    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.diagnosis = Diagnosis(hrv.SLUG, "multiple_root_causes", "why")
    action = hrv.CleanFailedJobs(ctx)
    with pytest.raises(NotYet, match="the failed jobs read from BullMQ is not on record in this run: "
                                     "check_failed_jobs must run"):
        action.needed()  # "no permanently failed jobs" would be a guess: the jobs were never read
    ctx.evidence.put(hrv.FAILED_JOBS, [])
    assert action.needed() == (False, "no permanently failed jobs")
    ctx.evidence.put(hrv.FAILED_JOBS, _jobs(("sms", "Twilio 21211: Invalid 'To' Phone Number", True),
                                            ("sms", "Twilio 20429: Too Many Requests", True),
                                            ("sms", "TypeError: x is undefined", True),
                                            ("sms", "Twilio 30007: Message filtered", False),
                                            ("whatsapp", "Graph 131050: User stopped marketing messages", True)))
    assert action.needed() == (True, "2 failed jobs exhausted their attempts with a permanent failure")
    assert action.plan().blocked == "write the review list first (review_failed_jobs)"
    ctx.evidence.put(hrv.REVIEW_WRITTEN, "failed_jobs_review.csv")
    plan = action.plan()
    assert plan.steps == [{"bullmq": "remove_failed", "queue": "sms", "job_ids": ["0"], "jobs": 1},
                          {"bullmq": "remove_failed", "queue": "whatsapp", "job_ids": ["4"], "jobs": 1}]
    for cause in hrv.PROVIDER_SIDE:
        ctx.diagnosis = Diagnosis(hrv.SLUG, cause, "why")
        decided, why = action.needed()
        assert decided is False and "never delete" in why, cause


def test_poison_jobs_are_only_those_of_the_poison_messages(tmp_path: Path) -> None:
    import pandas as pd

    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.evidence.put(hrv.RETRY_PATTERNS, patterns(group("Service unavailable", 1500), POISON))
    ctx.evidence.put(hrv.REPEAT_OFFENDERS, pd.DataFrame({"id": ["m9"], "error": [POISON.error]}))
    ctx.evidence.put(hrv.FAILED_JOBS, _jobs(("sms", "Twilio 20503: Service unavailable", True),
                                            ("sms", POISON.error, True), ("sms", "Twilio 20503: Service unavailable", True)))
    assert hrv._poison_jobs(ctx) == {"sms": ["1"]}


@pytest.mark.parametrize(("dlq", "cause", "needed"), [(14, "healthy", True), (0, "healthy", False),
                                                      (14, "poison_messages", False)])
def test_the_dlq_is_replayed_only_once_the_system_is_healthy(tmp_path: Path, dlq: int, cause: str,
                                                             needed: bool) -> None:
    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", dlq_size=dlq, failed_jobs=0))
    ctx.diagnosis = Diagnosis(hrv.SLUG, cause, "why")
    assert hrv.ReplayDlq(ctx).needed()[0] is needed


@pytest.mark.parametrize(("reason", "replayed"), [("Twilio 30008: Unknown error", True),
                                                  ("Twilio 20503: Service unavailable", True),
                                                  ("Twilio 21211: Invalid 'To' Phone Number", False),
                                                  ("TypeError: Cannot read properties of undefined", False)])
def test_a_replay_leaves_poison_and_permanent_failures_in_the_dlq_for_review(reason: str, replayed: bool) -> None:
    assert hrv._replayable({"data": {"sourceQueue": "sms", "failedReason": reason}}) is replayed


def test_poison_seen_only_in_bullmq_is_still_poison_but_a_provider_error_is_not(tmp_path: Path) -> None:
    """A few jobs exhausted by the same error a retry never fixes, while the rest of their queue behaves differently
    (goes through, or fails for another reason): poison — even when message_logs shows them retried no more than
    anything else. A transient provider error on a few jobs is not poison; nor are jobs that are a large share."""
    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.evidence.put(hrv.RETRY_PATTERNS, patterns())
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", 0, 5, completed={"sms": 200}, failed={"sms": 8}))
    ctx.evidence.put(hrv.FAILED_JOBS, _jobs(*[("sms", "SyntaxError: Unexpected token u in JSON", True)] * 5,
                                            ("sms", "Twilio 30008: Unknown error", True),
                                            ("sms", "Twilio 30008: Unknown error", True)))
    d = hrv.diagnose_retries(ctx)
    assert d.cause == "poison_messages" and "5 sms job(s)" in d.explanation
    assert hrv._poison_jobs(ctx) == {"sms": ["0", "1", "2", "3", "4"]}
    outage = _ctx(hrv.SLUG, tmp_path / "o")  # the rest fails too, with another error: still poison beside it
    outage.evidence.put(hrv.RETRY_PATTERNS, patterns())
    outage.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", 0, 185, completed={"sms": 0}, failed={"sms": 185}))
    outage.evidence.put(hrv.FAILED_JOBS, _jobs(*[("sms", "TypeError: x", True)] * 4,
                                               *[("sms", "Twilio 20503: Service unavailable", True)] * 181))
    assert hrv._poison_jobs(outage) == {"sms": ["0", "1", "2", "3"]}
    many = _ctx(hrv.SLUG, tmp_path / "b")
    many.evidence.put(hrv.RETRY_PATTERNS, patterns())
    many.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", 0, 5, completed={"sms": 20}, failed={"sms": 5}))
    many.evidence.put(hrv.FAILED_JOBS, _jobs(*[("sms", "SyntaxError: Unexpected token u in JSON", True)] * 5))
    assert hrv.diagnose_retries(many).cause != "poison_messages"  # a fifth of the queue: not a few


def ended_rate(recent_problems: int, recent_total: int = 450) -> WindowRate:
    """Elevated in the window; the last minutes' failing or retrying messages as given."""
    found = rate(800)
    latest = compare("the last 15 minutes", recent_problems, recent_total, 480, BASELINE)
    return WindowRate(found.total, found.failed, found.rate, found.baseline_total, found.baseline_rate,
                      elevated=True, baseline_failed=480, comparison=found.comparison, recent=latest)


def test_failures_that_ended_in_the_window_are_history_while_a_current_state_is_not(tmp_path: Path) -> None:
    over = _ctx(sms.SLUG, tmp_path / "a", evidence=[ended_rate(5), classes(provider_error=700)])
    d = sms.diagnose_sms(over)
    assert d.cause == "healthy" and "have ended" in d.explanation
    assert any(n.startswith("ended in the window: twilio_api_errors") for n in d.notes)
    assert sms.RouteUrgentToWhatsApp(over).needed()[0] is False
    going = _ctx(sms.SLUG, tmp_path / "b", evidence=[ended_rate(200), classes(provider_error=700)])
    assert sms.diagnose_sms(going).cause == "twilio_api_errors"
    too_few = _ctx(sms.SLUG, tmp_path / "c", evidence=[ended_rate(0, recent_total=20), classes(provider_error=700)])
    assert sms.diagnose_sms(too_few).cause == "twilio_api_errors", "twenty messages cannot show an end"
    blocked = _ctx(sms.SLUG, tmp_path / "d", failing={"twilio_account": "auth_failed"},
                   evidence=[ended_rate(5), classes(auth=700)])
    assert sms.diagnose_sms(blocked).cause == "twilio_auth_failure", "a state a check observes now has not ended"


def test_a_rate_limit_fed_by_retries_is_amplification_not_a_provider_failure(tmp_path: Path) -> None:
    throttled = group("Throttling: Maximum sending rate exceeded.", 900, levels=6, channel="EMAIL")
    throttled = hrv.ErrorGroup(**{**vars(throttled), "cls": "ses_rate"})
    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.evidence.put(hrv.RETRY_PATTERNS, patterns(throttled, ratio=4, retried=900))
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("email", dlq_size=0, failed_jobs=10))
    d = hrv.diagnose_retries(ctx)
    assert d.cause == "retry_amplification" and "feeding a rate limit" in d.explanation
    outage = hrv.ErrorGroup(**{**vars(group("Service unavailable", 900, levels=6)), "cls": "provider_error"})
    ctx2 = _ctx(hrv.SLUG, tmp_path / "b")
    ctx2.evidence.put(hrv.RETRY_PATTERNS, patterns(outage, ratio=4, retried=900))
    ctx2.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", dlq_size=0, failed_jobs=10))
    assert hrv.diagnose_retries(ctx2).cause == "systemic_provider_failure"


def test_one_permanent_error_at_every_retry_level_is_not_a_provider_failure(tmp_path: Path) -> None:
    """Carrier-filtered content failing at every level says the messages are wrong, not that the provider is down:
    no pause of the whole queue for it."""
    filtered = hrv.ErrorGroup(**{**vars(group("Message filtered", 600, levels=3)), "cls": "carrier_filtered"})
    ctx = _ctx(hrv.SLUG, tmp_path)
    ctx.evidence.put(hrv.RETRY_PATTERNS, patterns(filtered))
    ctx.evidence.put(hrv.BULL_STATE, hrv.BullState("sms", dlq_size=0, failed_jobs=10))
    d = hrv.diagnose_retries(ctx)
    assert d.cause != "systemic_provider_failure"
    assert hrv.PauseQueue(ctx).needed()[0] is False


def test_a_provider_state_whose_cause_did_not_hold_is_still_shown(tmp_path: Path) -> None:
    ctx = _ctx(sms.SLUG, tmp_path, evidence=[ELEVATED, classes(invalid_number=800)])
    ctx.findings["status_page"] = PAGE_OUTAGE
    d = sms.diagnose_sms(ctx)
    assert d.cause == "invalid_numbers"
    assert any("observed, but not what the failures show (not twilio_outage)" in n for n in d.notes), d.notes

"""Runbook 1, Email Provider Failure: the checks, diagnosis rules and mitigations the notebook calls.

Each function takes the run context, does one thing the runbook says, records its result as a
finding and returns something that displays well in a notebook (a CheckResult, a Figure, a
Diagnosis, a GateOutcome).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from runbooklib import charts, queries
from runbooklib.actions import Action, Plan
from runbooklib.checks import CheckResult, timed
from runbooklib.context import RunContext
from runbooklib.diagnosis import Diagnosis, Match, Rule, diagnose
from runbooklib.errorcodes import classify_email_error
from runbooklib.errors import ConfigError, MitigationFailed, PlatformAPIError, ProviderError, QueryError
from runbooklib.params import CommonParams, is_email, param, parse_duration
from runbooklib.providers import ses as ses_provider
from runbooklib.providers import smtp as smtp_provider
from runbooklib.redact import REDACTOR
from runbooklib.report import Checklist

SLUG = "email_provider_failure"
TITLE = "Email Provider Failure"
CHANNEL = "EMAIL"
QUEUE = "email"
DEFAULT_SCENARIO = "ses_daily_quota_exceeded"
DEMO_PARAMETERS = {"recovery_interval": "1s"}
"""Defaults `runbook demo` uses unless given: the sandbox answers at once, so sample faster."""
ACTIONS = ("switch_email_provider", "send_test_email")
CAUSES = {
    "healthy": "Failure rate at baseline and every provider check passed.",
    "smtp_unreachable": "The primary SMTP server cannot be reached (refused, DNS failure, timeout, no greeting).",
    "smtp_tls_failure": "STARTTLS is missing or the TLS handshake / certificate verification fails.",
    "smtp_auth_failure": "The SMTP server rejects the configured credentials (535).",
    "ses_daily_quota_exceeded": "SES's 24-hour sending quota is used up (Throttling: Daily message quota exceeded).",
    "ses_rate_throttled": "Sends exceed SES's maximum send rate (Throttling: Maximum sending rate exceeded).",
    "ses_sending_disabled": "Sending is paused for the SES account (by us or by AWS enforcement).",
    "ses_permission_denied": "SES calls are denied: the IAM identity lacks permission or its keys are invalid.",
    "tenant_specific": "One tenant's email is failing while the others are fine.",
    "unknown": "Failures are elevated but no known cause matched the evidence.",
}
SWITCHABLE = {"smtp_unreachable", "smtp_tls_failure", "smtp_auth_failure", "ses_daily_quota_exceeded",
              "ses_rate_throttled", "ses_sending_disabled", "ses_permission_denied"}
MIN_FAILURES = 10
"""Fewer failures than this in the window is never an incident by itself."""
DOMINANT_SHARE = 0.5
TENANT_SHARE = 0.8
MAX_TENANTS_PER_SWITCH = 25
TOP_ERRORS = 10
TOP_TENANTS = 15
SAMPLE_ROWS = 20
RECOVERY_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class Params(CommonParams):
    """Parameters of the Email Provider Failure notebook (common ones first)."""

    backup_provider: str = param("smtp_backup", "channel provider to switch to, e.g. smtp_backup")
    test_recipient: str = param("", "address for the gated recovery test email (empty: no test email)")
    recovery_samples: int = param(3, "queue-depth samples taken in recovery confirmation (1-60)", declared="int")
    recovery_interval: str = param("5s", "time between recovery samples, e.g. 5s, 1m")

    @staticmethod
    def check_values(values: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        if values["test_recipient"] and not is_email(values["test_recipient"]):
            problems.append(("test_recipient", "must be one email address, e.g. oncall@lineup.app"))
        if not 1 <= int(values["recovery_samples"]) <= 60:
            problems.append(("recovery_samples", f"must be between 1 and 60, got {values['recovery_samples']}"))
        try:
            if parse_duration(str(values["recovery_interval"])) > timedelta(minutes=10):
                problems.append(("recovery_interval", "must be at most 10m"))
        except ValueError as exc:
            problems.append(("recovery_interval", str(exc)))
        if not str(values["backup_provider"]).strip():
            problems.append(("backup_provider", "must name a provider, e.g. smtp_backup"))
        return problems


def _params(ctx: RunContext) -> Params:
    assert isinstance(ctx.params, Params)
    return ctx.params


def _bucket_seconds(ctx: RunContext) -> int:
    """About 60 buckets over the window, never below one minute."""
    return max(60, int(ctx.params.window_delta.total_seconds() // 60) // 60 * 60)


def _db_error(ctx: RunContext, name: str, title: str, exc: Exception) -> CheckResult:
    status = "error" if isinstance(exc, ConfigError) else "fail"
    return ctx.record(CheckResult(name, title, status, str(exc), classification="database"))


# -- Symptoms ---------------------------------------------------------------------------------------
def check_email_queue(ctx: RunContext) -> CheckResult:
    """The `email` entry of GET /api/v1/system-metrics/queues."""
    name, title = "email_queue", "Email queue (Lineup metrics API)"
    with timed() as ms:
        try:
            entry = ctx.api.queue(QUEUE)
        except (PlatformAPIError, ConfigError) as exc:
            cls = "config" if isinstance(exc, ConfigError) else "platform_api"
            return ctx.record(CheckResult(name, title, "error" if cls == "config" else "fail", str(exc),
                                          classification=cls, duration_ms=ms()))
    if entry is None:
        return ctx.record(CheckResult(name, title, "warn", "the metrics API does not list an 'email' queue",
                                      duration_ms=ms()))
    facts = {k: v for k, v in entry.items() if k != "queue"}
    waiting = int(entry.get("waiting", 0) or 0)
    failed = int(entry.get("failed", 0) or 0)
    ctx.facts["queue_waiting"] = waiting
    status = "warn" if waiting >= 1000 or failed >= 100 else "ok"
    summary = f"{waiting:,} waiting, {int(entry.get('active', 0) or 0):,} active, {failed:,} failed"
    if entry.get("paused"):
        summary += "; queue is PAUSED"
        status = "warn"
    return ctx.record(CheckResult(name, title, status, summary, facts=facts, duration_ms=ms()))


def _rate(row: dict[str, Any]) -> float:
    total = int(row.get("total") or 0)
    return (int(row.get("failed") or 0) / total) if total else 0.0


def elevated(rate: float, baseline: float, failed: int) -> bool:
    """A failure rate counts as elevated at twice the baseline and at least 5 points above it."""
    return failed >= MIN_FAILURES and rate >= max(2 * baseline, baseline + 0.05)


def check_failure_rate(ctx: RunContext) -> CheckResult:
    """Failure rate in the window against the baseline window before it."""
    name, title = "failure_rate", "Email failure rate vs baseline"
    stmt = queries.failure_totals(by_tenant=ctx.by_tenant)
    with timed() as ms:
        try:
            window = ctx.db.one(stmt, ctx.window_params(channel=CHANNEL))
            base = ctx.db.one(stmt, ctx.baseline_params(channel=CHANNEL))
        except (QueryError, ConfigError) as exc:
            return _db_error(ctx, name, title, exc)
    rate, base_rate = _rate(window), _rate(base)
    failed = int(window.get("failed") or 0)
    ctx.facts.update(window_total=int(window.get("total") or 0), window_failed=failed, failure_rate=rate,
                     baseline_rate=base_rate, baseline_total=int(base.get("total") or 0))
    facts = {"window_total": int(window.get("total") or 0), "window_failed": failed, "window_rate": round(rate, 4),
             "baseline_total": int(base.get("total") or 0), "baseline_failed": int(base.get("failed") or 0),
             "baseline_rate": round(base_rate, 4), "bounced": int(window.get("bounced") or 0),
             "failures_per_minute": round(failed / (ctx.params.window_delta.total_seconds() / 60), 2),
             "retrying": int(window.get("retrying") or 0)}
    text = (f"{failed:,} of {int(window.get('total') or 0):,} failed in the last {ctx.params.window} "
            f"({rate:.1%}) vs {base_rate:.1%} in the {ctx.params.baseline} before")
    if elevated(rate, base_rate, failed):
        ctx.facts["incident_present"] = True
        return ctx.record(CheckResult(name, title, "fail", "elevated: " + text, classification="elevated",
                                      facts=facts, duration_ms=ms()))
    ctx.facts["incident_present"] = False
    status = "warn" if failed >= MIN_FAILURES and rate > base_rate + 0.02 else "ok"
    return ctx.record(CheckResult(name, title, status, text, facts=facts, duration_ms=ms()))


# -- Checks: message_logs ---------------------------------------------------------------------------
def check_status_counts(ctx: RunContext) -> CheckResult:
    """The spec's query: EMAIL messages by status in the window, with one sample error each."""
    name, title = "status_counts", "Email messages by status"
    with timed() as ms:
        try:
            frame = ctx.db.fetch(queries.status_counts(by_tenant=ctx.by_tenant), ctx.window_params(channel=CHANNEL))
        except (QueryError, ConfigError) as exc:
            return _db_error(ctx, name, title, exc)
    counts = dict(zip(frame["status"], frame["count"], strict=True)) if not frame.empty else {}
    summary = ", ".join(f"{s} {int(c):,}" for s, c in counts.items()) or "no email messages in the window"
    return ctx.record(CheckResult(name, title, "ok" if counts else "warn", summary,
                                  facts={"by_status": {k: int(v) for k, v in counts.items()}}, table=frame,
                                  duration_ms=ms()))


def plot_failures_over_time(ctx: RunContext) -> Figure:
    """Failed, bounced and retrying messages per time bucket over the window."""
    size = _bucket_seconds(ctx)
    try:
        frame = ctx.db.fetch(queries.status_over_time(size, by_tenant=ctx.by_tenant), ctx.window_params(channel=CHANNEL))
    except (QueryError, ConfigError) as exc:
        frame = pd.DataFrame(columns=["bucket", "status", "count"])
        ctx.record(CheckResult("failures_over_time", "Failures over time", "fail", str(exc), classification="database"))
    failed = frame[frame["status"] == "FAILED"]["count"] if not frame.empty else pd.Series(dtype=int)
    ctx.facts["peak_failures_per_minute"] = float(failed.max() / (size / 60)) if len(failed) else 0.0
    return charts.plot_status_over_time(frame, size, title=f"Email failures over the last {ctx.params.window} (UTC)")


def check_top_errors(ctx: RunContext) -> CheckResult:
    """The most common errors, each with its class (quota, rate, TLS, auth, connect, rejected, ...)."""
    name, title = "top_errors", "Top email errors"
    with timed() as ms:
        try:
            frame = ctx.db.fetch(queries.top_errors(by_tenant=ctx.by_tenant),
                                 ctx.window_params(channel=CHANNEL, limit=TOP_ERRORS))
        except (QueryError, ConfigError) as exc:
            return _db_error(ctx, name, title, exc)
    if frame.empty:
        ctx.facts["dominant_error_class"] = None
        return ctx.record(CheckResult(name, title, "ok", "no errors recorded in the window", table=frame,
                                      duration_ms=ms()))
    frame["class"] = [classify_email_error(e, c) for e, c in zip(frame["error"], frame["error_code"], strict=True)]
    by_class = frame.groupby("class")["count"].sum().sort_values(ascending=False)
    total = int(frame["count"].sum())
    top_class, top_count = str(by_class.index[0]), int(by_class.iloc[0])
    share = top_count / total if total else 0.0
    ctx.facts.update(dominant_error_class=top_class, dominant_error_share=share, error_total=total)
    facts = {"classes": {str(k): int(v) for k, v in by_class.items()}, "dominant_class": top_class,
             "dominant_share": round(share, 3)}
    summary = f"{total:,} errors; most common class {top_class} ({share:.0%}): {REDACTOR.text(str(frame['error'].iloc[0]))}"
    ctx.state["top_errors_frame"] = frame.head(TOP_ERRORS)
    return ctx.record(CheckResult(name, title, "warn" if total >= MIN_FAILURES else "ok", summary, facts=facts,
                                  table=frame[["error", "error_code", "class", "count", "tenants", "last_seen"]],
                                  duration_ms=ms()))


def plot_top_errors(ctx: RunContext) -> Figure:
    frame = ctx.state.get("top_errors_frame")
    return charts.plot_top_errors(frame if frame is not None else pd.DataFrame(columns=["error", "count"]),
                                  title="Top email errors in the window")


def check_tenant_split(ctx: RunContext) -> CheckResult:
    """Is it one tenant or all? Failures per tenant, most first."""
    name, title = "tenant_split", "Failures by tenant"
    with timed() as ms:
        try:
            frame = ctx.db.fetch(queries.tenant_split(), ctx.window_params(by_tenant=False, channel=CHANNEL,
                                                                           limit=TOP_TENANTS))
            counts = ctx.db.one(queries.tenant_count(), ctx.window_params(by_tenant=False, channel=CHANNEL))
        except (QueryError, ConfigError) as exc:
            return _db_error(ctx, name, title, exc)
    frame["rate"] = (frame["failed"] / frame["total"]).round(4) if not frame.empty else []
    ctx.state["tenant_frame"] = frame
    tenants, failing = int(counts.get("tenants") or 0), int(counts.get("failing_tenants") or 0)
    total_failed, total = int(counts.get("failed") or 0), int(counts.get("total") or 0)
    facts: dict[str, Any] = {"tenants": tenants, "failing_tenants": failing}
    if frame.empty or total_failed == 0:
        return ctx.record(CheckResult(name, title, "ok", f"{tenants} tenants, none failing", facts=facts,
                                      table=frame, duration_ms=ms()))
    top = frame.iloc[0]
    share = int(top["failed"]) / total_failed
    rest_total = total - int(top["total"])
    rest_failed = total_failed - int(top["failed"])
    rest_rate = rest_failed / rest_total if rest_total else 0.0
    facts.update(top_tenant=str(top["tenant_id"]), top_tenant_share=round(share, 3),
                 top_tenant_rate=round(float(top["rate"]), 4), rest_rate=round(rest_rate, 4))
    ctx.facts.update(top_tenant=str(top["tenant_id"]), top_tenant_share=share, top_tenant_rate=float(top["rate"]),
                     rest_rate=rest_rate, tenants=tenants, failing_tenants=failing)
    summary = (f"{failing} of {tenants} tenants have failures; {top['tenant_id']} has {share:.0%} of them "
               f"({float(top['rate']):.0%} of its mail fails; the rest {rest_rate:.1%})")
    return ctx.record(CheckResult(name, title, "ok", summary, facts=facts, table=frame, duration_ms=ms()))


def plot_tenant_split(ctx: RunContext) -> Figure:
    frame = ctx.state.get("tenant_frame")
    return charts.plot_tenant_split(frame if frame is not None else pd.DataFrame(columns=["tenant_id", "total", "failed"]),
                                    title="Email failures by tenant (window)")


def failure_sample(ctx: RunContext) -> pd.DataFrame:
    """A capped sample of the newest failures (recipients masked)."""
    try:
        frame = ctx.db.fetch(queries.failure_sample(by_tenant=ctx.by_tenant),
                             ctx.window_params(channel=CHANNEL, limit=SAMPLE_ROWS))
    except (QueryError, ConfigError) as exc:
        return pd.DataFrame({"error": [str(exc)]})
    return frame.map(lambda v: REDACTOR.text(v) if isinstance(v, str) else v)


# -- Checks: providers ------------------------------------------------------------------------------
def check_smtp_primary(ctx: RunContext) -> CheckResult:
    """Connect, EHLO, STARTTLS (verified), AUTH, NOOP against the primary SMTP server."""
    return ctx.record(smtp_provider.check_smtp("smtp_primary", ctx.profile.smtp, timeout=ctx.profile.connect_timeout,
                                               label="SMTP primary"))


def check_smtp_backup(ctx: RunContext) -> CheckResult:
    """The same check against the backup SMTP server (the switch's preflight uses it too)."""
    return ctx.record(smtp_provider.check_smtp("smtp_backup", ctx.profile.smtp_backup,
                                               timeout=ctx.profile.connect_timeout, label="SMTP backup"))


def _ses_clients(ctx: RunContext) -> tuple[Any, Any] | CheckResult:
    if "ses_clients" not in ctx.state:
        if ctx.profile.ses is None:
            return CheckResult("ses", "SES", "skipped", "SES is not configured in this environment")
        try:
            ctx.state["ses_clients"] = ses_provider.clients(ctx.profile.ses, connect_timeout=ctx.profile.connect_timeout,
                                                             read_timeout=ctx.profile.read_timeout)
        except ConfigError as exc:
            return CheckResult("ses", "SES", "error", str(exc), classification="config")
    clients: tuple[Any, Any] = ctx.state["ses_clients"]
    return clients


def _ses_check(ctx: RunContext, name: str, title: str, run: Any) -> CheckResult:
    clients = _ses_clients(ctx)
    if isinstance(clients, CheckResult):
        return ctx.record(CheckResult(name, title, clients.status, clients.summary, clients.classification))
    return ctx.record(run(*clients))


def check_ses_quota(ctx: RunContext) -> CheckResult:
    """GetSendQuota: 24-hour quota used and maximum send rate."""
    return _ses_check(ctx, "ses_quota", "SES sending quota", lambda ses, v2: ses_provider.check_quota(ses))


def check_ses_account(ctx: RunContext) -> CheckResult:
    """Account sending enabled (v1) and enforcement status (v2 GetAccount)."""
    return _ses_check(ctx, "ses_account", "SES account status", lambda ses, v2: ses_provider.check_account(ses, v2))


def check_ses_reputation(ctx: RunContext) -> CheckResult:
    """Bounce and complaint rates from GetSendStatistics."""
    return _ses_check(ctx, "ses_reputation", "SES bounce and complaint rates",
                      lambda ses, v2: ses_provider.check_reputation(ses))


# -- Diagnosis --------------------------------------------------------------------------------------
def _finding(ctx: RunContext, name: str) -> CheckResult | None:
    return ctx.findings.get(name)


def _class_share(ctx: RunContext, cls: str) -> float:
    return float(ctx.facts.get("dominant_error_share") or 0.0) if ctx.facts.get("dominant_error_class") == cls else 0.0


def _log_evidence(ctx: RunContext) -> list[str]:
    out = []
    rate = _finding(ctx, "failure_rate")
    if rate is not None:
        out.append(f"message_logs: {rate.summary}")
    errors = _finding(ctx, "top_errors")
    if errors is not None and ctx.facts.get("dominant_error_class"):
        out.append(f"message_logs: {errors.summary}")
    return out


def _from_check(ctx: RunContext, names: tuple[str, ...], classifications: tuple[str, ...], lead: str) -> Match | None:
    """Holds when one of the named checks failed with one of the classifications."""
    for name in names:
        f = _finding(ctx, name)
        if f is not None and f.status == "fail" and f.classification in classifications:
            return Match(f"{lead}: {f.summary}", [f"{f.title}: {f.summary}", *_log_evidence(ctx)])
    return None


def _from_logs(ctx: RunContext, error_class: str, explanation: str) -> Match | None:
    """Holds when failures are elevated and one error class dominates them in message_logs."""
    if ctx.facts.get("incident_present") and _class_share(ctx, error_class) >= DOMINANT_SHARE:
        return Match(explanation, _log_evidence(ctx))
    return None


SES_CHECKS = ("ses_quota", "ses_account", "ses_reputation")


def _ses_rate(ctx: RunContext) -> Match | None:
    if not ctx.facts.get("incident_present") or _class_share(ctx, "ses_rate") < DOMINANT_SHARE:
        return None
    evidence = _log_evidence(ctx)
    quota = _finding(ctx, "ses_quota")
    peak = float(ctx.facts.get("peak_failures_per_minute") or 0.0)
    if quota is not None and quota.facts.get("max_send_rate"):
        evidence.append(f"SES max send rate is {quota.facts['max_send_rate']:g}/s")
    if peak:
        evidence.append(f"peak failures {peak:,.0f}/min")
    return Match("sends exceed the SES maximum send rate: most failures are 'Maximum sending rate exceeded'", evidence)


def _tenant(ctx: RunContext) -> Match | None:
    share = float(ctx.facts.get("top_tenant_share") or 0.0)
    top_rate = float(ctx.facts.get("top_tenant_rate") or 0.0)
    rest_rate = float(ctx.facts.get("rest_rate") or 0.0)
    base = float(ctx.facts.get("baseline_rate") or 0.0)
    if (int(ctx.facts.get("tenants") or 0) >= 2 and int(ctx.facts.get("window_failed") or 0) >= MIN_FAILURES
            and share >= TENANT_SHARE and top_rate >= 0.3 and rest_rate < max(2 * base, base + 0.05)):
        tenant = ctx.facts["top_tenant"]
        split = _finding(ctx, "tenant_split")
        evidence = [f"{split.title}: {split.summary}"] if split else []
        errors = _finding(ctx, "top_errors")
        if errors is not None:
            evidence.append(f"message_logs: {errors.summary}")
        return Match(f"tenant {tenant} has {share:.0%} of the failures ({top_rate:.0%} of its mail) while the "
                     f"other tenants fail at {rest_rate:.1%}", evidence)
    return None


def diagnose_email(ctx: RunContext) -> Diagnosis:
    """Name one cause from the findings (rules in priority order; others that hold are listed)."""
    rules = [
        Rule("ses_permission_denied", lambda: (
            _from_check(ctx, SES_CHECKS, ("permission_denied", "credentials_invalid"), "SES refuses our calls")
            or _from_logs(ctx, "ses_permission", "most failures in message_logs are SES AccessDenied errors"))),
        Rule("ses_sending_disabled", lambda: (
            _from_check(ctx, ("ses_account",), ("sending_disabled",), "SES sending is paused for the account")
            or _from_logs(ctx, "ses_sending_paused", "most failures in message_logs say SES sending is paused"))),
        Rule("ses_daily_quota_exceeded", lambda: (
            _from_check(ctx, ("ses_quota",), ("quota_exhausted",), "the SES 24-hour quota is used up")
            or _from_logs(ctx, "ses_daily_quota", "most failures in message_logs are 'Daily message quota exceeded'"))),
        Rule("smtp_unreachable", lambda: _from_check(ctx, ("smtp_primary",), ("unreachable",),
                                                      "the primary SMTP server cannot be reached")),
        Rule("smtp_tls_failure", lambda: _from_check(ctx, ("smtp_primary",), ("tls",), "the primary SMTP server fails TLS")),
        Rule("smtp_auth_failure", lambda: _from_check(ctx, ("smtp_primary",), ("auth_rejected",),
                                                       "the primary SMTP server rejects our credentials")),
        Rule("ses_rate_throttled", lambda: _ses_rate(ctx)),
        Rule("tenant_specific", lambda: _tenant(ctx)),
    ]
    primary = _finding(ctx, "smtp_primary")
    provider_trouble = primary is not None and primary.failed
    evidence = _log_evidence(ctx)
    if primary is not None and primary.failed:
        evidence.append(f"{primary.title}: {primary.summary}")
    result = diagnose(SLUG, rules, CAUSES, incident_present=bool(ctx.facts.get("incident_present")) or provider_trouble,
                      incident_evidence=evidence)
    ctx.diagnosis = result
    ctx.write_summary()
    return result


# -- Mitigation -------------------------------------------------------------------------------------
class SwitchEmailProvider(Action):
    """Switch the affected tenants' email channel to the backup provider, after a preflight of the backup."""

    name = "switch_email_provider"
    title = "Switch email to the backup provider"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.backup = _params(ctx).backup_provider

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is None:
            return False, "no diagnosis yet: run the Diagnosis cell first"
        if d.cause not in SWITCHABLE:
            return False, f"diagnosis is {d.cause}: switching provider would not help"
        return True, f"diagnosis {d.cause}: the primary provider cannot send"

    def _tenants(self) -> list[str]:
        if self.ctx.params.tenant_id:
            return [self.ctx.params.tenant_id]
        frame = self.ctx.state.get("tenant_frame")
        if frame is None or frame.empty:
            return []
        return [str(t) for t in frame[frame["failed"] > 0]["tenant_id"] if str(t) != "(none)"]

    def preflight(self) -> tuple[bool, str]:
        """Check that the backup provider works before sending any tenant's mail to it."""
        kind = self.ctx.profile.provider_kind(self.backup)
        if kind is None:
            return False, (f"backup provider {self.backup!r} is not configured in environment "
                           f"{self.ctx.profile.name!r} (providers: {', '.join(self.ctx.profile.providers)})")
        if kind in ("smtp", "smtp_backup"):
            endpoint = self.ctx.profile.smtp if kind == "smtp" else self.ctx.profile.smtp_backup
            check = smtp_provider.check_smtp(f"preflight_{kind}", endpoint, timeout=self.ctx.profile.connect_timeout,
                                             label=f"Preflight {self.backup}")
        else:
            clients = _ses_clients(self.ctx)
            if isinstance(clients, CheckResult):
                return False, f"preflight of {self.backup}: {clients.summary}"
            check = ses_provider.check_account(*clients, name="preflight_ses")
            if check.ok:
                check = ses_provider.check_quota(clients[0], name="preflight_ses")
        self.ctx.record(check)
        if check.status not in ("ok", "warn"):
            return False, f"preflight of {self.backup} failed: {check.summary}"
        return True, f"preflight of {self.backup} passed: {check.summary}"

    def plan(self) -> Plan:
        ok, preflight = self.preflight()
        tenants = self._tenants()
        details: dict[str, Any] = {"backup_provider": self.backup, "preflight": preflight}
        if not ok:
            return Plan(self.name, f"switch to {self.backup}", blocked=preflight, details=details)
        if not tenants:
            return Plan(self.name, "no tenant to switch", blocked="no tenant has failures in the window; "
                        "give tenant_id to switch one explicitly", details=details)
        if len(tenants) > MAX_TENANTS_PER_SWITCH:
            return Plan(self.name, f"{len(tenants)} tenants affected", details=details,
                        blocked=(f"{len(tenants)} tenants are affected, more than {MAX_TENANTS_PER_SWITCH} per run; "
                                 "run per tenant (tenant_id) or use the platform's global provider switch"))
        steps, skipped = [], []
        for tenant in tenants:
            current = str(self.ctx.api.get_channel("email", tenant)["provider"])
            if current == self.backup:
                skipped.append(tenant)
                continue
            steps.append({"call": "PATCH /api/v1/communication/channels/email", "tenant_id": tenant,
                          "from": current, "to": self.backup})
        details["already_on_backup"] = skipped
        if not steps:
            return Plan(self.name, "nothing to change", blocked=f"every affected tenant is already on {self.backup}",
                        details=details)
        return Plan(self.name, f"switch {len(steps)} tenant(s) from their current provider to {self.backup}",
                    steps=steps, details=details)

    def apply(self, plan: Plan) -> dict[str, Any]:
        started = datetime.now(UTC)  # mail created from here on goes through the backup
        done: list[dict[str, Any]] = []
        for step in plan.steps:
            try:
                self.ctx.api.set_channel_provider("email", step["tenant_id"], step["to"])
            except PlatformAPIError as exc:
                rolled_back = self._put_back(done)
                raise MitigationFailed(f"switched {len(done)} of {len(plan.steps)} tenants, then {exc}; "
                                       f"rolled back {rolled_back} of {len(done)}") from exc
            done.append(step)
        self.ctx.state["switched_at"] = started
        return {"switched": [s["tenant_id"] for s in done], "to": self.backup}

    def _put_back(self, steps: list[dict[str, Any]]) -> int:
        count = 0
        for step in reversed(steps):
            try:
                self.ctx.api.set_channel_provider("email", step["tenant_id"], step["from"])
                count += 1
            except PlatformAPIError:
                continue
        return count

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        wrong = []
        for step in plan.steps:
            now = self.ctx.api.get_channel("email", step["tenant_id"])["provider"]
            if now != step["to"]:
                wrong.append(f"{step['tenant_id']}={now}")
        if wrong:
            return False, "channel config did not change for " + ", ".join(wrong)
        return True, f"{len(plan.steps)} tenant(s) now send email through {self.backup}"

    @property
    def can_undo(self) -> bool:
        return True

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        restored = []
        for step in plan.steps:
            self.ctx.api.set_channel_provider("email", step["tenant_id"], step["from"])
            restored.append({"tenant_id": step["tenant_id"], "provider": step["from"]})
        wrong = [r for r in restored if self.ctx.api.get_channel("email", r["tenant_id"])["provider"] != r["provider"]]
        if wrong:
            raise MitigationFailed(f"undo did not take for {[w['tenant_id'] for w in wrong]}")
        self.ctx.state.pop("switched_at", None)
        return {"restored": restored}


def switch_to_backup(ctx: RunContext) -> SwitchEmailProvider:
    return SwitchEmailProvider(ctx)


class SendTestEmail(Action):
    """Send one test email through the provider the channel now uses."""

    name = "send_test_email"
    title = "Send a test email"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.to = _params(ctx).test_recipient

    def needed(self) -> tuple[bool, str]:
        if not self.to:
            return False, "no test_recipient given"
        return True, "recovery confirmation needs a test email that is accepted"

    def _provider(self) -> str:
        if self.ctx.state.get("switched_at"):
            return _params(self.ctx).backup_provider
        if self.ctx.params.tenant_id:
            return str(self.ctx.api.get_channel("email", self.ctx.params.tenant_id)["provider"])
        return "smtp" if self.ctx.profile.smtp is not None else "ses"

    def plan(self) -> Plan:
        provider = self._provider()
        kind = self.ctx.profile.provider_kind(provider)
        if kind is None:
            return Plan(self.name, "send a test email", blocked=f"provider {provider!r} is not configured here")
        if kind == "ses":
            ses = self.ctx.profile.ses
            target = f"SES API {ses.region if ses else '?'}"
        else:
            ep = self.ctx.profile.smtp if kind == "smtp" else self.ctx.profile.smtp_backup
            target = f"SMTP {ep.host}:{ep.port}" if ep else "SMTP (not configured)"
        subject = f"[{self.ctx.params.incident}] comms-runbooks test email"
        return Plan(self.name, f"send 1 email to {self.to} via {provider} ({target})",
                    steps=[{"send": "email", "provider": provider, "via": target, "to": self.to, "subject": subject}])

    def apply(self, plan: Plan) -> dict[str, Any]:
        step = plan.steps[0]
        kind = self.ctx.profile.provider_kind(step["provider"])
        body = (f"Test email from the {TITLE} runbook for incident {self.ctx.params.incident}, "
                f"sent {datetime.now(UTC).isoformat(timespec='seconds')} by {self.ctx.params.operator or 'unknown'}.")
        try:
            if kind == "ses":
                clients = _ses_clients(self.ctx)
                if isinstance(clients, CheckResult):
                    raise MitigationFailed(clients.summary)
                assert self.ctx.profile.ses is not None
                return ses_provider.send_email(clients[0], source=self.ctx.profile.ses.from_address, to=step["to"],
                                               subject=step["subject"], body=body)
            endpoint = self.ctx.profile.smtp if kind == "smtp" else self.ctx.profile.smtp_backup
            if endpoint is None:
                raise MitigationFailed(f"{step['provider']} has no SMTP endpoint configured")
            return smtp_provider.send_email(endpoint, to=step["to"], subject=step["subject"], body=body,
                                            timeout=self.ctx.profile.connect_timeout)
        except ProviderError as exc:
            raise MitigationFailed(f"test email not accepted: {exc}") from exc

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        if result.get("message_id") or self.to in result.get("accepted", []):
            return True, f"accepted by {plan.steps[0]['provider']}"
        return False, f"not accepted: {result}"


def send_test_email(ctx: RunContext) -> SendTestEmail:
    return SendTestEmail(ctx)


# -- Recovery confirmation --------------------------------------------------------------------------
def check_queue_trend(ctx: RunContext) -> CheckResult:
    """Sample the email queue depth a few times: is the backlog draining?"""
    name, title = "queue_trend", "Email queue depth trend"
    p = _params(ctx)
    interval = parse_duration(p.recovery_interval).total_seconds()
    samples: list[tuple[datetime, int]] = []
    with timed() as ms:
        for i in range(p.recovery_samples):
            if i:
                time.sleep(interval)
            try:
                entry = ctx.api.queue(QUEUE) or {}
            except (PlatformAPIError, ConfigError) as exc:
                return ctx.record(CheckResult(name, title, "fail", f"sample {i + 1}: {exc}", classification="platform_api",
                                              duration_ms=ms()))
            samples.append((datetime.now(UTC), int(entry.get("waiting", 0) or 0) + int(entry.get("delayed", 0) or 0)))
    ctx.state["queue_samples"] = samples
    depths = [d for _, d in samples]
    facts = {"samples": depths, "interval_seconds": interval}
    if len(depths) < 2:
        return ctx.record(CheckResult(name, title, "warn", f"one sample only: {depths[0]:,} waiting", facts=facts,
                                      duration_ms=ms()))
    change = depths[-1] - depths[0]
    if depths[-1] < 10 or change < 0:
        return ctx.record(CheckResult(name, title, "ok", f"backlog draining: {depths[0]:,} → {depths[-1]:,}",
                                      facts=facts, duration_ms=ms()))
    status = "warn" if change == 0 else "fail"
    return ctx.record(CheckResult(name, title, status, f"backlog not draining: {depths[0]:,} → {depths[-1]:,}",
                                  classification="backlog", facts=facts, duration_ms=ms()))


def plot_queue_trend(ctx: RunContext) -> Figure:
    samples = ctx.state.get("queue_samples") or []
    return charts.plot_samples([d for _, d in samples], [t for t, _ in samples],
                               title="Email queue backlog (waiting + delayed)", ylabel="jobs")


def check_recovery(ctx: RunContext) -> CheckResult:
    """Failure rate of mail created since the switch (or in the last 10 minutes) against the baseline."""
    name, title = "recovery_failure_rate", "Failure rate since mitigation vs baseline"
    since = ctx.state.get("switched_at") or datetime.now(UTC) - RECOVERY_WINDOW
    label = "since the switch" if ctx.state.get("switched_at") else "in the last 10 minutes"
    try:
        row = ctx.db.one(queries.failure_totals(by_tenant=ctx.by_tenant),
                         ctx.window_params(channel=CHANNEL, since=since, until=datetime.now(UTC) + timedelta(seconds=1)))
    except (QueryError, ConfigError) as exc:
        return _db_error(ctx, name, title, exc)
    rate, base = _rate(row), float(ctx.facts.get("baseline_rate") or 0.0)
    total, failed = int(row.get("total") or 0), int(row.get("failed") or 0)
    facts = {"since": since.isoformat(timespec="seconds"), "total": total, "failed": failed, "rate": round(rate, 4),
             "baseline_rate": round(base, 4)}
    if total == 0:
        return ctx.record(CheckResult(name, title, "warn", f"no email created {label} yet", facts=facts))
    text = f"{failed:,} of {total:,} failed {label} ({rate:.1%}) vs baseline {base:.1%}"
    if elevated(rate, base, failed) or (failed >= MIN_FAILURES and rate > base + 0.02):
        return ctx.record(CheckResult(name, title, "fail", "not recovered: " + text, classification="not_recovered",
                                      facts=facts))
    return ctx.record(CheckResult(name, title, "ok", "back to normal: " + text, facts=facts))


# -- Post-incident ----------------------------------------------------------------------------------
def post_incident(ctx: RunContext) -> Checklist:
    """The spec's checklist, filled in where the data answers it."""
    d = ctx.diagnosis
    why = f"{d.cause}: {d.explanation}" if d else "no diagnosis was made in this run"
    backup = ctx.findings.get("smtp_backup")
    if ctx.profile.smtp_backup is None:
        backup_answer = "no backup SMTP provider is configured in this environment — add one"
    elif backup is not None:
        backup_answer = f"backup {ctx.profile.smtp_backup.host} is configured; its check: {backup.status} — {backup.summary}"
    else:
        backup_answer = f"backup {ctx.profile.smtp_backup.host} is configured (not checked in this run)"
    rep = ctx.findings.get("ses_reputation")
    rates = f"{rep.status}: {rep.summary}" if rep is not None else "SES reputation was not checked in this run"
    bounced = ctx.findings.get("failure_rate")
    if bounced is not None and "bounced" in bounced.facts:
        rates += f"; {bounced.facts['bounced']:,} messages BOUNCED in the window"
    checklist = Checklist("Post-incident", [
        ("Review why provider failed", why, d is not None and not d.healthy),
        ("Consider adding backup provider", backup_answer,
         ctx.profile.smtp_backup is not None and backup is not None and backup.ok),
        ("Check bounce/complaint rates", rates, rep is not None and rep.ok),
    ])
    ctx.extra["post_incident"] = checklist.to_json()
    ctx.write_summary()
    return checklist

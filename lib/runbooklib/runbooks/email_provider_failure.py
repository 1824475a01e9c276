"""Runbook 1, Email Provider Failure: the checks, diagnosis rules and mitigations the notebook calls.

Each function takes the run context, does one thing the runbook says, records its result as a
finding and returns something that displays well in a notebook (a CheckResult, a Figure, a
Diagnosis, a GateOutcome).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbooklib import channels, endpoints
from runbooklib.actions import Plan
from runbooklib.actions.bases import SendTestMessage, TenantChannelChange
from runbooklib.catalog import Runbook
from runbooklib.checklist import Checklist
from runbooklib.context import RunContext
from runbooklib.deadline import Dependency
from runbooklib.diagnosis import Diagnosis, Match, Needed, Rule, diagnose
from runbooklib.endpoints.ses import SesEndpoint
from runbooklib.endpoints.smtp import SmtpEndpoint
from runbooklib.errors import ConfigError, MitigationFailed, ProviderError
from runbooklib.evidence import Key
from runbooklib.params import CommonParams, is_email, param
from runbooklib.providers import ses as ses_provider
from runbooklib.providers import smtp as smtp_provider
from runbooklib.results import CheckResult
from runbooklib.runbooks.channel_checks import ChannelChecks, guard_checks, sampling_needs
from runbooklib.runbooks.log_facts import PEAK
from runbooklib.runbooks.rules import (
    QUEUE_CHECK,
    Conclusions,
    State,
    ended,
    figures,
    finding,
    incident_present,
    log_evidence,
    queue_states,
    tenant_rule,
)

SLUG = "email_provider_failure"
TITLE = "Email Provider Failure"
CHANNEL = "EMAIL"
QUEUE = "email"
DEFAULT_SCENARIO = "ses_daily_quota_exceeded"
DEMO_PARAMETERS = {"recovery_interval": "1s"}
"""Defaults `runbook demo` uses unless given: the sandbox answers at once, so sample faster."""
ACTIONS = ("switch_email_provider", "send_test_email")
DEPENDENCIES = ("database", "platform_api", "smtp", "smtp_backup", "ses")
CAUSES = {
    "healthy": "Every check the verdict rests on ran and passed: failure rate at baseline, providers answer.",
    "smtp_unreachable": "The primary SMTP server cannot be reached (refused, DNS failure, timeout, no greeting).",
    "smtp_tls_failure": "STARTTLS is missing or the TLS handshake / certificate verification fails.",
    "smtp_auth_failure": "The SMTP server rejects the configured credentials (535).",
    "ses_daily_quota_exceeded": "SES's 24-hour sending quota is used up (Throttling: Daily message quota exceeded).",
    "ses_rate_throttled": "Sends exceed SES's maximum send rate (Throttling: Maximum sending rate exceeded).",
    "ses_sending_disabled": "Sending is paused for the SES account (by us or by AWS enforcement).",
    "ses_permission_denied": "SES calls are denied: the IAM identity lacks permission or its keys are invalid.",
    "smtp_throttled": "The SMTP relay defers our mail with 4xx replies (421 too many connections or messages, 451/454 "
                      "try again later): a rate or connection limit, or an overloaded relay.",
    "smtp_server_error": "The SMTP server refuses service with other replies (e.g. 554 at the greeting).",
    "ses_account_restricted": "The SES account is in the sandbox (verified recipients only) or on probation, and "
                              "sends are failing.",
    "ses_reputation_risk": "Bounce or complaint rates are at the level where AWS pauses the account.",
    "messages_rejected": "The provider rejects our messages (MessageRejected, 550/553/554): an unverified sender "
                         "identity or domain, or content refused.",
    "recipients_bouncing": "Mail bounces at the recipients' servers (user unknown, mailbox full): a bad recipient list.",
    "queue_paused": "The email queue is paused: messages wait and nothing is sent.",
    "tenant_specific": "One tenant's email is failing (or a few tenants') while the others are fine.",
    "unknown": "Failures are elevated but no known cause matched the evidence.",
}
SWITCHED_TO: Key[str] = Key("email_switched_to", "switch_email_provider (applied)",
                             "the provider the switch moved tenants to in this run")
"""The test email goes through it."""
SES_CLIENTS: Key[tuple[Any, Any]] = Key("ses_clients", "an SES check", "the SES clients (v1, v2)")
IMPLICATED = {"smtp_unreachable": "smtp", "smtp_tls_failure": "smtp", "smtp_auth_failure": "smtp",
              "smtp_server_error": "smtp", "smtp_throttled": "smtp", "ses_daily_quota_exceeded": "ses",
              "ses_rate_throttled": "ses", "ses_sending_disabled": "ses", "ses_permission_denied": "ses",
              "ses_account_restricted": "ses"}
"""The causes a switch to the backup can fix, each with the profile section of the provider that cannot send: only
tenants whose email goes through that provider are switched."""
SWITCHABLE = set(IMPLICATED)
MITIGATES = {"switch_email_provider": SWITCHABLE}
"""Action → the causes it can fix (docs/cause-codes.md says why each pairing holds and others do not)."""
MAX_TENANTS_PER_SWITCH = 25


@dataclass(frozen=True)
class Params(CommonParams):
    """Parameters of the Email Provider Failure notebook (common ones first)."""

    backup_provider: str = param("smtp_backup", "channel provider to switch to, e.g. smtp_backup")
    test_recipient: str = param("", "address for the gated recovery test email (empty: no test email)")

    @staticmethod
    def check_values(values: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        if values["test_recipient"] and not is_email(values["test_recipient"]):
            problems.append(("test_recipient", "must be one email address, e.g. oncall@lineup.app"))
        if not str(values["backup_provider"]).strip():
            problems.append(("backup_provider", "must name a provider, e.g. smtp_backup"))
        return problems


def _params(ctx: RunContext) -> Params:
    assert isinstance(ctx.params, Params)
    return ctx.params


CHECKS = ChannelChecks(channel=CHANNEL, queue=QUEUE, label="Email", noun="mail", classify=channels.get(CHANNEL).classify)
time_needs = sampling_needs


def needed(ctx: RunContext) -> list[Needed]:
    """`healthy` rests on message_logs, the email queue, and the checks of the providers this profile configures
    (the primary SMTP server; SES's quota and account). The backup and SES reputation inform, they are not needed."""
    out = CHECKS.needed(ctx)
    smtp = _smtp_endpoint(ctx, "smtp")
    if smtp is not None or _ses_endpoint(ctx) is None:
        where = f"{smtp.host} {smtp.port}" if smtp else "<host> 587"
        out.append(Needed("smtp_primary", "the primary SMTP server",
                          f"telnet {where} (then EHLO, STARTTLS, AUTH); or curl --url 'smtp://{where.replace(' ', ':')}'"))
    ses = _ses_endpoint(ctx)
    if ses is not None:
        region = ses.region
        out += [Needed("ses_quota", "the SES sending quota", f"aws ses get-send-quota --region {region}"),
                Needed("ses_account", "the SES account status",
                       f"aws ses get-account-sending-enabled --region {region}; aws sesv2 get-account --region {region}")]
    return out

# -- Symptoms ---------------------------------------------------------------------------------------
check_email_queue = CHECKS.check_queue
check_failure_rate = CHECKS.check_failure_rate

# -- Checks: message_logs ---------------------------------------------------------------------------
check_status_counts = CHECKS.check_status_counts
plot_failures_over_time = CHECKS.plot_failures_over_time
check_top_errors = CHECKS.check_top_errors
plot_top_errors = CHECKS.plot_top_errors
check_tenant_split = CHECKS.check_tenant_split
plot_tenant_split = CHECKS.plot_tenant_split
failure_sample = CHECKS.failure_sample


# -- Checks: providers ------------------------------------------------------------------------------
def _smtp_endpoint(ctx: RunContext, section: str) -> SmtpEndpoint | None:
    """The SMTP server configured in profile section `section` (`smtp` or `smtp_backup`)."""
    return ctx.profile.endpoint(SmtpEndpoint, section)


def _ses_endpoint(ctx: RunContext) -> SesEndpoint | None:
    return ctx.profile.endpoint(SesEndpoint, "ses")


def _smtp(ctx: RunContext, kind: str) -> Dependency | None:
    """The run's dependency on one SMTP endpoint (`smtp` or `smtp_backup`): a whole dialogue per deadline."""
    endpoint = _smtp_endpoint(ctx, kind)
    if endpoint is None:
        return None
    return ctx.dependency(kind, lambda seconds: smtp_provider.dependency(endpoint, seconds))


def check_smtp_primary(ctx: RunContext) -> CheckResult:
    """Connect, EHLO, STARTTLS (verified), AUTH, NOOP against the primary SMTP server."""
    return ctx.record(smtp_provider.check_smtp("smtp_primary", _smtp_endpoint(ctx, "smtp"), timeout=ctx.profile.connect_timeout,
                                               label="SMTP primary", within=_smtp(ctx, "smtp")))


def check_smtp_backup(ctx: RunContext) -> CheckResult:
    """The same check against the backup SMTP server (the switch's preflight uses it too)."""
    return ctx.record(smtp_provider.check_smtp("smtp_backup", _smtp_endpoint(ctx, "smtp_backup"),
                                               timeout=ctx.profile.connect_timeout, label="SMTP backup",
                                               within=_smtp(ctx, "smtp_backup")))


def _ses(ctx: RunContext) -> Dependency:
    return ctx.dependency("ses", ses_provider.dependency)


def _ses_clients(ctx: RunContext) -> tuple[Any, Any] | CheckResult:
    if not ctx.evidence.has(SES_CLIENTS):
        endpoint = _ses_endpoint(ctx)
        if endpoint is None:
            return CheckResult("ses", "SES", "skipped", "SES is not configured in this environment")
        try:
            ctx.evidence.put(SES_CLIENTS, ses_provider.clients(endpoint, connect_timeout=ctx.profile.connect_timeout,
                                                               read_timeout=ctx.profile.read_timeout))
        except ConfigError as exc:
            return CheckResult("ses", "SES", "error", str(exc), classification="config")
    return ctx.evidence.get(SES_CLIENTS)


def _ses_check(ctx: RunContext, name: str, title: str, run: Any) -> CheckResult:
    clients = _ses_clients(ctx)
    if isinstance(clients, CheckResult):
        return ctx.record(CheckResult(name, title, clients.status, clients.summary, clients.classification))
    return ctx.record(run(*clients))


def check_ses_quota(ctx: RunContext) -> CheckResult:
    """GetSendQuota: 24-hour quota used and maximum send rate."""
    return _ses_check(ctx, "ses_quota", "SES sending quota",
                      lambda ses, v2: ses_provider.check_quota(ses, within=_ses(ctx)))


def check_ses_account(ctx: RunContext) -> CheckResult:
    """Account sending enabled (v1) and enforcement status (v2 GetAccount)."""
    return _ses_check(ctx, "ses_account", "SES account status",
                      lambda ses, v2: ses_provider.check_account(ses, v2, within=_ses(ctx)))


def check_ses_reputation(ctx: RunContext) -> CheckResult:
    """Bounce and complaint rates from GetSendStatistics."""
    return _ses_check(ctx, "ses_reputation", "SES bounce and complaint rates",
                      lambda ses, v2: ses_provider.check_reputation(ses, within=_ses(ctx)))


@dataclass
class _SmtpRoute:
    """Mail sent through the SMTP server of one profile section."""

    ctx: RunContext
    section: str

    def target(self) -> str:
        ep = _smtp_endpoint(self.ctx, self.section)
        return f"SMTP {ep.host}:{ep.port}" if ep else "SMTP (not configured)"

    def preflight(self, label: str) -> CheckResult | str:
        return smtp_provider.check_smtp(f"preflight_{self.section}", _smtp_endpoint(self.ctx, self.section),
                                        timeout=self.ctx.profile.connect_timeout, label=label,
                                        within=_smtp(self.ctx, self.section))

    def send(self, provider: str, *, to: str, subject: str, body: str) -> dict[str, Any]:
        endpoint = _smtp_endpoint(self.ctx, self.section)
        if endpoint is None:
            raise MitigationFailed(f"{provider} has no SMTP endpoint configured")
        return smtp_provider.send_email(endpoint, to=to, subject=subject, body=body,
                                        timeout=self.ctx.profile.connect_timeout, within=_smtp(self.ctx, self.section))


@dataclass
class _SesRoute:
    """Mail sent through the SES API."""

    ctx: RunContext
    section: str

    def target(self) -> str:
        ses = _ses_endpoint(self.ctx)
        return f"SES API {ses.region if ses else '?'}"

    def preflight(self, label: str) -> CheckResult | str:
        clients = _ses_clients(self.ctx)
        if isinstance(clients, CheckResult):
            return clients.summary
        check = ses_provider.check_account(*clients, name="preflight_ses", within=_ses(self.ctx))
        if check.ok:
            check = ses_provider.check_quota(clients[0], name="preflight_ses", within=_ses(self.ctx))
        return check

    def send(self, provider: str, *, to: str, subject: str, body: str) -> dict[str, Any]:
        clients = _ses_clients(self.ctx)
        if isinstance(clients, CheckResult):
            raise MitigationFailed(clients.summary)
        ses = _ses_endpoint(self.ctx)
        assert ses is not None
        return ses_provider.send_email(clients[0], source=ses.from_address, to=to, subject=subject, body=body,
                                       within=_ses(self.ctx))


_ROUTES: dict[type, type[_SmtpRoute] | type[_SesRoute]] = {SmtpEndpoint: _SmtpRoute, SesEndpoint: _SesRoute}
"""How mail goes out through each kind of email endpoint (by the endpoint class its section holds)."""


def _route(ctx: RunContext, provider: str) -> _SmtpRoute | _SesRoute | None:
    """How mail for a platform email provider name goes out here, or None when the profile does not map it."""
    section = ctx.profile.provider_kind(provider)
    declared = endpoints.sections().get(section or "")
    if section is None or declared is None or declared.endpoint not in _ROUTES:
        return None
    return _ROUTES[declared.endpoint](ctx, section)


# -- Diagnosis --------------------------------------------------------------------------------------
SES_CHECKS = ("ses_quota", "ses_account", "ses_reputation")
_SES_DENIED = [State(c, k, "ses_permission_denied") for c in SES_CHECKS for k in ("permission_denied", "credentials_invalid")]
_BACKUP = "the backup relay: a switch to it would fail until it answers; not why mail fails now"
CONCLUSIONS = Conclusions(
    classes={"ses_daily_quota": "ses_daily_quota_exceeded", "ses_rate": "ses_rate_throttled",
             "ses_permission": "ses_permission_denied", "ses_sending_paused": "ses_sending_disabled",
             "smtp_deferred": "smtp_throttled", "smtp_tls": "smtp_tls_failure", "smtp_auth": "smtp_auth_failure",
             "smtp_connect": "smtp_unreachable", "rejected": "messages_rejected", "bounce": "recipients_bouncing"},
    states=(
        State("smtp_primary", "unreachable", "smtp_unreachable"),
        State("smtp_primary", "tls", "smtp_tls_failure"),
        State("smtp_primary", "auth_rejected", "smtp_auth_failure"),
        State("smtp_primary", "server_error", "smtp_server_error"),
        State("smtp_primary", "deferred", "smtp_throttled", needs_failures=True, blocking=False),
        State("smtp_primary", "insecure", None, ("warn",), why="configured without TLS or without verifying it"),
        *(State("smtp_backup", k, None, why=_BACKUP) for k in ("unreachable", "tls", "auth_rejected", "server_error",
                                                              "deferred")),
        State("smtp_backup", "insecure", None, ("warn",), why="configured without TLS or without verifying it"),
        *_SES_DENIED,
        *(State(c, "sending_disabled", "ses_sending_disabled") for c in SES_CHECKS),
        State("ses_quota", "quota_exhausted", "ses_daily_quota_exceeded"),
        State("ses_quota", "quota_high", None, ("warn",), why="most of the 24-hour quota is used, not all of it"),
        State("ses_account", "account_review", "ses_account_restricted", ("warn",), needs_failures=True, blocking=False,
              explains=("rejected",)),
        State("ses_reputation", "reputation", "ses_reputation_risk", blocking=False),
        State("ses_reputation", "reputation", None, ("warn",), why="above the level AWS reviews, below the one it "
                                                                  "pauses at"),
        *queue_states("email_queue", "the providers"),
    ),
    sources={"smtp_primary": "runbooklib.providers.smtp:check_smtp", "smtp_backup": "runbooklib.providers.smtp:check_smtp",
             "ses_quota": "runbooklib.providers.ses:check_quota", "ses_account": "runbooklib.providers.ses:check_account",
             "ses_reputation": "runbooklib.providers.ses:check_reputation",
             "email_queue": QUEUE_CHECK})


def _ses_rate(ctx: RunContext) -> Match | None:
    found = CONCLUSIONS.logged(ctx, "ses_rate_throttled", "sends exceed the SES maximum send rate")
    if found is None:
        return None
    quota = finding(ctx, "ses_quota")
    busiest = ctx.evidence.find(PEAK)
    peak = busiest.failures_per_minute if busiest else 0.0
    if quota is not None and quota.facts.get("max_send_rate"):
        found.evidence.append(f"SES max send rate is {quota.facts['max_send_rate']:g}/s")
    if peak:
        found.evidence.append(f"peak failures {peak:,.0f}/min")
    return found


def diagnose_email(ctx: RunContext) -> Diagnosis:
    """Name one cause from the findings (rules ranked as `diagnosis.diagnose` says; others that hold are listed)."""
    c = CONCLUSIONS
    rules = [
        c.rule(ctx, "ses_permission_denied", "SES refuses our calls"),
        c.rule(ctx, "ses_sending_disabled", "SES sending is paused for the account"),
        c.rule(ctx, "ses_daily_quota_exceeded", "the SES 24-hour quota is used up"),
        c.rule(ctx, "smtp_unreachable", "the primary SMTP server cannot be reached"),
        c.rule(ctx, "smtp_tls_failure", "the primary SMTP server fails TLS"),
        c.rule(ctx, "smtp_auth_failure", "the primary SMTP server rejects our credentials"),
        c.rule(ctx, "smtp_server_error", "the primary SMTP server refuses service"),
        c.rule(ctx, "queue_paused", "the email queue is paused"),
        Rule("tenant_specific", lambda: tenant_rule(ctx, "mail")),
        c.rule(ctx, "smtp_throttled", "the SMTP relay defers our mail (4xx: try again later)"),
        Rule("ses_rate_throttled", lambda: _ses_rate(ctx)),
        c.rule(ctx, "ses_account_restricted", "the SES account is restricted while sends fail"),
        c.rule(ctx, "messages_rejected", "the provider rejects our messages",
               "the sender identity or domain is not verified, or the content is refused"),
        c.rule(ctx, "recipients_bouncing", "mail bounces at the recipients' servers", "a bad recipient list"),
        c.rule(ctx, "ses_reputation_risk", "SES bounce or complaint rates are at the level where AWS pauses sending"),
    ]
    result = diagnose(SLUG, rules, CAUSES, incident_present=incident_present(ctx),
                      incident_evidence=log_evidence(ctx), needed=needed(ctx), findings=ctx.findings,
                      figures=figures(ctx), notes=c.notes(ctx), ended=ended(ctx),
                      unconcluded=lambda held: c.unconcluded(ctx, held))
    ctx.diagnosis = result
    ctx.write_summary()
    return result


# -- Mitigation -------------------------------------------------------------------------------------
class SwitchEmailProvider(TenantChannelChange):
    """Switch the affected tenants' email channel to the backup provider, after a preflight of the backup."""

    name = "switch_email_provider"
    title = "Switch email to the backup provider"
    channel = "email"
    key = "provider"

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(ctx)
        self.backup = _params(ctx).backup_provider

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is None:
            return False, "no diagnosis yet: run the Diagnosis cell first"
        if d.cause not in SWITCHABLE:
            return False, f"diagnosis is {d.cause}: switching provider would not help ({_why_not(d.cause)})"
        return True, f"diagnosis {d.cause}: the {IMPLICATED[d.cause]} provider cannot send"

    def target(self, current: Any) -> Any:
        """The backup for a tenant on the provider that cannot send; any other tenant keeps what it has."""
        d = self.ctx.diagnosis
        implicated = IMPLICATED.get(d.cause) if d is not None else None
        if implicated is not None and self.ctx.profile.provider_kind(str(current)) not in (implicated, None):
            return current
        return self.backup

    def describe(self, count: int) -> str:
        return f"switch {count} tenant(s) from their current provider to {self.backup}"

    def preflight(self) -> tuple[bool, str]:
        """Check that the backup provider works before sending any tenant's mail to it."""
        route = _route(self.ctx, self.backup)
        if route is None:
            return False, (f"backup provider {self.backup!r} is not configured in environment "
                           f"{self.ctx.profile.name!r} (providers: {', '.join(self.ctx.profile.providers)})")
        check = route.preflight(f"Preflight {self.backup}")
        if isinstance(check, str):
            return False, f"preflight of {self.backup}: {check}"
        self.ctx.record(check)
        if check.status not in ("ok", "warn"):
            return False, f"preflight of {self.backup} failed: {check.summary}"
        return True, f"preflight of {self.backup} passed: {check.summary}"

    def apply(self, plan: Plan) -> dict[str, Any]:
        result = super().apply(plan)
        self.ctx.evidence.put(SWITCHED_TO, self.backup)
        return result

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        out = super().undo(plan, result)
        self.ctx.evidence.drop(SWITCHED_TO)
        return out


def _why_not(cause: str) -> str:
    return {"tenant_specific": "one tenant's own setup fails, the provider works for the others",
            "messages_rejected": "the backup would be sending the same unverified or refused mail",
            "recipients_bouncing": "moving a bad list to the backup only spoils its reputation too",
            "ses_reputation_risk": "moving traffic away does not clean the list AWS is judging",
            "queue_paused": "nothing is being sent at all: the queue is paused, not the provider failing",
            "healthy": "nothing is failing"}.get(cause, "the provider is not what fails")


def switch_to_backup(ctx: RunContext) -> SwitchEmailProvider:
    return SwitchEmailProvider(ctx)


class SendTestEmail(SendTestMessage):
    """Send one test email through the provider the channel now uses."""

    name = "send_test_email"
    title = "Send a test email"

    param_name = "test_recipient"
    accepted_by = "the provider"

    def _proposed_switch(self) -> str | None:
        """The backup a dry run of switch_email_provider proposed in this run: the test email's plan is then the one
        an approved run makes after the switch, so that approving both in one run binds both plans."""
        for outcome in reversed(self.ctx.gate.outcomes):
            if outcome.action == SwitchEmailProvider.name:  # proposed here, or applied by an earlier run
                return _params(self.ctx).backup_provider if outcome.decision in ("dry_run", "already_applied") else None
        return None

    def _provider(self) -> str:
        switched = self.ctx.evidence.find(SWITCHED_TO)
        if switched:
            return switched
        proposed = self._proposed_switch()
        if proposed:
            return proposed
        if self.ctx.params.tenant_id:
            return str(self.ctx.api.get_channel("email", self.ctx.params.tenant_id)["provider"])
        return "smtp" if _smtp_endpoint(self.ctx, "smtp") is not None else "ses"

    def plan(self) -> Plan:
        provider = self._provider()
        route = _route(self.ctx, provider)
        if route is None:
            return Plan(self.name, "send a test email", blocked=f"provider {provider!r} is not configured here")
        target = route.target()
        subject = f"[{self.ctx.params.incident}] comms-runbooks test email"
        body = f"Test email from the {TITLE} runbook for incident {self.ctx.params.incident}."
        after = " once switch_email_provider is applied in the same run" if self._proposed_switch() else ""
        return Plan(self.name, f"send 1 email to {self.to} via {provider} ({target}){after}",
                    steps=[{"send": "email", "provider": provider, "to": self.to, "subject": subject, "body": body}],
                    details={"via": target})

    def apply(self, plan: Plan) -> dict[str, Any]:
        step = plan.steps[0]
        route = _route(self.ctx, step["provider"])
        if route is None:
            raise MitigationFailed(f"provider {step['provider']!r} is not configured here")
        try:
            return route.send(step["provider"], to=step["to"], subject=step["subject"], body=step["body"])
        except ProviderError as exc:
            raise MitigationFailed(f"test email not accepted: {exc}") from exc

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        if result.get("message_id") or self.to in result.get("accepted", []):
            return True, f"accepted by {plan.steps[0]['provider']}"
        return False, f"not accepted: {result}"


def send_test_email(ctx: RunContext) -> SendTestEmail:
    return SendTestEmail(ctx)


# -- Recovery confirmation --------------------------------------------------------------------------
check_queue_trend = CHECKS.check_queue_trend
plot_queue_trend = CHECKS.plot_queue_trend
check_recovery = CHECKS.check_recovery


# -- Post-incident ----------------------------------------------------------------------------------
def post_incident(ctx: RunContext) -> Checklist:
    """The spec's checklist, filled in where the data answers it."""
    d = ctx.diagnosis
    why = f"{d.cause}: {d.explanation}" if d else "no diagnosis was made in this run"
    backup = ctx.findings.get("smtp_backup")
    backup_endpoint = _smtp_endpoint(ctx, "smtp_backup")
    if backup_endpoint is None:
        backup_answer = "no backup SMTP provider is configured in this environment — add one"
    elif backup is not None:
        backup_answer = f"backup {backup_endpoint.host} is configured; its check: {backup.status} — {backup.summary}"
    else:
        backup_answer = f"backup {backup_endpoint.host} is configured (not checked in this run)"
    rep = ctx.findings.get("ses_reputation")
    rates = f"{rep.status}: {rep.summary}" if rep is not None else "SES reputation was not checked in this run"
    bounced = ctx.findings.get("failure_rate")
    if bounced is not None and "bounced" in bounced.facts:
        rates += f"; {bounced.facts['bounced']:,} messages BOUNCED in the window"
    checklist = Checklist("Post-incident", [
        ("Review why provider failed", why, d is not None and d.outcome == "cause"),
        ("Consider adding backup provider", backup_answer,
         _smtp_endpoint(ctx, "smtp_backup") is not None and backup is not None and backup.ok),
        ("Check bounce/complaint rates", rates, rep is not None and rep.ok),
    ])
    ctx.extra["post_incident"] = checklist.to_json()
    ctx.write_summary()
    return checklist


guard_checks(globals(), {"check_recovery": "recovery_failure_rate"})

RUNBOOK = Runbook(
    slug=SLUG, title=TITLE, channels=("email",), params_cls=Params, actions=ACTIONS, causes=CAUSES,
    dependencies=DEPENDENCIES, needed_fn=needed, time_needs_fn=time_needs, default_scenario=DEFAULT_SCENARIO,
    number=1, demo_parameters=DEMO_PARAMETERS,
)
"""This runbook, declared once: the catalog discovers it; the CLI, the run context and the review read it."""

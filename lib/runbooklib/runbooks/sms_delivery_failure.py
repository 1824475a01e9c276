"""Runbook 2, SMS Delivery Failure (Twilio): checks, diagnosis rules and mitigations the notebook calls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from runbooklib import channels, queries
from runbooklib.actions import Action, Plan
from runbooklib.actions.bases import MITIGATED_AT, SendTestMessage, TenantChannelChange
from runbooklib.catalog import Runbook
from runbooklib.checklist import Checklist
from runbooklib.context import RunContext
from runbooklib.deadline import Dependency
from runbooklib.diagnosis import Diagnosis, Match, Needed, Rule, diagnose
from runbooklib.endpoints.twilio import TwilioEndpoint
from runbooklib.errorcodes import (
    CONFIG,
    CONSENT,
    PERMANENT,
    SMS_CATEGORIES,
    TRANSIENT,
    TWILIO_CODES,
    classify_twilio,
)
from runbooklib.errors import ConfigError, MitigationFailed, PlatformAPIError, ProviderError, ProviderTimeout, QueryError
from runbooklib.params import CommonParams, param
from runbooklib.providers import statuspage
from runbooklib.providers import twilio as twilio_provider
from runbooklib.results import CheckResult
from runbooklib.runbooks.channel_checks import ERROR_CODES_FRAME, CodedChannelChecks, guard_checks, sampling_needs
from runbooklib.runbooks.rules import (
    QUEUE_CHECK,
    Conclusions,
    State,
    channel_elevated,
    class_match,
    ended,
    figures,
    finding,
    holding,
    incident_present,
    log_evidence,
    passed,
    queue_states,
    tenant_rule,
)

SLUG = "sms_delivery_failure"
TITLE = "SMS Delivery Failure"
CHANNEL = "SMS"
QUEUE = "sms"
DEFAULT_SCENARIO = "twilio_outage"
DEMO_PARAMETERS = {"recovery_interval": "1s"}
ACTIONS = ("retry_failed_sms", "mark_do_not_contact", "route_urgent_to_whatsapp", "send_test_sms")
DEPENDENCIES = ("database", "platform_api", "twilio")
CAUSES = {
    "healthy": "Failure rate at baseline, Twilio operational, credentials and sending numbers fine.",
    "twilio_outage": "Twilio reports an SMS outage and our failures are elevated.",
    "twilio_auth_failure": "Twilio rejects the account SID / auth token (20003).",
    "twilio_account_suspended": "The Twilio account is suspended or closed.",
    "sender_number_inactive": "A configured sending number is not on the account or cannot send SMS.",
    "invalid_numbers": "Most failures are invalid or unreachable recipient numbers (21211, 21614, 30005, 30006).",
    "recipients_unsubscribed": "Most failures are recipients who replied STOP (21610).",
    "carrier_filtering": "Carriers or Twilio filter the messages (30007): content or sender registration.",
    "rate_limited": "Sends exceed Twilio or carrier rate limits (20429, 14107, 30022) or queue limits (30001).",
    "twilio_api_errors": "Twilio's API answers with server errors (20500, 20503) while its status page reports no outage.",
    "carrier_delivery_errors": "Carriers fail to deliver across many recipients (30003 unreachable handset, 30008 "
                               "unknown carrier error): a carrier-side problem.",
    "sender_not_registered": "The sending number is not registered for A2P 10DLC or toll-free verification (30032, "
                             "30034): carriers block its traffic.",
    "twilio_configuration": "Twilio refuses our requests for account setup reasons: a region not enabled (21408), "
                            "trial-account limits (21608), a resource not found (20404).",
    "queue_paused": "The SMS queue is paused: messages wait and nothing is sent.",
    "tenant_specific": "One tenant's SMS is failing (or a few tenants') while the others are fine.",
    "unknown": "Failures are elevated but no known cause matched the evidence.",
}
PROVIDER_SIDE = ("provider_error", "carrier_unknown", "carrier_transient", "queue_overflow")
"""Error classes an outage at Twilio or the carriers shows as."""
CONCLUSIONS = Conclusions(
    classes={"auth": "twilio_auth_failure", "config": "twilio_configuration", "rate_limited": "rate_limited",
             "queue_overflow": "rate_limited", "provider_error": "twilio_api_errors", "invalid_number": "invalid_numbers",
             "opted_out": "recipients_unsubscribed", "sender": "sender_number_inactive",
             "sender_registration": "sender_not_registered", "account_suspended": "twilio_account_suspended",
             "carrier_transient": "carrier_delivery_errors", "carrier_unknown": "carrier_delivery_errors",
             "carrier_blocked": "carrier_filtering", "carrier_filtered": "carrier_filtering"},
    states=(
        State("twilio_account", "auth_failed", "twilio_auth_failure"),
        State("twilio_numbers", "auth_failed", "twilio_auth_failure"),
        State("twilio_account", "account_suspended", "twilio_account_suspended"),
        State("twilio_numbers", "sender_inactive", "sender_number_inactive"),
        State("status_page", "outage", "twilio_outage", needs_failures=True),
        State("status_page", "degraded", "twilio_outage", ("warn",), needs_failures=True, blocking=False),
        *queue_states("sms_queue", "Twilio"),
    ),
    sources={"twilio_account": "runbooklib.providers.twilio:check_account",
             "twilio_numbers": "runbooklib.providers.twilio:check_numbers",
             "status_page": "runbooklib.providers.statuspage:check_status_page",
             "sms_queue": QUEUE_CHECK})
RETRY_CAUSES = {"rate_limited", "carrier_delivery_errors", "twilio_api_errors"}
"""Causes whose failed messages can go through once the cause abates: a retry re-drives exactly those."""
FIX_FIRST = {"twilio_outage", "twilio_auth_failure", "twilio_account_suspended", "sender_number_inactive",
             "sender_not_registered", "twilio_configuration", "queue_paused"}
"""Causes a retry cannot beat: retrying before they are fixed only fails again."""
MITIGATES = {"retry_failed_sms": RETRY_CAUSES, "mark_do_not_contact": {"recipients_unsubscribed"},
             "route_urgent_to_whatsapp": {"twilio_outage", "twilio_account_suspended", "twilio_api_errors"}}
"""Action → the causes it can fix (docs/cause-codes.md says why each pairing holds and others do not)."""
SCENARIO_DEFAULTS: dict[str, Any] = {
    "runbook": SLUG,
    "message_logs": {"channel": CHANNEL, "provider": "twilio", "baseline": {"per_hour": 240, "bounce_rate": 0.0},
                     "window": {"per_minute": 20}},
    "platform": {"queues": {"sms": {"waiting": 30, "active": 2, "delayed": 4, "failed": 10}}},
}
STATUS_COMPONENTS = r"sms|messaging"
MAX_DNC_PER_RUN = 500
MAX_RETRY_PER_RUN = 10_000
"""At most this many SMS are re-queued by one approval (every id is in the plan)."""
REVIEW_FILE = "invalid_numbers_review.csv"
TOP_CODES = 15


@dataclass(frozen=True)
class Params(CommonParams):
    """Parameters of the SMS Delivery Failure notebook (common ones first)."""

    test_phone: str = param("", "E.164 number for the gated recovery test SMS, e.g. +15551234567 (empty: none)")

    @staticmethod
    def check_values(values: dict[str, Any]) -> list[tuple[str, str]]:
        phone = str(values["test_phone"])
        if phone and not (phone.startswith("+") and phone[1:].isdigit() and 8 <= len(phone) <= 16):
            return [("test_phone", "must be one number in E.164 form, e.g. +15551234567")]
        return []


CHECKS = CodedChannelChecks(channel=CHANNEL, queue=QUEUE, label="SMS", noun="messages", classify=channels.get(CHANNEL).classify,
                            code_info=classify_twilio, provider="Twilio")
time_needs = sampling_needs


def needed(ctx: RunContext) -> list[Needed]:
    """`healthy` rests on message_logs, the sms queue, the Twilio account and the sending numbers (the status page
    is a hint: an unreadable one does not block an all-clear)."""
    return [*CHECKS.needed(ctx),
            Needed("twilio_account", "the Twilio account and credentials",
                   "curl -u \"$TWILIO_ACCOUNT_SID:$TWILIO_AUTH_TOKEN\" "
                   "https://api.twilio.com/2010-04-01/Accounts/$TWILIO_ACCOUNT_SID.json (status: active)"),
            Needed("twilio_numbers", "the Twilio sending numbers",
                   "Twilio console → Phone Numbers → Active numbers: each sending number present, SMS capable")]


def _twilio(ctx: RunContext) -> Dependency:
    return ctx.dependency("twilio", twilio_provider.dependency)

# -- Symptoms ---------------------------------------------------------------------------------------
check_sms_queue = CHECKS.check_queue
check_failure_rate = CHECKS.check_failure_rate

# -- Checks: message_logs ---------------------------------------------------------------------------
check_status_counts = CHECKS.check_status_counts
check_error_codes = CHECKS.check_error_codes
plot_failures_by_class = CHECKS.plot_failures_by_category
plot_top_error_codes = CHECKS.plot_top_error_codes
check_tenant_split = CHECKS.check_tenant_split
plot_tenant_split = CHECKS.plot_tenant_split
failure_sample = CHECKS.failure_sample


# -- Checks: Twilio ---------------------------------------------------------------------------------
def _twilio_endpoint(ctx: RunContext) -> TwilioEndpoint | None:
    return ctx.profile.endpoint(TwilioEndpoint, "twilio")


def check_twilio_status(ctx: RunContext) -> CheckResult:
    """Twilio's public status page: overall indicator, SMS components, unresolved incidents."""
    tw = _twilio_endpoint(ctx)
    if tw is None:
        return ctx.record(CheckResult("status_page", "Twilio status page", "skipped", "Twilio is not configured"))
    within = ctx.dependency("twilio_status", lambda seconds: Dependency("Twilio's status page", seconds, ProviderTimeout))
    return ctx.record(statuspage.check_status_page(tw.status_page_url, component_pattern=STATUS_COMPONENTS,
                                                   timeout=ctx.profile.read_timeout, label="Twilio status page",
                                                   within=within))


def check_twilio_account(ctx: RunContext) -> CheckResult:
    """Fetch the account with the twilio client: credentials accepted, account active."""
    return ctx.record(twilio_provider.check_account(_twilio_endpoint(ctx), timeout=ctx.profile.read_timeout,
                                                    within=_twilio(ctx)))


def check_sender_numbers(ctx: RunContext) -> CheckResult:
    """The configured sending numbers: on the account, SMS-capable."""
    return ctx.record(twilio_provider.check_numbers(_twilio_endpoint(ctx), timeout=ctx.profile.read_timeout,
                                                    within=_twilio(ctx)))


# -- Diagnosis --------------------------------------------------------------------------------------
def _outage(ctx: RunContext) -> Match | None:
    """Twilio's page reports an outage (or a degradation) of SMS, our SMS failures are elevated channel-wide, and
    they are of the kinds an outage shows as (server errors, unknown carrier errors, queue overflow)."""
    page = finding(ctx, "status_page")
    if page is None or page.classification not in ("outage", "degraded") or not channel_elevated(ctx):
        return None
    if not (page.facts.get("degraded_components") or page.facts.get("unresolved_incidents")):
        return None  # the overall indicator alone (e.g. Voice degraded) says nothing about SMS
    provider_side = class_match(ctx, PROVIDER_SIDE, "errors an outage at Twilio or the carriers shows as")
    if provider_side is None:
        return None
    evidence = [f"{page.title}: {page.summary}", *provider_side.evidence]
    explanation = f"Twilio reports {'an outage' if page.classification == 'outage' else 'a degradation'} and our SMS " \
                  f"failures are elevated: {page.summary}"
    if page.classification == "outage":
        return Match(explanation, evidence)
    return Match(explanation, evidence, tier=provider_side.tier, weight=provider_side.weight)


def diagnose_sms(ctx: RunContext) -> Diagnosis:
    """Name the best-supported cause from the findings; others that also hold are listed."""
    c = CONCLUSIONS
    rules = [
        c.rule(ctx, "twilio_auth_failure", "Twilio rejects our credentials"),
        c.rule(ctx, "twilio_account_suspended", "the Twilio account cannot send"),
        Rule("twilio_outage", lambda: _outage(ctx)),
        c.rule(ctx, "sender_number_inactive", "a sending number cannot send SMS"),
        c.rule(ctx, "sender_not_registered", "the sending number is not registered (10DLC / toll-free)"),
        c.rule(ctx, "twilio_configuration", "Twilio refuses our requests for account setup reasons"),
        c.rule(ctx, "queue_paused", "the SMS queue is paused"),
        # a few tenants carrying the failures say more than the error class they share
        Rule("tenant_specific", lambda: tenant_rule(ctx, "messages")),
        *[c.rule(ctx, cause, _lead(cause)) for cause in ("invalid_numbers", "recipients_unsubscribed",
                                                          "carrier_filtering", "rate_limited", "twilio_api_errors",
                                                          "carrier_delivery_errors")],
    ]
    result = diagnose(SLUG, rules, CAUSES, incident_present=incident_present(ctx),
                      incident_evidence=log_evidence(ctx), needed=needed(ctx), findings=ctx.findings,
                      figures=figures(ctx), notes=c.notes(ctx), ended=ended(ctx),
                      unconcluded=lambda held: c.unconcluded(ctx, held))
    ctx.diagnosis = result
    ctx.write_summary()
    return result


def _lead(cause: str) -> str:
    return CAUSES[cause][0].lower() + CAUSES[cause][1:].rstrip(".")


# -- Mitigation -------------------------------------------------------------------------------------
def _utc(value: Any) -> datetime:
    """A created_at as read back (datetime, pandas Timestamp or ISO text; naive means UTC) as an aware datetime."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise ValueError(f"not a time: {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _codes(category: str | tuple[str, ...]) -> list[str]:
    wanted = (category,) if isinstance(category, str) else category
    return sorted(str(c) for c, info in TWILIO_CODES.items() if info.category in wanted)


class RetryFailedSms(Action):
    """Re-queue the incident's failed SMS through the platform: the window's FAILED messages whose error codes belong
    to a cause a retry can fix (rate limits, carrier hiccups, Twilio server errors), listed by id."""

    name = "retry_failed_sms"
    title = "Retry the incident's failed SMS (transient causes only)"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def _failed_by_category(self) -> dict[str, int]:
        """FAILED SMS of the window per retry category (the incident's: never the whole baseline)."""
        frame = self.ctx.db.fetch(queries.error_code_counts(by_tenant=self.ctx.by_tenant, statuses=("FAILED",)),
                                  self.ctx.window_params(channel=CHANNEL, limit=1000))
        counts = dict.fromkeys(SMS_CATEGORIES, 0)
        for code, n in zip(frame["error_code"], frame["count"], strict=True):
            counts[classify_twilio(code).category] += int(n)
        return counts

    def _causes(self) -> list[str]:
        return holding(self.ctx, RETRY_CAUSES)

    def _retry_codes(self) -> list[str]:
        """The transient codes of the error classes of the causes a retry can fix that the diagnosis names."""
        classes = {cls for cause in self._causes() for cls in CONCLUSIONS.classes_of(cause)}
        return sorted(str(c) for c, info in TWILIO_CODES.items() if info.cls in classes and info.category == TRANSIENT)

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is None:
            return False, "no diagnosis yet: run the Diagnosis cell first"
        if d.cause in FIX_FIRST:
            return False, f"diagnosis is {d.cause}: a retry now would fail again — fix that first"
        causes = self._causes()
        if not causes:
            return False, (f"diagnosis is {d.cause}: a retry cannot fix it (only {', '.join(sorted(RETRY_CAUSES))} "
                           "leave messages that go through later)")
        return True, f"{', '.join(causes)}: the window's failures with those codes can go through once it abates"

    def _retryable(self) -> list[dict[str, Any]]:
        """The window's FAILED SMS with one of the retry codes, by id."""
        frame = self.ctx.db.fetch(queries.failed_message_ids(by_tenant=self.ctx.by_tenant),
                                  self.ctx.window_params(channel=CHANNEL, codes=self._retry_codes(),
                                                         limit=MAX_RETRY_PER_RUN + 1))
        return [{"id": str(i), "created_at": c} for i, c in zip(frame["id"], frame["created_at"], strict=True)]

    def plan(self) -> Plan:
        counts = self._failed_by_category()
        never = counts[PERMANENT] + counts[CONSENT] + counts[CONFIG]
        exclude = _codes((PERMANENT, CONSENT, CONFIG))
        codes = self._retry_codes()
        rows = self._retryable()
        details: dict[str, Any] = {
            "not_retryable": never, "failed_by_category": counts, "causes": self._causes(),
            "window": {"since": self.ctx.since.isoformat(timespec="seconds"),
                       "until": self.ctx.until.isoformat(timespec="seconds")},
            "note": ("POST /api/v1/communication/retry-failed is bounded to exactly these message ids, created before "
                     "the cut-off, at most this many (assumed parameters, docs/assumed-endpoints.md): the incident "
                     "window's FAILED messages with the error codes of the causes a retry can fix. Permanent, consent "
                     "and config codes are excluded as well. Failures that arrive after this plan are not in it: a "
                     "later run plans them.")}
        if len(rows) > MAX_RETRY_PER_RUN:
            return Plan(self.name, f"more than {MAX_RETRY_PER_RUN:,} SMS failures to retry", details=details,
                        blocked=(f"more than {MAX_RETRY_PER_RUN:,} failures: retry per tenant (tenant_id) or with a "
                                 "shorter window, so that each approval names a list a responder can review"))
        if not rows:
            return Plan(self.name, "no SMS failure to retry", details=details,
                        blocked=f"no FAILED SMS in the window has one of the codes {', '.join(codes) or '(none)'}")
        ids = [r["id"] for r in rows]
        latest = max(_utc(r["created_at"]) for r in rows)
        cut_off = (latest + timedelta(milliseconds=1)).isoformat(timespec="milliseconds")
        details["created_before"] = cut_off  # from the planned ids (the newest + 1 ms): the ids pin it, not the digest
        return Plan(self.name, f"re-queue {len(ids):,} SMS of the incident window failed with {', '.join(codes)} by id "
                               f"({never:,} permanent, consent or config failures left alone)",
                    steps=[{"call": "POST /api/v1/communication/retry-failed", "channel": CHANNEL,
                            "message_ids": ids, "count": len(ids), "max": len(ids), "error_codes": codes,
                            "exclude_error_codes": ",".join(exclude)}], details=details)

    def resources(self, plan: Plan) -> list[str]:
        return ["platform:sms:retry-failed"]

    def verify_by_hand(self, plan: Plan) -> str:
        step = plan.steps[0]
        return (f"the status of the {step['count']:,} planned SMS in message_logs (ids in the plan, summary.json): "
                "QUEUED/SENT/DELIVERED means the retry landed, FAILED means it did not")

    def apply(self, plan: Plan) -> dict[str, Any]:
        started = datetime.now(UTC)
        step = plan.steps[0]
        try:
            out = self.ctx.api.retry_failed(CHANNEL, message_ids=step["message_ids"],
                                            created_before=plan.details["created_before"],
                                            maximum=step["max"], exclude_error_codes=step["exclude_error_codes"].split(","))
        except PlatformAPIError as exc:
            raise MitigationFailed(f"retry-failed: {exc}") from exc
        self.ctx.evidence.put(MITIGATED_AT, started)
        return {"retried": out.get("retried"), "answer": out}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        """The transient failures are no longer FAILED in message_logs; the others still are."""
        try:
            after = self._failed_by_category()
        except (QueryError, ConfigError) as exc:
            return False, f"could not read message_logs back: {exc}"
        planned = int(plan.steps[0]["count"])
        still = self.ctx.db.fetch(queries.failed_message_ids(by_tenant=self.ctx.by_tenant),
                                  self.ctx.window_params(channel=CHANNEL, codes=list(plan.steps[0]["error_codes"]),
                                                         limit=MAX_RETRY_PER_RUN + 1))
        left = len(set(map(str, still["id"])) & set(plan.steps[0]["message_ids"]))
        if left <= planned // 10:
            return True, (f"platform re-queued {result.get('retried')} of {planned:,} planned; still FAILED: {left:,}; "
                          f"transient failures not in the plan: {max(after[TRANSIENT] - left, 0):,}; non-retryable left alone: "
                          f"{after[PERMANENT] + after[CONSENT] + after[CONFIG]:,}")
        return False, f"{left:,} of the {planned:,} planned SMS are still FAILED"


def retry_failed(ctx: RunContext) -> RetryFailedSms:
    return RetryFailedSms(ctx)


def review_invalid_numbers(ctx: RunContext) -> CheckResult:
    """Write the review list of invalid numbers (masked) to the run bundle; sends nothing, changes nothing."""
    codes = sorted(str(c) for c, info in TWILIO_CODES.items() if info.cls == "invalid_number")
    return CHECKS.write_recipient_review(ctx, name="invalid_numbers_review", title="Invalid numbers: review list",
                                         codes=codes, filename=REVIEW_FILE)


class MarkDoNotContact(Action):
    """Mark recipients who replied STOP (21610) as do-not-contact, per tenant (assumed endpoint)."""

    name = "mark_do_not_contact"
    title = "Mark unsubscribed recipients do-not-contact"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def needed(self) -> tuple[bool, str]:
        if not holding(self.ctx, MITIGATES[self.name]):
            d = self.ctx.diagnosis
            return False, (f"diagnosis is {d.cause if d else 'not made'}: unsubscribed recipients (21610) are not among "
                           "its causes")
        return True, "recipients who replied STOP are still being sent to"

    def plan(self) -> Plan:
        frame = self.ctx.db.fetch(queries.failed_recipients(by_tenant=self.ctx.by_tenant),
                                  self.ctx.window_params(channel=CHANNEL, codes=["21610"], limit=MAX_DNC_PER_RUN + 1))
        if len(frame) > MAX_DNC_PER_RUN:
            return Plan(self.name, "too many recipients", blocked=(f"more than {MAX_DNC_PER_RUN} recipients; run per "
                                                                   "tenant (tenant_id) or with a shorter window"))
        steps = []
        for tenant, group in frame.groupby("tenant_id"):
            already = set(self.ctx.api.do_not_contact(CHANNEL, str(tenant)))
            new = sorted(set(map(str, group["recipient"])) - already)
            if new:
                steps.append({"call": "POST /api/v1/communication/do-not-contact", "tenant_id": str(tenant),
                              "channel": CHANNEL, "recipients": new})
        if not steps:
            return Plan(self.name, "nothing to mark", blocked="every unsubscribed recipient is already do-not-contact")
        total = sum(len(s["recipients"]) for s in steps)
        return Plan(self.name, f"mark {total:,} recipients do-not-contact across {len(steps)} tenant(s)", steps=steps)

    def resources(self, plan: Plan) -> list[str]:
        return [f"channel:sms:tenant:{s['tenant_id']}:do-not-contact" for s in plan.steps]

    def verify_by_hand(self, plan: Plan) -> str:
        return ("whether the planned recipients are on each tenant's do-not-contact list "
                "(GET /api/v1/communication/do-not-contact?channel=SMS&tenant_id=…)")

    def apply(self, plan: Plan) -> dict[str, Any]:
        done: list[dict[str, Any]] = []
        for step in plan.steps:
            try:
                self.ctx.api.add_do_not_contact(CHANNEL, step["tenant_id"], step["recipients"])
            except PlatformAPIError as exc:
                for prev in done:
                    self.ctx.api.remove_do_not_contact(CHANNEL, prev["tenant_id"], prev["recipients"])
                raise MitigationFailed(f"marked {len(done)} of {len(plan.steps)} tenants, then {exc}; rolled back") from exc
            done.append(step)
        return {"marked": sum(len(s["recipients"]) for s in done), "tenants": [s["tenant_id"] for s in done]}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        missing = 0
        for step in plan.steps:
            listed = set(self.ctx.api.do_not_contact(CHANNEL, step["tenant_id"]))
            missing += len(set(step["recipients"]) - listed)
        if missing:
            return False, f"{missing} recipients are not on the do-not-contact list"
        return True, f"{result['marked']:,} recipients are now do-not-contact"

    @property
    def can_undo(self) -> bool:
        return True

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        for step in plan.steps:
            self.ctx.api.remove_do_not_contact(CHANNEL, step["tenant_id"], step["recipients"])
        return {"unmarked": result.get("marked")}


def mark_do_not_contact(ctx: RunContext) -> MarkDoNotContact:
    return MarkDoNotContact(ctx)


FALLBACK = {"channel": "WHATSAPP", "priorities": ["urgent"]}


class RouteUrgentToWhatsApp(TenantChannelChange):
    """While Twilio is down, route the affected tenants' urgent SMS to WhatsApp (assumed endpoint)."""

    name = "route_urgent_to_whatsapp"
    title = "Route urgent SMS to WhatsApp"
    channel = "sms"
    key = "fallback"

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is None or d.cause not in MITIGATES[self.name]:
            return False, (f"diagnosis is {d.cause if d else 'not made'}: only Twilio being unable to send "
                           f"({', '.join(sorted(MITIGATES[self.name]))}) calls for the fallback")
        return True, f"{d.cause}: Twilio cannot send, and urgent messages should still reach people"

    def target(self, current: Any) -> Any:
        return FALLBACK

    def describe(self, count: int) -> str:
        return f"route urgent SMS of {count} tenant(s) to WhatsApp"


def route_urgent_to_whatsapp(ctx: RunContext) -> RouteUrgentToWhatsApp:
    return RouteUrgentToWhatsApp(ctx)


class SendTestSms(SendTestMessage):
    """Send one test SMS from the first configured number."""

    name = "send_test_sms"
    title = "Send a test SMS"

    param_name = "test_phone"
    accepted_by = "Twilio"

    def plan(self) -> Plan:
        tw = _twilio_endpoint(self.ctx)
        if tw is None or not tw.from_numbers:
            return Plan(self.name, "send a test SMS", blocked="no Twilio sending number is configured")
        return Plan(self.name, f"send 1 SMS from {tw.from_numbers[0]} to {self.to}",
                    steps=[{"send": "sms", "from": tw.from_numbers[0], "to": self.to,
                            "body": f"[{self.ctx.params.incident}] comms-runbooks test SMS"}])

    def apply(self, plan: Plan) -> dict[str, Any]:
        endpoint = _twilio_endpoint(self.ctx)
        assert endpoint is not None
        try:
            step = plan.steps[0]
            return twilio_provider.send_sms(endpoint, to=step["to"], timeout=self.ctx.profile.read_timeout,
                                            body=step["body"],
                                            within=_twilio(self.ctx))
        except ProviderError as exc:
            raise MitigationFailed(f"test SMS not accepted: {exc}") from exc

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        if result.get("sid") and result.get("status") not in ("failed", "undelivered"):
            return True, f"accepted by Twilio ({result['status']})"
        return False, f"not accepted: {result}"


def send_test_sms(ctx: RunContext) -> SendTestSms:
    return SendTestSms(ctx)


# -- Recovery confirmation --------------------------------------------------------------------------
check_queue_trend = CHECKS.check_queue_trend
plot_queue_trend = CHECKS.plot_queue_trend
check_recovery = CHECKS.check_recovery


check_delivery_receipts = CHECKS.check_delivery_receipts


# -- Post-incident ----------------------------------------------------------------------------------
def post_incident(ctx: RunContext) -> Checklist:
    """The spec's checklist, answered from this run's data where it can be."""
    review = ctx.extra.get("invalid_numbers_review")
    numbers = (f"{review['recipients']:,} invalid numbers listed in {review['file']} (masked), by tenant "
               f"{review['per_tenant']}" if review else "no invalid-number review list was needed in this run")
    codes = ctx.evidence.find(ERROR_CODES_FRAME)
    breakdown = ("; ".join(f"{c} {m}: {n:,}" for c, m, n in zip(codes["error_code"], codes["meaning"], codes["count"],
                                                               strict=True))
                 if codes is not None and not codes.empty else "no failures recorded")
    try:
        templates = ctx.db.fetch(queries.template_failures(by_tenant=ctx.by_tenant),
                                 ctx.window_params(channel=CHANNEL, limit=5))
        filtered = templates[[classify_twilio(c).cls in ("carrier_filtered", "carrier_blocked")
                              for c in templates["error_code"]]] if not templates.empty else templates
        content = ("; ".join(f"{t} ({c}): {n:,}" for t, c, n in zip(filtered["template"], filtered["error_code"],
                                                                    filtered["count"], strict=True))
                   or "no template was filtered by carriers")
    except (QueryError, ConfigError) as exc:
        content = f"could not read templates: {exc}"
    codes_read, rate_read = passed(ctx, "top_errors"), passed(ctx, "failure_rate")
    if not codes_read:
        breakdown = "the error codes could not be read in this run"
    checklist = Checklist("Post-incident", [
        ("Review failed phone numbers", numbers, codes_read and not review),
        ("Check for carrier-specific issues", f"error codes in the window: {breakdown}",
         rate_read and codes_read and not incident_present(ctx)),
        ("Review message content if rejected", f"templates most often filtered: {content}",
         content.startswith("no template")),
    ])
    ctx.extra["post_incident"] = checklist.to_json()
    ctx.write_summary()
    return checklist


guard_checks(globals(), {
    "check_error_codes": "top_errors",
    "check_twilio_status": "status_page",
    "check_sender_numbers": "twilio_numbers",
    "check_recovery": "recovery_failure_rate",
})

RUNBOOK = Runbook(
    slug=SLUG, title=TITLE, channels=("sms",), params_cls=Params, actions=ACTIONS, causes=CAUSES,
    dependencies=DEPENDENCIES, needed_fn=needed, time_needs_fn=time_needs, default_scenario=DEFAULT_SCENARIO,
    number=2, demo_parameters=DEMO_PARAMETERS, scenario_defaults=SCENARIO_DEFAULTS,
)
"""This runbook, declared once: the catalog discovers it; the CLI, the run context and the review read it."""

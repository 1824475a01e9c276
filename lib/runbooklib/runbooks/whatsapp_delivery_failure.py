"""Runbook 3, WhatsApp Delivery Failure (Meta Cloud API): checks, diagnosis rules and mitigations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from runbooklib import channels, charts, queries
from runbooklib.actions import Action, Plan
from runbooklib.actions.bases import MITIGATED_AT, SendTestMessage, TenantChannelChange, affected_tenants
from runbooklib.catalog import Runbook
from runbooklib.checklist import Checklist
from runbooklib.context import RunContext
from runbooklib.deadline import Dependency
from runbooklib.diagnosis import Diagnosis, Needed, Rule, diagnose
from runbooklib.endpoints.whatsapp import WhatsAppEndpoint
from runbooklib.errorcodes import GRAPH_CODES, TRANSIENT, classify_graph
from runbooklib.errors import ConfigError, MitigationFailed, PlatformAPIError, ProviderError, QueryError
from runbooklib.evidence import Key
from runbooklib.params import CommonParams, param, shown
from runbooklib.providers import whatsapp as wa
from runbooklib.results import CheckResult
from runbooklib.runbooks.channel_checks import CodedChannelChecks, db_error, guard_checks, not_run, sampling_needs
from runbooklib.runbooks.rules import (
    QUEUE_CHECK,
    Conclusions,
    State,
    ended,
    figures,
    finding,
    holding,
    incident_present,
    log_evidence,
    queue_states,
    tenant_rule,
)

SLUG = "whatsapp_delivery_failure"
TITLE = "WhatsApp Delivery Failure"
CHANNEL = "WHATSAPP"
QUEUE = "whatsapp"
DEFAULT_SCENARIO = "template_rejected"
DEMO_PARAMETERS = {"recovery_interval": "1s", "fallback_template": "event_reminder_plain"}
ACTIONS = ("use_fallback_template", "submit_corrected_template", "use_template_outside_window",
           "refresh_access_token", "send_test_whatsapp")
DEPENDENCIES = ("database", "platform_api", "whatsapp")
CAUSES = {
    "healthy": "Failure rate at baseline; templates, phone number and token are fine.",
    "token_expired": "The access token is expired or invalid (190).",
    "app_permission_denied": "The app or system user lacks a permission or capability (10, 200-299, 3, 0), or the "
                             "token lacks the WhatsApp scopes.",
    "billing_issue": "The business has a payment problem (131042): Meta sends nothing until billing is fixed.",
    "whatsapp_configuration": "Meta does not find the phone number or account the profile names (803): wrong ids, "
                              "or the object was removed.",
    "account_restricted": "The business account or number is restricted or locked (368, 131031, 130497).",
    "phone_not_registered": "The phone number is not registered on the Cloud API (133010).",
    "template_rejected": "Templates that messages use are rejected, paused or disabled (132001, 132015, 132016).",
    "phone_number_quality": "The number's quality rating is low or it is flagged (131048 spam limit).",
    "window_expired": "Free-form messages sent outside the 24-hour customer service window (131047).",
    "rate_limited": "Throughput or rate limits are hit (130429, 131056, 80007, 4).",
    "recipients_opted_out": "Recipients stopped marketing messages from us (131050).",
    "marketing_limited": "Meta holds back marketing messages to keep engagement healthy (131049): per-user limits.",
    "recipients_undeliverable": "Messages are undeliverable to many recipients (131026): not on WhatsApp, an old app, "
                                "or Meta's terms not accepted.",
    "invalid_requests": "Our requests are malformed (100 invalid parameter, 131051 unsupported message type): a code "
                        "or payload bug.",
    "template_parameters": "Messages do not fit their templates (132000 parameter count, 132012 parameter format, "
                           "132005 too long, 132007 format policy): a code or content bug.",
    "meta_service_errors": "Meta's Cloud API answers with service errors (131000, 131016): trouble on Meta's side.",
    "token_expiring": "The access token is valid but expires within days: refresh it before every send fails.",
    "queue_paused": "The WhatsApp queue is paused: messages wait and nothing is sent.",
    "tenant_specific": "One tenant's WhatsApp is failing (or a few tenants') while the others are fine.",
    "unknown": "Failures are elevated but no known cause matched the evidence.",
}
CLASS_CAUSES = {"token": "token_expired", "auth": "app_permission_denied", "rate_limited": "rate_limited",
                "quality": "phone_number_quality", "marketing_limit": "marketing_limited",
                "opted_out": "recipients_opted_out", "window_closed": "window_expired",
                "undeliverable": "recipients_undeliverable", "bad_request": "invalid_requests",
                "provider_transient": "meta_service_errors", "account": "billing_issue",
                "account_locked": "account_restricted", "template": "template_rejected",
                "template_params": "template_parameters", "phone_not_registered": "phone_not_registered",
                "config": "whatsapp_configuration"}
BLOCKING_CLASSES = {"token", "auth", "account", "account_locked", "phone_not_registered", "config"}
"""Graph error classes under which nothing can be sent: a check that gets one establishes its cause outright."""
GRAPH_CHECKS = ("wa_templates", "wa_phone", "wa_token")
CONCLUSIONS = Conclusions(
    classes=CLASS_CAUSES,
    states=(
        # a Graph error answered to a check (a transient one means "could not check", not a state)
        *(State(check, cls, CLASS_CAUSES[cls], needs_failures=cls not in BLOCKING_CLASSES,
                blocking=cls in BLOCKING_CLASSES)
          for check in GRAPH_CHECKS
          for cls in sorted({i.cls for i in GRAPH_CODES.values() if i.category != TRANSIENT})),
        State("wa_templates", "template_not_approved", "template_rejected", needs_failures=True, blocking=False),
        State("wa_templates", "unused_not_approved", None, ("warn",),
              why="templates are rejected or paused, but no failing message uses them"),
        State("wa_phone", "quality", "phone_number_quality", blocking=False),
        State("wa_phone", "quality", None, ("warn",), why="quality YELLOW or rate-limited: worth watching, still sending"),
        State("wa_token", "token_expiring", "token_expiring", ("warn",), blocking=False),
        *queue_states("whatsapp_queue", "Meta"),
    ),
    sources={"wa_templates": "runbooklib.providers.whatsapp:check_templates",
             "wa_phone": "runbooklib.providers.whatsapp:check_phone_number",
             "wa_token": "runbooklib.providers.whatsapp:check_token",
             "whatsapp_queue": QUEUE_CHECK})
MITIGATES = {"use_fallback_template": {"template_rejected"}, "submit_corrected_template": {"template_rejected"},
             "use_template_outside_window": {"window_expired"}, "refresh_access_token": {"token_expiring"}}
"""Action → the causes it can fix (docs/cause-codes.md says why). Not `token_expired`: Meta exchanges a token only
while it is still valid, so an expired one needs a new system-user token made by a person."""
FAILING_TEMPLATES: Key[dict[str, int]] = Key("failing_templates", "check_templates",
                                            "the templates failing messages used, with their failures")
TEMPLATES: Key[list[dict[str, Any]]] = Key("templates", "check_templates", "the templates on the WABA")
NEW_TOKEN: Key[str] = Key("new_token", "refresh_access_token (applied)", "the exchanged access token")
SCENARIO_DEFAULTS: dict[str, Any] = {
    "runbook": SLUG,
    "message_logs": {"channel": CHANNEL, "provider": "meta", "baseline": {"per_hour": 180, "bounce_rate": 0.0},
                     "window": {"per_minute": 15}},
    "platform": {"queues": {"whatsapp": {"waiting": 20, "active": 2, "delayed": 1, "failed": 6}}},
}
CONVERSATIONS_FILE = "window_expired_conversations.csv"
TEMPLATE_KEYS = {"name", "language", "category", "components"}


@dataclass(frozen=True)
class Params(CommonParams):
    """Parameters of the WhatsApp Delivery Failure notebook (common ones first)."""

    fallback_template: str = param("", "APPROVED template to use instead of rejected ones, and outside the 24 h window")
    template_payload_file: str = param("", "JSON file: the corrected template to submit (name, language, category, components)")
    test_whatsapp: str = param("", "E.164 number for the gated recovery test message (empty: none)")

    @staticmethod
    def check_values(values: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        phone = str(values["test_whatsapp"])
        if phone and not (phone.startswith("+") and phone[1:].isdigit() and 8 <= len(phone) <= 16):
            problems.append(("test_whatsapp", "must be one number in E.164 form, e.g. +15551234567"))
        path = str(values["template_payload_file"])
        if path and not _is_file(path):
            problems.append(("template_payload_file", f"{shown(path)} does not exist or is not a file"))
        return problems


def _is_file(path: str) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


def _params(ctx: RunContext) -> Params:
    assert isinstance(ctx.params, Params)
    return ctx.params


CHECKS = CodedChannelChecks(channel=CHANNEL, queue=QUEUE, label="WhatsApp", noun="messages",
                            classify=channels.get(CHANNEL).classify, code_info=classify_graph, provider="Graph API")
time_needs = sampling_needs


def _wa_endpoint(ctx: RunContext) -> WhatsAppEndpoint | None:
    return ctx.profile.endpoint(WhatsAppEndpoint, "whatsapp")


def needed(ctx: RunContext) -> list[Needed]:
    """`healthy` rests on message_logs, the whatsapp queue, the templates and the sending number on Meta's side, and
    the token check where the profile can inspect the token (whatsapp.app_id and app_secret_env)."""
    wa_ep = _wa_endpoint(ctx)
    graph = f"{wa_ep.graph_url}/{wa_ep.api_version}" if wa_ep else "https://graph.facebook.com/v26.0"
    waba, phone = (wa_ep.waba_id, wa_ep.phone_number_id) if wa_ep else ("{WABA_ID}", "{PHONE_NUMBER_ID}")
    out = [*CHECKS.needed(ctx),
           Needed("wa_templates", "the message templates on the WABA",
                  f"curl '{graph}/{waba}/message_templates?fields=name,status,rejected_reason' -H 'Authorization: Bearer …'"),
           Needed("wa_phone", "the sending number's health",
                  f"curl '{graph}/{phone}?fields=quality_rating,status,name_status' -H 'Authorization: Bearer …'")]
    if wa_ep is not None and wa_ep.app_id and wa_ep.app_secret_env:
        out.append(Needed("wa_token", "the access token", f"curl '{graph}/debug_token?input_token=…' "
                                                           "-H 'Authorization: Bearer <app id>|<app secret>'"))
    return out


def _graph(ctx: RunContext) -> Dependency:
    return ctx.dependency("graph", wa.dependency)


def _client(ctx: RunContext) -> wa.Graph:
    """A Graph client for the run (raises ConfigError when WhatsApp is not configured or its token is not set)."""
    return wa.graph(_wa_endpoint(ctx), timeout=ctx.profile.read_timeout, within=_graph(ctx))

# -- Symptoms ---------------------------------------------------------------------------------------
check_whatsapp_queue = CHECKS.check_queue
check_failure_rate = CHECKS.check_failure_rate

# -- Checks: message_logs ---------------------------------------------------------------------------
check_status_counts = CHECKS.check_status_counts
check_error_codes = CHECKS.check_error_codes
plot_failures_by_class = CHECKS.plot_failures_by_category
plot_top_error_codes = CHECKS.plot_top_error_codes
check_tenant_split = CHECKS.check_tenant_split
plot_tenant_split = CHECKS.plot_tenant_split
failure_sample = CHECKS.failure_sample


# -- Checks: Meta ----------------------------------------------------------------------------------
def _failing_templates(ctx: RunContext) -> dict[str, int]:
    """Template → failures in the window (the templates failing messages used).

    If the query fails, that is recorded as its own finding, so the templates check cannot pass
    quietly for want of data.
    """
    try:
        frame = ctx.db.fetch(queries.template_failures(by_tenant=ctx.by_tenant),
                             ctx.window_params(channel=CHANNEL, limit=50))
    except (QueryError, ConfigError) as exc:
        db_error(ctx, "wa_template_failures", "Templates of failing messages", exc)
        return {}
    return {str(k): int(v) for k, v in frame.groupby("template")["count"].sum().items()} if not frame.empty else {}


def check_templates(ctx: RunContext) -> CheckResult:
    """Template statuses on the WABA, and the templates failing messages used, joined to their status."""
    used = _failing_templates(ctx)
    ctx.evidence.put(FAILING_TEMPLATES, used)
    result, templates = wa.check_templates(_wa_endpoint(ctx), timeout=ctx.profile.read_timeout, used=used,
                                           within=_graph(ctx))
    ctx.evidence.put(TEMPLATES, templates)
    if templates:
        rows = [{"template": t.get("name"), "language": t.get("language"), "status": t.get("status"),
                 "category": t.get("category"), "rejected_reason": t.get("rejected_reason"),
                 "quality": (t.get("quality_score") or {}).get("score"), "failures": used.get(str(t.get("name")), 0)}
                for t in templates]
        result.table = pd.DataFrame(rows).sort_values(["failures", "template"], ascending=[False, True])
    return ctx.record(result)


def plot_templates_involved(ctx: RunContext) -> Figure:
    """Failures per template in the window, each labelled with its status on the WABA."""
    title = "Templates of failing WhatsApp messages (status on the WABA)"
    if (first := not_run(ctx, "wa_templates", "check_templates", title)) is not None:
        return first
    used = ctx.evidence.find(FAILING_TEMPLATES) or {}
    status = {str(t.get("name")): str(t.get("status")) for t in ctx.evidence.find(TEMPLATES) or []}
    frame = pd.DataFrame({"error": [f"{n} ({status.get(n, 'not on WABA')})" for n in used],
                          "count": list(used.values())}).sort_values("count", ascending=False).head(10)
    return charts.plot_top_errors(frame, title=title)


def check_phone_number(ctx: RunContext) -> CheckResult:
    """The sending number: quality rating, status, name status, messaging limit, throughput."""
    return ctx.record(wa.check_phone_number(_wa_endpoint(ctx), timeout=ctx.profile.read_timeout, within=_graph(ctx)))


def check_access_token(ctx: RunContext) -> CheckResult:
    """debug_token: valid? expiry? scopes? (HTTP 200 can still say invalid.)"""
    return ctx.record(wa.check_token(_wa_endpoint(ctx), timeout=ctx.profile.read_timeout, within=_graph(ctx)))


# -- Diagnosis --------------------------------------------------------------------------------------
def diagnose_whatsapp(ctx: RunContext) -> Diagnosis:
    """Name the best-supported cause from the findings; others that also hold are listed."""
    c = CONCLUSIONS
    rules = [
        c.rule(ctx, "token_expired", "the access token cannot be used"),
        c.rule(ctx, "app_permission_denied", "the app lacks a permission Meta requires"),
        c.rule(ctx, "billing_issue", "the business has a payment problem"),
        c.rule(ctx, "account_restricted", "the account is restricted"),
        c.rule(ctx, "phone_not_registered", "the number is not on the Cloud API"),
        c.rule(ctx, "whatsapp_configuration", "Meta does not find the number or account the profile names"),
        c.rule(ctx, "queue_paused", "the WhatsApp queue is paused"),
        c.rule(ctx, "template_rejected", "templates in use are not approved",
               "template errors (not approved, paused or disabled)"),
        c.rule(ctx, "phone_number_quality", "the number's quality is low", "messages are blocked as spam (131048)"),
        Rule("tenant_specific", lambda: tenant_rule(ctx, "messages")),
        c.rule(ctx, "window_expired", "free-form messages sent outside the 24-hour window",
               "free-form messages sent more than 24 h after the customer last replied"),
        c.rule(ctx, "rate_limited", "throughput or rate limits"),
        c.rule(ctx, "recipients_opted_out", "recipients stopped our marketing messages"),
        c.rule(ctx, "marketing_limited", "Meta holds back our marketing messages"),
        c.rule(ctx, "recipients_undeliverable", "messages are undeliverable to many recipients"),
        c.rule(ctx, "invalid_requests", "our requests are malformed"),
        c.rule(ctx, "template_parameters", "messages do not fit their templates"),
        c.rule(ctx, "meta_service_errors", "Meta's Cloud API answers with service errors"),
        c.rule(ctx, "token_expiring", "the access token expires soon"),
    ]
    result = diagnose(SLUG, rules, CAUSES, incident_present=incident_present(ctx),
                      incident_evidence=log_evidence(ctx), needed=needed(ctx), findings=ctx.findings,
                      figures=figures(ctx), notes=c.notes(ctx), ended=ended(ctx),
                      unconcluded=lambda held: c.unconcluded(ctx, held))
    ctx.diagnosis = result
    ctx.write_summary()
    return result


def _not_called_for(ctx: RunContext, action: str, what: str) -> tuple[bool, str] | None:
    """None when the diagnosis names a cause `action` can fix, else (False, why not)."""
    if holding(ctx, MITIGATES[action]):
        return None
    d = ctx.diagnosis
    return False, f"diagnosis is {d.cause if d else 'not made'}: {what}"


# -- Mitigation -------------------------------------------------------------------------------------
def _approved(ctx: RunContext, name: str) -> dict[str, Any] | None:
    return next((t for t in ctx.evidence.find(TEMPLATES) or [] if t.get("name") == name and t.get("status") == "APPROVED"),
                None)


def _bad_templates(ctx: RunContext) -> list[str]:
    f = finding(ctx, "wa_templates")
    if f is None:
        return []
    return sorted(set(f.facts.get("failing_templates_not_approved", {})) | set(f.facts.get("failing_templates_missing", [])))


def _fallback_preflight(ctx: RunContext) -> tuple[bool, str]:
    name = _params(ctx).fallback_template
    if not name:
        return False, "give fallback_template: an APPROVED template to send instead"
    if _approved(ctx, name) is None:
        return False, f"fallback_template {name!r} is not APPROVED on the WABA (run the templates check)"
    return True, f"{name} is APPROVED"


class UseFallbackTemplate(TenantChannelChange):
    """Send the approved fallback template in place of rejected / paused / disabled ones (assumed endpoint)."""

    name = "use_fallback_template"
    title = "Use the approved fallback template"
    channel = "whatsapp"
    key = "template_fallbacks"

    def needed(self) -> tuple[bool, str]:
        return _not_called_for(self.ctx, self.name, "no rejected template to replace") or (
            True, f"templates not approved: {', '.join(_bad_templates(self.ctx)) or 'see the templates check'}")

    def preflight(self) -> tuple[bool, str]:
        return _fallback_preflight(self.ctx)

    def target(self, current: Any) -> Any:
        fallback = _params(self.ctx).fallback_template
        return {**(current or {}), **{bad: fallback for bad in _bad_templates(self.ctx)}}

    def describe(self, count: int) -> str:
        return (f"send {_params(self.ctx).fallback_template} instead of {', '.join(_bad_templates(self.ctx))} "
                f"for {count} tenant(s)")


def use_fallback_template(ctx: RunContext) -> UseFallbackTemplate:
    return UseFallbackTemplate(ctx)


class SubmitCorrectedTemplate(Action):
    """Submit a corrected template for approval: POST /{WABA_ID}/message_templates with the exact payload."""

    name = "submit_corrected_template"
    title = "Submit a corrected template for approval"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def needed(self) -> tuple[bool, str]:
        return _not_called_for(self.ctx, self.name, "no template to correct") or (
            True, "a rejected template needs a corrected version approved")

    def _draft(self) -> dict[str, Any]:
        bad = _bad_templates(self.ctx)
        current = next((t for t in self.ctx.evidence.find(TEMPLATES) or [] if bad and t.get("name") == bad[0]), None)
        if current is None:
            return {}
        return {"name": f"{current['name']}_v2", "language": current.get("language"), "category": current.get("category"),
                "components": current.get("components", []), "rejected_reason_of_original": current.get("rejected_reason")}

    def plan(self) -> Plan:
        path = _params(self.ctx).template_payload_file
        details = {"draft_from_rejected_template": self._draft()}
        if not path:
            return Plan(self.name, "submit a corrected template", details=details,
                        blocked=("give template_payload_file: a JSON file with the corrected template (name, language, "
                                 "category, components); the rejected one's payload is in this plan's details as a start"))
        try:
            payload = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            return Plan(self.name, "submit a corrected template", blocked=f"cannot read {path}: {exc}", details=details)
        missing = TEMPLATE_KEYS - set(payload) if isinstance(payload, dict) else TEMPLATE_KEYS
        if missing:
            return Plan(self.name, "submit a corrected template", details=details,
                        blocked=f"{path} lacks {', '.join(sorted(missing))}")
        endpoint = _wa_endpoint(self.ctx)
        assert endpoint is not None
        listed = [t for t in self.ctx.evidence.find(TEMPLATES) or [] if t.get("name") == payload["name"]]
        if listed:
            return Plan(self.name, f"submit template {payload['name']}", details=details,
                        blocked=(f"template {payload['name']} is already on the WABA (status {listed[0].get('status')}): "
                                 "nothing to submit; Meta reviews it, or give a new name to submit another version"))
        return Plan(self.name, f"submit template {payload['name']} ({payload['language']}, {payload['category']}) for "
                               "approval", steps=[{"call": f"POST /{endpoint.waba_id}/message_templates",
                                                   "payload": payload}], details=details)

    def resources(self, plan: Plan) -> list[str]:
        return [f"whatsapp:template:{plan.steps[0]['payload']['name']}"]

    def verify_by_hand(self, plan: Plan) -> str:
        return f"whether template {plan.steps[0]['payload']['name']} is listed on the WABA (GET /{{WABA_ID}}/message_templates)"

    def apply(self, plan: Plan) -> dict[str, Any]:
        try:
            client = _client(self.ctx)
            return client.submit_template(plan.steps[0]["payload"])
        except (ProviderError, ConfigError) as exc:
            raise MitigationFailed(f"template not submitted: {exc}") from exc

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        name = plan.steps[0]["payload"]["name"]
        templates = _client(self.ctx).templates()
        found = [t for t in templates if t.get("name") == name]
        if not found:
            return False, f"{name} is not listed on the WABA"
        return True, f"{name} submitted, status {found[0].get('status')} (Meta reviews it; approval can take up to a day)"


def submit_corrected_template(ctx: RunContext) -> SubmitCorrectedTemplate:
    return SubmitCorrectedTemplate(ctx)


def list_window_expired_conversations(ctx: RunContext) -> CheckResult:
    """The conversations that can only take template messages (131047), masked, written to the run bundle."""
    codes = [str(c) for c, info in GRAPH_CODES.items() if info.cls == "window_closed"]
    return CHECKS.write_recipient_review(ctx, name="window_expired_conversations",
                                         title="Conversations outside the 24-hour window", codes=codes,
                                         filename=CONVERSATIONS_FILE)


class UseTemplateOutsideWindow(TenantChannelChange):
    """Outside the 24-hour window, send the approved template instead of free-form text (assumed endpoint).

    Nothing free-form is re-sent: the change only affects what the platform sends from now on.
    """

    name = "use_template_outside_window"
    title = "Send the approved template outside the 24-hour window"
    channel = "whatsapp"
    key = "outside_window_template"

    def needed(self) -> tuple[bool, str]:
        return _not_called_for(self.ctx, self.name, "the 24-hour window is not the problem") or (
            True, "free-form messages are being sent to conversations whose 24-hour window has closed")

    def preflight(self) -> tuple[bool, str]:
        return _fallback_preflight(self.ctx)

    def target(self, current: Any) -> Any:
        return _params(self.ctx).fallback_template

    def describe(self, count: int) -> str:
        return f"send {_params(self.ctx).fallback_template} outside the 24-hour window for {count} tenant(s)"


def use_template_outside_window(ctx: RunContext) -> UseTemplateOutsideWindow:
    return UseTemplateOutsideWindow(ctx)


class RefreshAccessToken(Action):
    """Exchange the access token for a new long-lived one and store it in the tenants' channel config.

    The token value never appears in a plan, a result, an output or the audit log.
    """

    name = "refresh_access_token"
    title = "Refresh the long-lived access token"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is not None and "token_expired" in holding(self.ctx, {"token_expired"}):
            return False, ("the access token has expired: Meta exchanges only a token that is still valid — make a new "
                           "system-user token in Business Manager and put it in the platform's config")
        token = finding(self.ctx, "wa_token")
        return _not_called_for(self.ctx, self.name, "the access token is valid and not close to expiry") or (
            True, f"the access token {token.summary if token is not None else 'expires soon'}")

    def plan(self) -> Plan:
        endpoint = _wa_endpoint(self.ctx)
        if endpoint is None or not endpoint.app_id or not endpoint.app_secret_env:
            return Plan(self.name, self.title, blocked="whatsapp.app_id and app_secret_env must be configured")
        tenants = affected_tenants(self.ctx)
        if not tenants:
            return Plan(self.name, self.title, blocked="no tenant to update; give tenant_id")
        steps: list[dict[str, Any]] = [{"call": "GET /oauth/access_token", "grant_type": "fb_exchange_token",
                                        "client_id": endpoint.app_id}]
        steps += [{"call": "PATCH /api/v1/communication/channels/whatsapp", "tenant_id": t, "set": "access_token"}
                  for t in tenants]
        return Plan(self.name, f"exchange the token and store the new one for {len(tenants)} tenant(s)", steps=steps,
                    details={"note": "Meta exchanges a token only while it is still valid; an expired token needs a "
                                     "new system-user token, and the exchange then fails with 190."})

    readback = False  # a new token cannot be told from an old one by reading the plan's world again

    def resources(self, plan: Plan) -> list[str]:
        return ["whatsapp:access-token"] + [f"channel:whatsapp:tenant:{s['tenant_id']}" for s in plan.steps[1:]]

    def verify_by_hand(self, plan: Plan) -> str:
        return ("the tenants' access_token_updated_at (GET /api/v1/communication/channels/whatsapp?tenant_id=…) and "
                "the token's expiry in Meta's debug_token")

    def apply(self, plan: Plan) -> dict[str, Any]:
        try:
            token, expires_in = _client(self.ctx).exchange_token()
        except (ProviderError, ConfigError) as exc:
            raise MitigationFailed(f"token exchange failed: {exc}") from exc
        self.ctx.evidence.put(NEW_TOKEN, token)
        updated: list[str] = []
        for step in plan.steps[1:]:
            try:
                self.ctx.api.update_channel("whatsapp", step["tenant_id"], {"access_token": token})
            except PlatformAPIError as exc:
                raise MitigationFailed(f"new token stored for {len(updated)} of {len(plan.steps) - 1} tenants, then "
                                       f"{exc}; the old token stays for the rest") from exc
            updated.append(step["tenant_id"])
        self.ctx.evidence.put(MITIGATED_AT, datetime.now(UTC))
        return {"updated": updated, "expires_in_days": round(expires_in / 86400, 1) if expires_in else None}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        endpoint = _wa_endpoint(self.ctx)
        assert endpoint is not None
        token = self.ctx.evidence.get(NEW_TOKEN)
        data = wa.Graph(endpoint, timeout=self.ctx.profile.read_timeout, token=token,
                        within=_graph(self.ctx)).debug_token(token)
        if not data.get("is_valid"):
            return False, "the new token is not valid according to debug_token"
        days = (int(data.get("expires_at") or 0) - datetime.now(UTC).timestamp()) / 86400
        stored = [t for t in result["updated"]
                  if self.ctx.api.get_channel("whatsapp", t).get("access_token_updated_at")]
        if len(stored) != len(result["updated"]):
            return False, "the platform does not show the new token for every tenant"
        return True, f"new token valid for {days:.0f} days, stored for {len(stored)} tenant(s)"


def refresh_access_token(ctx: RunContext) -> RefreshAccessToken:
    return RefreshAccessToken(ctx)


class SendTestWhatsApp(SendTestMessage):
    """Send one approved template message to the test number."""

    name = "send_test_whatsapp"
    title = "Send a test WhatsApp message"

    param_name = "test_whatsapp"
    accepted_by = "the Cloud API"

    def plan(self) -> Plan:
        name = _params(self.ctx).fallback_template
        template = _approved(self.ctx, name) if name else next(
            (t for t in self.ctx.evidence.find(TEMPLATES) or [] if t.get("status") == "APPROVED"), None)
        if template is None:
            return Plan(self.name, self.title, blocked="no APPROVED template known (run the templates check)")
        return Plan(self.name, f"send template {template['name']} ({template.get('language')}) to {self.to}",
                    steps=[{"send": "whatsapp template", "template": template["name"],
                            "language": template.get("language", "en_US"), "to": self.to}])

    def apply(self, plan: Plan) -> dict[str, Any]:
        step = plan.steps[0]
        try:
            client = _client(self.ctx)
            out = client.send_template(self.to, step["template"], step["language"])
        except (ProviderError, ConfigError) as exc:
            raise MitigationFailed(f"test message not accepted: {exc}") from exc
        return {"message_id": (out.get("messages") or [{}])[0].get("id")}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        if result.get("message_id"):
            return True, "accepted by the Cloud API"
        return False, f"not accepted: {result}"


def send_test_whatsapp(ctx: RunContext) -> SendTestWhatsApp:
    return SendTestWhatsApp(ctx)


# -- Recovery confirmation --------------------------------------------------------------------------
check_queue_trend = CHECKS.check_queue_trend
plot_queue_trend = CHECKS.plot_queue_trend
check_delivery_receipts = CHECKS.check_delivery_receipts
check_recovery = CHECKS.check_recovery


# -- Post-incident ----------------------------------------------------------------------------------
def post_incident(ctx: RunContext) -> Checklist:
    """Template approval status, quality metrics, and whether token refresh is automated."""
    templates = finding(ctx, "wa_templates")
    approval = (f"{templates.summary}" if templates is not None else "templates were not checked in this run")
    phone = finding(ctx, "wa_phone")
    scores = {str(t.get("name")): (t.get("quality_score") or {}).get("score") for t in ctx.evidence.find(TEMPLATES) or []}
    low = [n for n, q in scores.items() if q in ("YELLOW", "RED")]
    quality = ((f"number: {phone.summary}" if phone is not None else "number not checked")
               + (f"; templates with low quality: {', '.join(low)}" if low else "; no template has a low quality score"))
    token = finding(ctx, "wa_token")
    if token is None:
        refresh, automated = "the token was not checked in this run", False
    elif not token.passed and token.classification not in ("token", "auth"):
        refresh, automated = f"the token could not be checked: {token.summary}", False
    elif token.facts.get("never_expires"):
        refresh, automated = "the token never expires (a system-user token): no refresh needed", True
    else:
        days = token.facts.get("expires_in_days")
        refresh = (f"the token expires in {days} days — refresh is not automated unless a job renews it before then"
                   if days is not None and days > 0 else "the token had expired — refresh was not automated")
        automated = False
    checklist = Checklist("Post-incident", [
        ("Review template approval status", approval, templates is not None and templates.ok),
        ("Check message quality metrics", quality, phone is not None and phone.ok and not low),
        ("Verify token refresh is automated", refresh, automated),
    ])
    ctx.extra["post_incident"] = checklist.to_json()
    ctx.write_summary()
    return checklist


guard_checks(globals(), {
    "check_error_codes": "top_errors",
    "check_templates": "wa_templates",
    "check_phone_number": "wa_phone",
    "check_access_token": "wa_token",
    "check_recovery": "recovery_failure_rate",
})

RUNBOOK = Runbook(
    slug=SLUG, title=TITLE, channels=("whatsapp",), params_cls=Params, actions=ACTIONS, causes=CAUSES,
    dependencies=DEPENDENCIES, needed_fn=needed, time_needs_fn=time_needs, default_scenario=DEFAULT_SCENARIO,
    number=3, demo_parameters=DEMO_PARAMETERS, scenario_defaults=SCENARIO_DEFAULTS,
)
"""This runbook, declared once: the catalog discovers it; the CLI, the run context and the review read it."""

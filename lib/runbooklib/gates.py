"""The gate every mitigation passes through. Nothing changes without an approval bound to the exact plan.

Decisions, in order:
1. `not_needed` — the findings do not call for the action.
2. `blocked` — a precondition in the plan failed (the backup provider's preflight), the resource is
   leased by another run (named), no lease store is configured and `allow_unlocked` was not
   approved, or an earlier apply of this plan was interrupted and its effect cannot be read back.
3. `dry_run` — the default: the plan (its effect set) is shown with its digest; nothing changes.
4. `refused` — not approved, or approved for a different plan: the digest must name the current
   effect set exactly, and the refusal says what differs from the approved one.
5. `already_applied` — this exact plan was applied by a run of this incident (and not undone): skipped.
6. `applied` — approved: under a lease on the plan's resources the action is re-planned (any
   difference is refused), an `applying` record is written and fsynced, then `apply()` and
   `verify()` run and the outcome is recorded against it. `failed` — `apply()` raised, or `verify()`
   said the change did not take.

Approvals come from the `approve` parameter in headless runs (with `dry_run: false`) as
`action@digest`, or from `Gate.approve()` in Jupyter, which must name the digest its dry run showed
and lifts the dry run for that action only. An undo (`undo_<action>`) is bound to the plan applied in
this run. Every decision is written to the audit log. A gate never skips cells and never exits.
"""

from __future__ import annotations

import html
import os
import socket
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runbooklib.actions import DIGEST_LENGTH, DIGEST_RE, Action, Plan, describe_difference
from runbooklib.audit import AuditLog
from runbooklib.errors import ConfigError, RunbookError
from runbooklib.evidence import NotYet
from runbooklib.ledger import IncidentLedger
from runbooklib.params import ALLOW_UNLOCKED, UNDO_PREFIX, Approval, operator_problem
from runbooklib.redact import REDACTOR

_COLOURS = {"not_needed": "#6e7781", "dry_run": "#0969da", "blocked": "#9a6700", "refused": "#9a6700",
            "applied": "#1a7f37", "failed": "#cf222e", "undone": "#8250df", "already_applied": "#1a7f37"}
LeaseFactory = Callable[[list[str], dict[str, Any]], Any]
"""Takes a lease on resources for a holder: returns a context manager (the lease), raises `LeaseHeld` (naming the
holder) or `LeaseStoreError` (the store did not answer)."""


@dataclass
class GateOutcome:
    """What the gate decided for one action, and why."""

    action: str
    title: str
    decision: str
    message: str
    plan: Plan | None = None
    result: dict[str, Any] = field(default_factory=dict)
    approval: dict[str, Any] | None = None

    @property
    def changed(self) -> bool:
        return self.decision in ("applied", "undone")

    def approve_line(self) -> str | None:
        """The parameters that approve exactly this plan (for a dry run or a refusal), else None."""
        if (self.plan is None or self.decision not in ("dry_run", "refused") or not self.plan.steps
                or self.action.startswith(UNDO_PREFIX)):
            return None
        return f"-p dry_run false -p operator <you> -p approve {self.action}@{self.plan.digest}"

    def to_json(self) -> dict[str, Any]:
        return REDACTOR.mapping({
            "action": self.action, "title": self.title, "decision": self.decision, "message": self.message,
            "plan": self.plan.to_json() if self.plan else None, "result": self.result, "approval": self.approval,
            "approve_with": self.approve_line(),
        })

    def _repr_html_(self) -> str:
        colour = _COLOURS.get(self.decision, "#57606a")
        out = [f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">',
               f'<b style="color:{colour}">{self.decision.upper().replace("_", " ")}</b> &nbsp;'
               f"<b>{_e(self.title)}</b> <code>{_e(self.action)}</code><div>{_e(self.message)}</div>"]
        if self.plan:
            out.append(f"<div>Plan <code>{self.plan.digest}</code>: {_e(self.plan.summary)}</div>")
            if self.plan.steps:
                shown = self.plan.steps[:20]
                out.append("<ol>" + "".join(f"<li><code>{_e(_step(s))}</code></li>" for s in shown) + "</ol>")
                if len(self.plan.steps) > len(shown):
                    out.append(f"<div>… {len(self.plan.steps) - len(shown)} more steps (all in summary.json)</div>")
        if self.result:
            out.append(f"<div>Result: <code>{_e(self.result)}</code></div>")
        out.append("</div>")
        return "".join(out)

    def __str__(self) -> str:
        return REDACTOR.text(f"[{self.decision}] {self.action}: {self.message}")


def _e(value: Any) -> str:
    return html.escape(REDACTOR.text(str(value)))


def _step(step: dict[str, Any], limit: int = 8) -> str:
    def show(v: Any) -> str:
        if isinstance(v, list) and len(v) > limit:
            return "[" + ", ".join(map(str, v[:limit])) + f", … {len(v) - limit} more]"
        return str(v)
    return " ".join(f"{k}={show(v)}" for k, v in step.items())


def check_digest(action: str, digest: str | None, *, where: str = "approve") -> str:
    """The digest of an approval, normalised; a clear `ConfigError` when it is empty or not a printed digest."""
    given = (digest or "").strip().lower()
    if not given:
        raise ConfigError(f"{action}@: the plan digest after '@' is empty (an unset variable?); give the "
                          f"{DIGEST_LENGTH}-character digest its dry run printed", parameter=where)
    if not DIGEST_RE.fullmatch(given):
        raise ConfigError(f"{action}@{given[:80]}: a plan digest is the {DIGEST_LENGTH} hex characters a dry run "
                          "prints (or the full 64); shorter prefixes are not accepted", parameter=where)
    return given


class Gate:
    """Runs actions through the decision sequence and audits every decision."""

    def __init__(self, *, dry_run: bool, approvals: Iterable[Approval], operator: str, audit: AuditLog,
                 known_actions: Iterable[str], ledger: IncidentLedger | None = None,
                 leases: LeaseFactory | None = None, lease_store: str = "", run: str = "",
                 context: dict[str, Any] | None = None) -> None:
        self.dry_run = dry_run
        self.operator = operator
        self.audit = audit
        self.known_actions = set(known_actions)
        self._approvals: dict[str, Approval] = {a.action: a for a in approvals}
        self.outcomes: list[GateOutcome] = []
        self._applied: dict[str, tuple[Plan, dict[str, Any]]] = {}
        self.ledger = ledger or IncidentLedger(None, audit, run=run)
        self.leases = leases
        """Takes a lease (see `LeaseFactory`); None when the profile names no shared store."""
        self.lease_store = lease_store
        """Where leases are kept, for the record (never a secret: a redacted URL or a name)."""
        self.run_name = run
        self.context = dict(context or {})
        """Where plans apply (the environment): part of every digest."""

    def approve(self, action: str, *, operator: str, plan: str) -> Approval:
        """Approve one action interactively (Jupyter), bound to the plan digest shown by its dry run.

        This lifts the dry run for that action only; re-run its cell to apply.
        """
        action, operator, plan = str(action), str(operator or ""), str(plan or "")
        if action not in self.known_actions and action != ALLOW_UNLOCKED:
            raise ConfigError(f"no action named {action!r}; actions: {', '.join(sorted(self.known_actions))}",
                              parameter="approve")
        if not operator.strip():
            raise ConfigError("an approval needs the operator's name", parameter="operator")
        why = operator_problem(operator)
        if why:
            raise ConfigError(f"operator: {why}", parameter="operator")
        REDACTOR.add_public(operator)
        if action == ALLOW_UNLOCKED or action.startswith(UNDO_PREFIX):
            digest = plan.strip().lower() or None
            if digest is not None:
                check_digest(action, digest, where="plan")
        else:
            digest = check_digest(action, plan, where="plan")
        approval = Approval(action=action, plan_digest=digest, source=f"interactive:{operator.strip()}")
        self._approvals[action] = approval
        return approval

    def _decide(self, name: str, plan: Plan) -> tuple[str, Approval | None, str]:
        """("dry_run" | "refused" | "approved", approval, reason)."""
        approval = self._approvals.get(name)
        interactive = approval is not None and approval.source.startswith("interactive")
        if self.dry_run and not interactive:
            return "dry_run", None, ""
        if approval is None:
            return "refused", None, (f"not approved: add {name}@{plan.digest} to `approve` "
                                     "(with dry_run false and an operator) to apply this plan")
        if not name.startswith(UNDO_PREFIX) and not approval.plan_digest:
            return "refused", None, (f"approval of {name} names no plan digest; approve exactly this plan with "
                                     f"{name}@{plan.digest}")
        return "approved", approval, ""

    def _approved(self, name: str, approval: Approval, plan: Plan) -> dict[str, Any]:
        source, _, by = approval.source.partition(":")
        return {"action": name, "by": by or self.operator, "source": source, "plan_digest": plan.digest,
                "approved_digest": approval.plan_digest, "at": datetime.now(UTC).isoformat(timespec="seconds")}

    def _record(self, outcome: GateOutcome, **extra: Any) -> GateOutcome:
        self.audit.record(action=outcome.action, decision=outcome.decision, message=outcome.message,
                          plan=outcome.plan.to_json() if outcome.plan else None,
                          plan_digest=outcome.plan.digest if outcome.plan else None,
                          approval=outcome.approval, result=outcome.result, run=self.run_name or None, **extra)
        self.outcomes.append(outcome)
        return outcome

    def _plan(self, action: Action) -> Plan:
        plan = action.plan()
        plan.context = {**plan.context, **self.context}
        return plan

    def _holder(self, action: str) -> dict[str, Any]:
        return {"incident": self.audit.incident, "run": self.run_name, "operator": self.operator, "action": action,
                "host": socket.gethostname(), "pid": os.getpid()}

    def _mismatch(self, name: str, approved: str, plan: Plan, *, when: str) -> str:
        earlier = self.ledger.plan(name, approved)
        if earlier is None:
            return (f"approval was for plan {approved}, but the plan {when} is {plan.digest} ({plan.summary}); no run "
                    f"of this incident recorded plan {approved}: review the plan and approve {name}@{plan.digest}")
        current = REDACTOR.data(plan.steps)
        difference = describe_difference(earlier["steps"], current)
        if earlier.get("context") != plan.context:
            difference = f"it was planned for {earlier.get('context') or 'another place'}, this is {plan.context}"
        elif difference == "the same targets, in a different form":
            difference = "they differ in values the record masks (a recipient, a secret-bearing field)"
        return (f"approval was for plan {approved} ({earlier.get('summary')}), but the plan {when} is {plan.digest} "
                f"({plan.summary}): {difference}. Nothing was changed; review the new plan and approve "
                f"{name}@{plan.digest}")

    def _already(self, name: str, title: str, plan: Plan, approved: dict[str, Any], digest: str) -> GateOutcome | None:
        done = self.ledger.applied(name, digest)
        if done is None:
            return None
        by = "this run" if done.run == self.run_name else f"run {done.run}"
        outcome = GateOutcome(name, title, "already_applied",
                              f"plan {digest} was already applied by {by} at {done.at}: skipped, nothing repeated",
                              plan, {"by_run": done.run}, approved)
        return self._record(outcome, by_run=done.run, approved_digest=digest)

    def run(self, action: Action) -> GateOutcome:
        """Decide and (if approved) apply and verify one action. Never raises for a refused or failed action."""
        name, title = action.name, action.title
        try:
            needed, why = action.needed()
        except NotYet as exc:  # a cell it rests on has not run: nothing to decide on yet
            return self._record(GateOutcome(name, title, "blocked", str(exc)))
        except Exception as exc:
            return self._record(GateOutcome(name, title, "failed", f"could not decide whether needed: {exc}"))
        if not needed:
            return self._record(GateOutcome(name, title, "not_needed", why))
        try:
            plan = self._plan(action)
        except NotYet as exc:
            return self._record(GateOutcome(name, title, "blocked", str(exc)))
        except Exception as exc:
            return self._record(GateOutcome(name, title, "failed", f"could not plan: {exc}"),
                                error=traceback.format_exception_only(exc)[-1].strip())
        if plan.blocked:
            return self._record(GateOutcome(name, title, "blocked", plan.blocked, plan))
        decision, approval, reason = self._decide(name, plan)
        if decision == "dry_run":
            message = (f"dry run: nothing changed. {why}. To apply this exact plan: "
                       f"-p dry_run false -p approve {name}@{plan.digest} -p operator <you>, "
                       f"or in Jupyter ctx.approve({name!r}, operator=..., plan={plan.digest!r})")
            if self._approvals.get(name) is not None:
                message = (f"dry run: nothing changed — {name} was approved, but dry_run is true (give -p dry_run "
                           f"false to apply). {message[len('dry run: nothing changed. '):]}")
            return self._record(GateOutcome(name, title, "dry_run", message, plan))
        if approval is None:
            return self._record(GateOutcome(name, title, "refused", reason, plan))
        digest = str(approval.plan_digest)
        approved = self._approved(name, approval, plan)
        already = self._already(name, title, plan, approved, digest)
        if already is not None:
            return already
        if not plan.matches(digest):
            return self._record(GateOutcome(name, title, "refused", self._mismatch(name, digest, plan, when="now"),
                                            plan, approval=approved), approved_digest=digest)
        return self._under_lease(action, plan, approved, digest)

    def _lease(self, action: Action, plan: Plan) -> tuple[Any, str | None, dict[str, Any]]:
        """(lease context or None, why it cannot apply or None, what to record about the lease)."""
        try:
            resources = sorted(set(action.resources(plan)))
        except Exception as exc:  # a plan without what its action names as resources: do not guess, do not apply
            return None, f"could not tell what this plan changes, so no lease can be taken: {exc}", {}
        if self.leases is None:
            unlocked = self._approvals.get(ALLOW_UNLOCKED)
            if unlocked is None:
                return None, ("no shared lease store is configured for this environment (redis in the profile), so "
                              "another run could apply the same change at the same time; configure one, or approve "
                              f"{ALLOW_UNLOCKED} (audited) to apply without a lease"), {"resources": resources}
            by = unlocked.source.partition(":")[2] or self.operator
            return None, None, {"resources": resources, "store": None, "unlocked_by": by}
        try:
            lease = self.leases(resources, self._holder(action.name))
        except RunbookError as exc:
            holder = getattr(exc, "holder", None)
            if holder is not None:
                return None, (f"{getattr(exc, 'resource', 'a resource')} is being changed by another run: "
                              f"{_holder_text(holder)}; wait for it to finish (or expire) and run again"), {
                                  "resources": resources, "held_by": holder}
            return None, f"the lease store did not answer, so nothing can be applied safely: {exc}", {
                "resources": resources, "store": self.lease_store}
        return lease, None, {"resources": resources, "store": self.lease_store}  # never its token: it releases the lease

    def _under_lease(self, action: Action, plan: Plan, approved: dict[str, Any], digest: str) -> GateOutcome:
        name, title = action.name, action.title
        lease, why, lease_record = self._lease(action, plan)
        if why is not None:
            return self._record(GateOutcome(name, title, "blocked", why, plan, approval=approved),
                                lease=lease_record, approved_digest=digest)
        try:
            if lease is not None:
                lease.__enter__()
            return self._apply(action, plan, approved, digest, lease, lease_record)
        finally:
            if lease is not None:
                lease.__exit__(None, None, None)

    def _apply(self, action: Action, plan: Plan, approved: dict[str, Any], digest: str, lease: Any,
               lease_record: dict[str, Any]) -> GateOutcome:
        name, title = action.name, action.title
        already = self._already(name, title, plan, approved, digest)  # another run may have finished meanwhile
        if already is not None:
            return already
        damage = self.ledger.damage()
        if damage:
            return self._record(GateOutcome(
                name, title, "blocked",
                "the incident's record of earlier runs is damaged, so it cannot say whether this plan was already "
                f"applied: {'; '.join(damage[:3])}" + (f" (and {len(damage) - 3} more)" if len(damage) > 3 else "")
                + ". Check those runs' changes by hand (runbook review lists them) before applying anything",
                plan, approval=approved), approved_digest=digest)
        cut = self.ledger.interrupted(name, digest)
        if cut is not None and not action.readback:
            return self._record(GateOutcome(
                name, title, "blocked",
                f"run {cut.run} was interrupted while applying plan {digest} at {cut.at}; whether it happened cannot "
                f"be read back, so it is not repeated. Check by hand: {action.verify_by_hand(plan)}", plan,
                approval=approved), approved_digest=digest, interrupted_run=cut.run)
        try:
            now = self._plan(action)
        except Exception as exc:
            return self._record(GateOutcome(name, title, "failed", f"could not re-plan before applying: {exc}", plan,
                                            approval=approved), approved_digest=digest)
        if now.blocked or not now.matches(digest):
            message = (f"the plan changed before it could be applied: {now.blocked}" if now.blocked else
                       self._mismatch(name, digest, now, when="re-read before applying"))
            return self._record(GateOutcome(name, title, "refused", message, now, approval=approved),
                                approved_digest=digest)
        plan = now
        try:
            applying = self.audit.record(action=name, decision="applying", message=f"applying plan {plan.digest}",
                                         plan=plan.to_json(), plan_digest=plan.digest, approval=approved,
                                         run=self.run_name or None, lease=lease_record,
                                         verify_by_hand=action.verify_by_hand(plan),
                                         resumes=cut.run if cut is not None else None)
        except OSError as exc:  # no record, no change: the write-ahead rule
            outcome = GateOutcome(name, title, "failed", f"the applying record could not be written ({exc}); nothing "
                                  "was changed", plan, approval=approved)
            self.outcomes.append(outcome)
            return outcome
        of = applying.get("seq")
        try:
            result = action.apply(plan)
        except Exception as exc:
            return self._record(GateOutcome(name, title, "failed", f"apply failed: {exc}", plan, approval=approved),
                                of=of)
        try:
            ok, detail = action.verify(plan, result)
        except Exception as exc:
            ok, detail = False, f"verify raised: {exc}"
        result = {**result, "verified": ok, "verification": detail}
        lost = getattr(lease, "lost", None) if lease is not None else None
        if lost:
            result["lease_lost"] = str(lost)
        if not ok:
            return self._record(GateOutcome(name, title, "failed", f"applied but not verified: {detail}", plan,
                                            result, approved), of=of)
        self._applied[name] = (plan, result)
        return self._record(GateOutcome(name, title, "applied", detail, plan, result, approved), of=of)

    def undo(self, action: Action) -> GateOutcome:
        """Undo an action applied in this run; gated by the approval `undo_<action>`."""
        name = UNDO_PREFIX + action.name
        title = f"Undo: {action.title}"
        if action.name not in self._applied:
            return self._record(GateOutcome(name, title, "not_needed", f"{action.name} was not applied in this run"))
        if not action.can_undo:
            return self._record(GateOutcome(name, title, "blocked", f"{action.name} has no undo"))
        plan, applied = self._applied[action.name]
        undo_plan = Plan(name, f"put back what {action.name} changed (plan {plan.digest})",
                         steps=[{"undo": action.name, "plan": plan.digest}, *plan.steps], details={"applied": applied},
                         context=dict(self.context))
        decision, approval, reason = self._decide(name, undo_plan)
        if decision == "dry_run":
            return self._record(GateOutcome(name, title, "dry_run",
                                            f"dry run: nothing changed; approve {name} to roll back", undo_plan))
        if approval is None:
            return self._record(GateOutcome(name, title, "not_needed", (
                f"not requested: {action.name} stays applied (approve {name} in the run that applies it to roll it "
                "back)"), undo_plan))
        if approval.plan_digest and not (undo_plan.matches(approval.plan_digest) or plan.matches(approval.plan_digest)):
            return self._record(GateOutcome(name, title, "refused", (
                f"approval was for {approval.plan_digest}, but this run applied plan {plan.digest} (undo "
                f"{undo_plan.digest}); approve {name} or {name}@{undo_plan.digest}"), undo_plan))
        approved = self._approved(name, approval, undo_plan)
        lease, why, lease_record = self._lease(action, plan)
        if why is not None:
            return self._record(GateOutcome(name, title, "blocked", why, undo_plan, approval=approved),
                                lease=lease_record)
        try:
            if lease is not None:
                lease.__enter__()
            applying = self.audit.record(action=name, decision="applying", message=f"undoing plan {plan.digest}",
                                         plan=undo_plan.to_json(), plan_digest=undo_plan.digest, approval=approved,
                                         run=self.run_name or None, lease=lease_record, undoes=plan.digest,
                                         verify_by_hand=f"whether {action.name} was rolled back: {plan.summary}")
            try:
                result = action.undo(plan, applied)
            except Exception as exc:
                return self._record(GateOutcome(name, title, "failed", f"undo failed: {exc}", undo_plan,
                                                approval=approved), of=applying.get("seq"))
        finally:
            if lease is not None:
                lease.__exit__(None, None, None)
        del self._applied[action.name]
        return self._record(GateOutcome(name, title, "undone", "rolled back", undo_plan, result, approved),
                            of=applying.get("seq"), undoes=plan.digest)


def _holder_text(holder: Any) -> str:
    if not isinstance(holder, dict):
        return str(holder)
    parts = [f"{k} {holder[k]}" for k in ("incident", "run", "operator", "action") if holder.get(k)]
    if holder.get("expires"):
        parts.append(f"lease expires {holder['expires']}")
    return ", ".join(parts) or "another run"

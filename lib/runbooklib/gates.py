"""The gate every mitigation passes through. Nothing changes without an approval bound to the plan.

Decisions, in order:
1. `not_needed` — the findings do not call for the action.
2. `blocked` — a precondition in the plan failed (e.g. the backup provider's preflight check).
3. `dry_run` — the default: the plan is shown with its digest; nothing changes.
4. `refused` — not approved, or approved for a different plan digest.
5. `applied` — approved: `apply()` then `verify()` succeeded.
   `failed` — `apply()` raised, or `verify()` said the change did not take.

Approvals come from the `approve` parameter in headless runs (with `dry_run: false`), or from
`Gate.approve()` in Jupyter, which must name the plan digest it saw and lifts the dry run for that
action only. Every decision is written to the audit log. A gate never skips cells and never exits.
"""

from __future__ import annotations

import html
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runbooklib.actions import Action, Plan
from runbooklib.audit import AuditLog
from runbooklib.errors import ConfigError
from runbooklib.params import Approval
from runbooklib.redact import REDACTOR

UNDO_PREFIX = "undo_"
_COLOURS = {"not_needed": "#6e7781", "dry_run": "#0969da", "blocked": "#9a6700", "refused": "#9a6700",
            "applied": "#1a7f37", "failed": "#cf222e", "undone": "#8250df"}


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

    def to_json(self) -> dict[str, Any]:
        return REDACTOR.mapping({
            "action": self.action, "title": self.title, "decision": self.decision, "message": self.message,
            "plan": self.plan.to_json() if self.plan else None, "result": self.result, "approval": self.approval,
        })

    def _repr_html_(self) -> str:
        colour = _COLOURS.get(self.decision, "#57606a")
        out = [f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">',
               f'<b style="color:{colour}">{self.decision.upper().replace("_", " ")}</b> &nbsp;'
               f"<b>{_e(self.title)}</b> <code>{_e(self.action)}</code><div>{_e(self.message)}</div>"]
        if self.plan:
            out.append(f"<div>Plan <code>{self.plan.digest}</code>: {_e(self.plan.summary)}</div>")
            if self.plan.steps:
                out.append("<ol>" + "".join(f"<li><code>{_e(_step(s))}</code></li>" for s in self.plan.steps) + "</ol>")
        if self.result:
            out.append(f"<div>Result: <code>{_e(self.result)}</code></div>")
        out.append("</div>")
        return "".join(out)

    def __str__(self) -> str:
        return REDACTOR.text(f"[{self.decision}] {self.action}: {self.message}")


def _e(value: Any) -> str:
    return html.escape(REDACTOR.text(str(value)))


def _step(step: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in step.items())


class Gate:
    """Runs actions through the decision sequence and audits every decision."""

    def __init__(self, *, dry_run: bool, approvals: Iterable[Approval], operator: str, audit: AuditLog,
                 known_actions: Iterable[str]) -> None:
        self.dry_run = dry_run
        self.operator = operator
        self.audit = audit
        self.known_actions = set(known_actions)
        self._approvals: dict[str, Approval] = {a.action: a for a in approvals}
        self.outcomes: list[GateOutcome] = []
        self._applied: dict[str, tuple[Plan, dict[str, Any]]] = {}

    def approve(self, action: str, *, operator: str, plan: str) -> Approval:
        """Approve one action interactively (Jupyter), bound to the plan digest shown by its dry run.

        This lifts the dry run for that action only; re-run its cell to apply.
        """
        if action not in self.known_actions:
            raise ConfigError(f"no action named {action!r}; actions: {', '.join(sorted(self.known_actions))}",
                              parameter="approve")
        if not operator.strip():
            raise ConfigError("an approval needs the operator's name", parameter="operator")
        if not plan.strip():
            raise ConfigError("an interactive approval must name the plan digest its dry run showed",
                              parameter="plan")
        approval = Approval(action=action, plan_digest=plan.strip(), source=f"interactive:{operator.strip()}")
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
        if approval.plan_digest and not plan.digest.startswith(approval.plan_digest):
            return "refused", None, (f"approval was for plan {approval.plan_digest}, but the plan is now "
                                     f"{plan.digest}; review the new plan and approve it")
        return "approved", approval, ""

    def _approved(self, name: str, approval: Approval, plan: Plan) -> dict[str, Any]:
        source, _, by = approval.source.partition(":")
        return {"action": name, "by": by or self.operator, "source": source, "plan_digest": plan.digest,
                "at": datetime.now(UTC).isoformat(timespec="seconds")}

    def _record(self, outcome: GateOutcome, **extra: Any) -> GateOutcome:
        self.audit.record(action=outcome.action, decision=outcome.decision, message=outcome.message,
                          plan=outcome.plan.to_json() if outcome.plan else None,
                          plan_digest=outcome.plan.digest if outcome.plan else None,
                          approval=outcome.approval, result=outcome.result, **extra)
        self.outcomes.append(outcome)
        return outcome

    def run(self, action: Action) -> GateOutcome:
        """Decide and (if approved) apply and verify one action. Never raises for a refused or failed action."""
        name, title = action.name, action.title
        try:
            needed, why = action.needed()
        except Exception as exc:
            return self._record(GateOutcome(name, title, "failed", f"could not decide whether needed: {exc}"))
        if not needed:
            return self._record(GateOutcome(name, title, "not_needed", why))
        try:
            plan = action.plan()
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
            return self._record(GateOutcome(name, title, "dry_run", message, plan))
        if approval is None:
            return self._record(GateOutcome(name, title, "refused", reason, plan))
        approved = self._approved(name, approval, plan)
        try:
            result = action.apply(plan)
        except Exception as exc:
            return self._record(GateOutcome(name, title, "failed", f"apply failed: {exc}", plan,
                                            approval=approved))
        try:
            ok, detail = action.verify(plan, result)
        except Exception as exc:
            ok, detail = False, f"verify raised: {exc}"
        result = {**result, "verified": ok, "verification": detail}
        if not ok:
            return self._record(GateOutcome(name, title, "failed", f"applied but not verified: {detail}", plan,
                                            result, approved))
        self._applied[name] = (plan, result)
        return self._record(GateOutcome(name, title, "applied", detail, plan, result, approved))

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
                         steps=[{"undo": action.name, "plan": plan.digest}], details={"applied": applied})
        decision, approval, reason = self._decide(name, undo_plan)
        if decision == "dry_run":
            return self._record(GateOutcome(name, title, "dry_run",
                                            f"dry run: nothing changed; approve {name} to roll back", undo_plan))
        if approval is None:
            return self._record(GateOutcome(name, title, "refused", reason, undo_plan))
        approved = self._approved(name, approval, undo_plan)
        try:
            result = action.undo(plan, applied)
        except Exception as exc:
            return self._record(GateOutcome(name, title, "failed", f"undo failed: {exc}", undo_plan,
                                            approval=approved))
        del self._applied[action.name]
        return self._record(GateOutcome(name, title, "undone", "rolled back", undo_plan, result, approved))

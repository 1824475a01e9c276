"""The gate's decision order, approval binding and audit, with a small in-test action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runbooklib.actions import Action, Plan
from runbooklib.audit import AuditLog, read_audit
from runbooklib.errors import ConfigError
from runbooklib.gates import Gate
from runbooklib.params import Approval


class Counter(Action):
    """Adds `step` to a counter; records every call."""

    name = "bump"
    title = "Bump the counter"

    def __init__(self, *, needed: bool = True, blocked: str | None = None, fail_apply: bool = False,
                 fail_verify: bool = False, step: int = 1) -> None:
        self.value = 0
        self.calls: list[str] = []
        self._needed, self._blocked, self.fail_apply, self.fail_verify, self.step = (
            needed, blocked, fail_apply, fail_verify, step)

    def needed(self) -> tuple[bool, str]:
        self.calls.append("needed")
        return self._needed, "counter too low" if self._needed else "counter is fine"

    def plan(self) -> Plan:
        self.calls.append("plan")
        return Plan(self.name, f"add {self.step}", steps=[{"add": self.step}], blocked=self._blocked)

    def apply(self, plan: Plan) -> dict[str, Any]:
        self.calls.append("apply")
        if self.fail_apply:
            raise RuntimeError("counter service down")
        self.value += self.step
        return {"value": self.value}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        self.calls.append("verify")
        return (not self.fail_verify), ("counter moved" if not self.fail_verify else "counter did not move")

    @property
    def can_undo(self) -> bool:
        return True

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("undo")
        self.value -= self.step
        return {"value": self.value}


def digest(step: int = 1) -> str:
    return Plan("bump", f"add {step}", steps=[{"add": step}]).digest


BUMP = f"bump@{digest(1)}"


def gate(tmp_path: Path, *, dry_run: bool = False, approve: tuple[str, ...] = (), operator: str = "alice",
         unlocked: bool = True) -> Gate:
    """A gate over tmp_path/audit.jsonl; with no lease store, `allow_unlocked` approved (unless `unlocked` is False)."""
    audit = AuditLog(tmp_path / "audit.jsonl", incident="INC-1", runbook="test", operator=operator)
    approvals = [Approval.parse(a) for a in approve] + ([Approval("allow_unlocked")] if unlocked else [])
    return Gate(dry_run=dry_run, approvals=approvals, operator=operator, audit=audit,
                known_actions=["bump", "undo_bump"])


def test_not_needed_does_not_plan(tmp_path: Path) -> None:
    action = Counter(needed=False)
    out = gate(tmp_path, approve=(BUMP,)).run(action)
    assert out.decision == "not_needed" and action.calls == ["needed"] and action.value == 0


def test_blocked_plan_is_never_applied_even_when_approved(tmp_path: Path) -> None:
    action = Counter(blocked="backup is down")
    out = gate(tmp_path, approve=(BUMP,)).run(action)
    assert out.decision == "blocked" and "apply" not in action.calls


def test_dry_run_wins_over_a_parameter_approval(tmp_path: Path) -> None:
    action = Counter()
    out = gate(tmp_path, dry_run=True, approve=(BUMP,)).run(action)
    assert out.decision == "dry_run" and action.value == 0
    assert out.plan is not None and f"bump@{out.plan.digest}" in out.message


def test_not_approved_is_refused(tmp_path: Path) -> None:
    action = Counter()
    out = gate(tmp_path).run(action)
    assert out.decision == "refused" and action.value == 0


def test_approved_is_applied_and_verified(tmp_path: Path) -> None:
    action = Counter()
    out = gate(tmp_path, approve=(BUMP,)).run(action)
    assert out.decision == "applied" and action.value == 1
    assert action.calls == ["needed", "plan", "plan", "apply", "verify"]  # re-planned before applying
    assert out.approval is not None and out.approval["by"] == "alice" and out.approval["source"] == "parameter"


def test_approval_bound_to_another_plan_is_refused(tmp_path: Path) -> None:
    other = Plan("bump", "add 2", steps=[{"add": 2}]).digest
    action = Counter(step=1)
    out = gate(tmp_path, approve=(f"bump@{other}",)).run(action)
    assert out.decision == "refused" and "approval was for plan" in out.message and action.value == 0
    same = Plan("bump", "add 1", steps=[{"add": 1}])
    assert gate(tmp_path, approve=(f"bump@{same.digest[:8]}",)).run(Counter(step=1)).decision == "refused"
    assert gate(tmp_path, approve=(f"bump@{same.full_digest}",)).run(Counter(step=1)).decision == "applied"


def test_interactive_approval_needs_the_plan_digest_and_lifts_the_dry_run(tmp_path: Path) -> None:
    g = gate(tmp_path, dry_run=True)
    action = Counter()
    first = g.run(action)
    assert first.decision == "dry_run" and first.plan is not None
    with pytest.raises(ConfigError, match="empty"):
        g.approve("bump", operator="bob", plan="")
    with pytest.raises(ConfigError, match="shorter prefixes"):
        g.approve("bump", operator="bob", plan=first.plan.digest[:1])
    with pytest.raises(ConfigError, match="shorter prefixes"):
        g.approve("bump", operator="bob", plan=first.plan.digest[:-1])
    with pytest.raises(ConfigError, match="no action named"):
        g.approve("bmup", operator="bob", plan=first.plan.digest)
    g.approve("bump", operator="bob", plan=first.plan.digest)
    second = g.run(action)
    assert second.decision == "applied" and second.approval is not None
    assert second.approval["by"] == "bob" and second.approval["source"] == "interactive"


@pytest.mark.parametrize(("kwargs", "words"), [({"fail_apply": True}, "apply failed"),
                                               ({"fail_verify": True}, "not verified")])
def test_failures_are_outcomes_not_crashes(tmp_path: Path, kwargs: dict[str, bool], words: str) -> None:
    out = gate(tmp_path, approve=(BUMP,)).run(Counter(**kwargs))
    assert out.decision == "failed" and words in out.message


def test_undo_is_gated_and_restores(tmp_path: Path) -> None:
    action = Counter()
    g = gate(tmp_path, approve=(BUMP,))
    g.run(action)
    assert g.undo(action).decision == "not_needed" and action.value == 1
    g2 = gate(tmp_path / "another-run", approve=(BUMP, "undo_bump"))
    action2 = Counter()
    g2.run(action2)
    assert g2.undo(action2).decision == "undone" and action2.value == 0
    assert g2.undo(action2).decision == "not_needed"


def test_every_decision_is_audited_with_who_and_plan(tmp_path: Path) -> None:
    g = gate(tmp_path, approve=(BUMP,))
    g.run(Counter(needed=False))
    g.run(Counter(blocked="x"))
    g.run(Counter())
    g._approvals["bump"] = Approval("bump", digest(2))
    g.run(Counter(fail_apply=True, step=2))
    entries = read_audit(tmp_path / "audit.jsonl")
    assert [e["decision"] for e in entries] == ["not_needed", "blocked", "applying", "applied", "applying", "failed"]
    assert entries[3]["of"] == entries[2]["seq"] and entries[5]["of"] == entries[4]["seq"]
    assert all(e["incident"] == "INC-1" and e["operator"] == "alice" and e["ts"] for e in entries)
    assert entries[3]["plan_digest"] == entries[3]["plan"]["digest"]
    assert entries[3]["approval"]["plan_digest"] == entries[3]["plan_digest"]

"""Mitigations as action objects: `needed()`, `plan()`, `apply()`, `verify()` and, where one exists, `undo()`.

`plan()` has no side effects: it reads what it must (current configuration, preflight checks) and
returns the **effect set** in its steps: every target that would change — tenants with the value
read before and the value to set, message ids, job ids, queues, payloads, counts — or an explicit,
bounded selection (ids, a cut-off and a maximum). The digest is taken over the action and that
effect set, so an approval bound to a digest covers exactly those effects: the gate re-plans before
applying and refuses on any difference (`describe_difference` says what differs). `apply()` carries
out exactly the plan's steps, never a fresh reading of the world, and leaves nothing half-done: if
it fails part-way it puts back what it changed before raising.

`resources(plan)` names what the action changes, for the gate's lease (one change per resource at a
time, across runs and machines). `readback` says whether a re-plan sees an applied effect (a tenant
already switched is no longer in the plan); actions whose effect cannot be read back (a test message
sent) are never re-applied after an interrupted attempt. `verify_by_hand(plan)` is what a responder
checks when an apply was interrupted and its outcome is unknown.
"""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DIGEST_LENGTH = 16
"""Hex characters of the printed digest (64 bits of SHA-256); an approval must give all of them."""
DIGEST_RE = re.compile(rf"[0-9a-f]{{{DIGEST_LENGTH}}}|[0-9a-f]{{64}}")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass
class Plan:
    """Exactly what an action would do. The digest binds an approval to this plan's effect set (its steps)."""

    action: str
    summary: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    blocked: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    """Where the plan applies (the environment), set by the gate: a digest approved from a staging dry run never
    matches the same steps in production."""

    @property
    def full_digest(self) -> str:
        """SHA-256 over the action, its steps (the effect set) and where it applies, canonical JSON."""
        body: dict[str, Any] = {"action": self.action, "steps": self.steps}
        if self.context:
            body["context"] = self.context
        return hashlib.sha256(canonical(body).encode()).hexdigest()

    @property
    def digest(self) -> str:
        """The printed form: the first 16 hex characters of `full_digest`."""
        return self.full_digest[:DIGEST_LENGTH]

    def matches(self, digest: str | None) -> bool:
        """Whether `digest` names this plan: the printed form or the full digest, exactly (never a prefix)."""
        given = (digest or "").strip().lower()
        return given in (self.digest, self.full_digest)

    @property
    def size(self) -> int:
        """How many targets the plan changes (list entries of its steps, or one per step)."""
        return sum(_targets(step) for step in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "summary": self.summary, "steps": self.steps, "blocked": self.blocked,
                "details": self.details, "context": self.context, "digest": self.digest, "targets": self.size}


def _targets(step: dict[str, Any]) -> int:
    lists = [v for v in step.values() if isinstance(v, list)]
    return max((len(v) for v in lists), default=1)


def _atoms(steps: Iterable[dict[str, Any]]) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """A plan's steps as comparable parts: targets (a step without lists, e.g. one tenant's change; each entry of a
    list, e.g. a message id) and settings (each scalar of a step with lists, e.g. its maximum), by (scope, name)."""
    targets: dict[str, str] = {}
    settings: dict[tuple[str, str], str] = {}
    for step in steps:
        if not isinstance(step, dict):
            targets[canonical(step)] = str(step)
            continue
        scalars = {k: v for k, v in step.items() if not isinstance(v, list)}
        lists = {k: v for k, v in step.items() if isinstance(v, list)}
        if not lists:
            targets[canonical(scalars)] = ", ".join(f"{k}={v}" for k, v in sorted(scalars.items()))
            continue
        scope = str(step.get("queue") or step.get("tenant_id") or "")
        where = f" ({scope})" if scope else ""
        for key, value in scalars.items():
            settings[(scope, key)] = f"{value}"
        for key, values in lists.items():
            for value in values:
                targets[canonical([scope, key, value])] = f"{key[:-1] if key.endswith('s') else key} {value}{where}"
    return targets, settings


def describe_difference(approved: list[dict[str, Any]], current: list[dict[str, Any]], *, limit: int = 5) -> str:
    """What differs between two effect sets, in a line: targets the current plan adds and drops (with examples),
    and settings that changed."""
    (old, old_settings), (new, new_settings) = _atoms(approved), _atoms(current)
    added = [new[k] for k in new if k not in old]
    dropped = [old[k] for k in old if k not in new]
    parts = []
    for label, items in (("added", added), ("dropped", dropped)):
        if items:
            shown = "; ".join(items[:limit]) + (f"; … {len(items) - limit:,} more" if len(items) > limit else "")
            parts.append(f"{label} {len(items):,}: {shown}")
    changed = [f"{key}{f' ({scope})' if scope else ''} {old_settings.get((scope, key), '—')} → "
               f"{new_settings.get((scope, key), '—')}" for scope, key in sorted(set(old_settings) | set(new_settings))
               if old_settings.get((scope, key)) != new_settings.get((scope, key))]
    if changed:
        parts.append("changed: " + "; ".join(changed[:limit]))
    return " · ".join(parts) if parts else "the same targets, in a different form"


class Action(ABC):
    """One gated mitigation."""

    name: str = ""
    title: str = ""
    readback: bool = True
    """A re-plan sees an applied effect (so an interrupted apply can be judged from the world)."""

    @abstractmethod
    def needed(self) -> tuple[bool, str]:
        """Whether the current findings call for this action, and why (no side effects)."""

    @abstractmethod
    def plan(self) -> Plan:
        """What would change (no side effects). Set `blocked` when a precondition fails."""

    @abstractmethod
    def apply(self, plan: Plan) -> dict[str, Any]:
        """Carry out `plan`; return what was done. Raise on failure after undoing partial changes."""

    @abstractmethod
    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        """Check that the change took effect."""

    def resources(self, plan: Plan) -> list[str]:
        """What this plan changes, as lease names (`channel:email:tenant:t-1`, `queue:sms`, …)."""
        return [f"action:{self.name}"]

    def verify_by_hand(self, plan: Plan) -> str:
        """What to check by hand when applying `plan` was interrupted and its outcome is unknown."""
        return f"whether this happened: {plan.summary}"

    @property
    def can_undo(self) -> bool:
        return False

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        """Put back what `apply()` changed."""
        raise NotImplementedError(f"{self.name} has no undo")

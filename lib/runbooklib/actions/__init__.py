"""Mitigations as action objects: `needed()`, `plan()`, `apply()`, `verify()` and, where one exists, `undo()`.

`plan()` has no side effects: it reads what it must (current configuration, preflight checks) and
says exactly what would change — ids, counts, calls. The gate (`runbooklib.gates`) decides whether
`apply()` runs. `apply()` leaves nothing half-done: if it fails part-way it puts back what it changed
before raising.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Plan:
    """Exactly what an action would do. The digest binds an approval to this plan."""

    action: str
    summary: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    blocked: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """12 hex characters of SHA-256 over the action and its steps (what would change)."""
        body = json.dumps({"action": self.action, "steps": self.steps}, sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:12]

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "summary": self.summary, "steps": self.steps, "blocked": self.blocked,
                "details": self.details, "digest": self.digest}


class Action(ABC):
    """One gated mitigation."""

    name: str = ""
    title: str = ""

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

    @property
    def can_undo(self) -> bool:
        return False

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        """Put back what `apply()` changed."""
        raise NotImplementedError(f"{self.name} has no undo")

"""The incident's ledger: every gate decision of every run of one incident, read before anything is applied.

A run's own decisions come from its `AuditLog` (in memory, written as they happen); the other runs'
from their bundles' `audit.jsonl` under the incident's folder (a run bound for S3 is given copies of
the incident's earlier audits by the runner). The gate asks it two things before applying a plan
approved by digest: was this exact plan already applied (by this run or another, and not undone
since)? And was applying it interrupted, with its outcome unknown?
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbooklib.audit import AuditLog, read_audit, read_audit_lines
from runbooklib.records import verify_ledger

AUDIT = "audit.jsonl"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class Entry:
    run: str
    entry: dict[str, Any]

    @property
    def at(self) -> str:
        return str(self.entry.get("ts") or "")


class IncidentLedger:
    """The decisions of every run of one incident (`incident_dir`), this run's (`current`) included."""

    def __init__(self, incident_dir: Path | None, current: AuditLog, *, run: str) -> None:
        self.incident_dir = incident_dir
        self.current = current
        self.run = run

    def _entries(self) -> Iterator[Entry]:
        if self.incident_dir is not None and self.incident_dir.is_dir():
            for bundle in sorted(p for p in self.incident_dir.iterdir() if p.is_dir() and p.name != self.run):
                for entry in read_audit(bundle / AUDIT):
                    yield Entry(bundle.name, entry)
        for entry in self.current.entries:
            yield Entry(self.run, entry)

    def damage(self) -> list[str]:
        """Why the incident's record cannot be trusted to say what was applied: an audit of another run that was
        edited, truncated mid-line, or had lines deleted, inserted or moved (older, unchained logs are read as is)."""
        found: list[str] = []
        if self.incident_dir is None or not self.incident_dir.is_dir():
            return found
        for bundle in sorted(p for p in self.incident_dir.iterdir() if p.is_dir() and p.name != self.run):
            path = bundle / AUDIT
            problems: list[str] = []
            numbered = read_audit_lines(path, problems)
            try:
                summary = json.loads((bundle / SUMMARY).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                summary = None
            problems += verify_ledger(summary if isinstance(summary, dict) else None, path, numbered, None)
            last = len(path.read_bytes().rstrip(b"\n").split(b"\n")) if path.exists() else 0  # torn by a kill
            found += [f"run {bundle.name}: {p}" for p in problems
                      if "older record" not in p and f"line {last} is not readable" not in p]
        return found

    def _of(self, action: str, digest: str) -> list[Entry]:
        digest = digest.lower()
        return sorted((e for e in self._entries()
                       if e.entry.get("action") == action and str(e.entry.get("plan_digest") or "").lower() == digest),
                      key=lambda e: e.at)

    def applied(self, action: str, digest: str) -> Entry | None:
        """The record of this plan applied (or found applied) and not undone since, if there is one."""
        found = [e for e in self._of(action, digest) if e.entry.get("decision") in ("applied", "already_applied")]
        if not found:
            return None
        last = found[-1]
        undone = [e for e in self._entries() if e.entry.get("decision") == "undone"
                  and str(e.entry.get("undoes") or "").lower() == digest.lower() and e.at >= last.at]
        return None if undone else last

    def interrupted(self, action: str, digest: str) -> Entry | None:
        """An `applying` record of this plan with no outcome after it: the apply was cut off, its outcome unknown."""
        for found in reversed(self._of(action, digest)):
            if found.entry.get("decision") != "applying":
                continue
            seq = found.entry.get("seq")
            same_run = [e for e in self._entries() if e.run == found.run]
            if not any(e.entry.get("of") == seq and seq is not None for e in same_run):
                return found
        return None

    def plan(self, action: str, digest: str) -> dict[str, Any] | None:
        """The plan (effect set) a run of this incident recorded under `digest`: what an approval approved."""
        for found in reversed(self._of(action, digest)):
            plan = found.entry.get("plan")
            if isinstance(plan, dict) and isinstance(plan.get("steps"), list):
                return plan
        return None

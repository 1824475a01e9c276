"""The incident's ledger: every gate decision of every run of one incident, read before anything is applied.

A run's own decisions come from its `audit.jsonl` (so that a bundle reopened in Jupyter remembers
what an earlier session applied); the other runs' from their bundles under the incident's folder (a
run bound for S3 is given copies of the incident's earlier audits by the runner). The gate asks it,
before applying a plan approved by digest: was this exact plan already applied (by this run or another, and not undone
since)? And was applying it interrupted, with its outcome unknown?
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbooklib.actions import DIGEST_LENGTH
from runbooklib.audit import AuditLog, read_audit, read_audit_lines, unfinished
from runbooklib.bundle import AUDIT, SUMMARY
from runbooklib.records import verify_ledger


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

    def _bundles(self) -> list[Path]:
        if self.incident_dir is None or not self.incident_dir.is_dir():
            return []
        return sorted(p for p in self.incident_dir.iterdir() if p.is_dir() and p.name != self.run)

    def _runs(self) -> dict[str, list[dict[str, Any]]]:
        """Every run's audit entries, read once per question, by run (this run's last)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for bundle in self._bundles():
            try:
                out[bundle.name] = read_audit(bundle / AUDIT)
            except OSError:
                out[bundle.name] = []  # unreadable: `damage()` says so, and the gate does not apply
        path = self.current.path
        try:  # this run's record as written: a bundle reopened in Jupyter holds what its earlier session applied
            out[self.run] = read_audit(path) if path is not None and path.is_file() else list(self.current.entries)
        except OSError:
            out[self.run] = list(self.current.entries)
        return out

    @staticmethod
    def _all(runs: dict[str, list[dict[str, Any]]]) -> Iterator[Entry]:
        return (Entry(run, entry) for run, entries in runs.items() for entry in entries)

    def damage(self) -> list[str]:
        """Why the incident's record cannot be trusted to say what was applied: another run's audit edited,
        truncated, deleted, or with lines deleted, inserted or moved; its seal or its summary gone; or a change its
        summary lists that its audit does not hold. Only a genuinely older record (no chain, no seal, no change in
        its summary that the audit lacks) is read as is, and a last line torn by a kill is a crash, not damage."""
        found: list[str] = []
        for bundle in self._bundles():
            found += [f"run {bundle.name}: {p}" for p in _bundle_damage(bundle)]
        return found

    @staticmethod
    def _of(entries: Iterator[Entry], action: str, digest: str) -> list[Entry]:
        digest = printed(digest)
        return sorted((e for e in entries
                       if e.entry.get("action") == action and printed(str(e.entry.get("plan_digest") or "")) == digest),
                      key=lambda e: e.at)

    def applied(self, action: str, digest: str) -> Entry | None:
        """The record of this plan applied (or found applied) and not undone since, if there is one."""
        runs = self._runs()
        found = [e for e in self._of(self._all(runs), action, digest)
                 if e.entry.get("decision") in ("applied", "already_applied")]
        if not found:
            return None
        last = found[-1]
        undone = [e for e in self._all(runs) if e.entry.get("decision") == "undone"
                  and printed(str(e.entry.get("undoes") or "")) == printed(digest) and e.at >= last.at]
        return None if undone else last

    def interrupted(self, action: str, digest: str) -> Entry | None:
        """An `applying` record of this plan with no outcome after it: the apply was cut off, its outcome unknown."""
        cut = (Entry(run, e) for run, entries in self._runs().items() for e in unfinished(entries))
        found = self._of(cut, action, digest)
        return found[-1] if found else None

    def plan(self, action: str, digest: str) -> dict[str, Any] | None:
        """The plan (effect set) a run of this incident recorded under `digest`: what an approval approved."""
        for found in reversed(self._of(self._all(self._runs()), action, digest)):
            plan = found.entry.get("plan")
            if isinstance(plan, dict) and isinstance(plan.get("steps"), list):
                return plan
        return None


def printed(digest: str) -> str:
    """A digest in its printed form (the record keeps that form; an approval may give the full 64 characters)."""
    return digest.strip().lower()[:DIGEST_LENGTH]


CHANGES = ("applied", "already_applied", "failed", "undone", "applying")


def _bundle_damage(bundle: Path) -> list[str]:
    path = bundle / AUDIT
    problems: list[str] = []
    try:
        numbered = read_audit_lines(path, problems)
        raw = (bundle / SUMMARY).read_text(encoding="utf-8") if (bundle / SUMMARY).exists() else None
    except OSError as exc:
        return [f"its record cannot be read ({exc.__class__.__name__})"]
    try:
        summary = json.loads(raw) if raw is not None else None
    except ValueError:
        summary = None
    if raw is None and not path.exists():
        return []  # a run that stopped before its first cell wrote anything: no gate ran, nothing was applied
    if not isinstance(summary, dict):
        return [f"{SUMMARY} is missing or unreadable, so nothing seals its audit"]
    problems += verify_ledger(summary, path, numbered, None)
    entries = [entry for _, entry in numbered]
    try:
        size = len(path.read_bytes().rstrip(b"\n").split(b"\n")) if path.exists() else 0  # its last line's number
    except OSError:
        size = 0
    chained = any("hash" in e for e in entries)
    out = []
    for problem in problems:
        if f"line {size} is not readable" in problem:
            continue  # the last line, torn by a kill mid-write: the applying record before it says what was cut off
        if "older record" in problem and not chained and "ledger" not in summary:
            continue  # written before records were chained and sealed
        out.append(problem)
    recorded = {(e.get("action"), printed(str(e.get("plan_digest") or ""))) for e in entries}
    for action in summary.get("actions") or []:
        if not isinstance(action, dict) or action.get("decision") not in CHANGES:
            continue
        plan = action.get("plan")
        digest = plan.get("digest") if isinstance(plan, dict) else None
        key = (action.get("action"), printed(str(digest or "")))
        if key not in recorded:
            out.append(f"{SUMMARY} lists {key[0]} {action.get('decision')} (plan {key[1]}), which {AUDIT} does not hold")
    return out

"""The audit log: one JSON line per gate decision, applied or not, written as it happens.

Each entry says who (operator, and who approved), when (UTC), which incident and runbook, which
action, the decision (`not_needed`, `dry_run`, `blocked`, `refused`, `applied`, `failed`, `undone`),
the plan and its digest, and the result. Entries are redacted before they are written, and each
line is flushed and fsynced so that a crash loses no decision already taken.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from runbooklib.redact import REDACTOR

DECISIONS = ("not_needed", "dry_run", "blocked", "refused", "applied", "failed", "undone")


class AuditLog:
    """Append-only JSONL audit log (kept in memory too, for the run summary)."""

    def __init__(self, path: Path | None, *, incident: str, runbook: str, operator: str) -> None:
        self.path = path
        self.incident = incident
        self.runbook = runbook
        self.operator = operator
        self.entries: list[dict[str, Any]] = []

    def record(self, *, action: str, decision: str, **details: Any) -> dict[str, Any]:
        """Write one decision; returns the entry as written."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}")
        entry = REDACTOR.mapping({
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "incident": self.incident,
            "runbook": self.runbook,
            "operator": self.operator or None,
            "action": action,
            "decision": decision,
            **details,
        })
        self.entries.append(entry)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, default=str, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return entry


def read_audit(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Every readable entry of an audit log file. A torn or edited line is skipped and, when `problems` is
    given, reported there ("audit.jsonl line 7 is not readable"); the rest is still read."""
    if not path.exists():
        return []
    entries: list[dict[str, Any]] = []
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        if problems is not None:
            problems.append(f"{path.name} cannot be read ({exc.__class__.__name__})")
        return []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            entry = None
        if isinstance(entry, dict):
            entries.append(entry)
        elif problems is not None:
            problems.append(f"{path.name} line {number} is not readable (torn or edited); skipped")
    return entries

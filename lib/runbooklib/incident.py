"""An incident's runs, as their bundles recorded them: listed, and each record verified as it is read.

`list_runs` reads every bundle of an incident (`summary.json` through `bundle.Summary`, `audit.jsonl`,
`evidence/`) and checks it (`records.verify_ledger`: the audit hash chain, the summary's seals, each
evidence checksum); what fails is a record problem on the `RunRecord`, never a crash. An apply begun
(`applying`) with no outcome is reported as interrupted, outcome unknown. `runbook runs`, the review and
the webhook read runs only through here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbooklib import records
from runbooklib.audit import read_audit_lines, unfinished
from runbooklib.bundle import AUDIT, EVIDENCE, QUARANTINED, SUMMARY, Summary, parse_name
from runbooklib.errors import ConfigError
from runbooklib.params import INCIDENT_RE
from runbooklib.redact import REDACTOR

CHANGED = ("applied", "undone")


NO_HINT = "check the target system by hand for whether the change took effect"
"""What to verify of an interrupted apply whose record says nothing more."""


@dataclass
class RunRecord:
    """One run, as its bundle recorded it."""

    bundle: Path
    summary: Summary
    audit: list[dict[str, Any]] = field(default_factory=list)
    location: str = ""
    """Where the bundle is kept (its folder, or its `s3://` prefix when `bundle` is a local copy)."""
    problems: list[str] = field(default_factory=list)
    """What of the bundle could not be read (a torn audit line, an unreadable summary): reported, not fatal."""

    @property
    def started(self) -> str:
        return self.summary.started_at

    @property
    def runbook(self) -> str:
        return self.summary.runbook

    @property
    def diagnosis(self) -> dict[str, Any]:
        return self.summary.diagnosis or {}

    @property
    def cause(self) -> str:
        return self.summary.cause

    @property
    def unchecked(self) -> list[dict[str, Any]]:
        """What the run could not check (its diagnosis says), each with what and why."""
        return self.summary.unchecked

    @property
    def applied(self) -> list[str]:
        return [str(e.get("action")) for e in self.audit if e.get("decision") in CHANGED]

    def interrupted_entries(self) -> list[dict[str, Any]]:
        """The `applying` entries with no later entry recording their outcome (`of` = their `seq`)."""
        return unfinished(self.audit)

    @property
    def interrupted(self) -> list[dict[str, Any]]:
        """Applies begun and never recorded as finished (the run was killed): their outcome is unknown.
        Each: action, verify_by_hand (what a responder must check), plan_digest, seq, at."""
        return [interruption(e) for e in self.interrupted_entries()]

    @property
    def changed(self) -> list[str]:
        """What this run applied or undid, then what it began applying and never recorded the outcome of."""
        return self.applied + [f"{i['action']} INTERRUPTED (outcome unknown)" for i in self.interrupted]

    @property
    def outcome(self) -> str:
        return self.summary.status

    def line(self) -> str:
        """One line for `runbook runs` (text from the record cannot start another line)."""
        operator = self.summary.operator or "—"
        text = (f"{self.started:<25}  {self.runbook:<27}  {operator:<12}  {self.cause:<28}  "
                f"{', '.join(self.changed) or ('none on record (unconfirmed)' if self.problems else 'nothing applied'):<30}"
                f"  {self.outcome}")
        return "".join(c for c in LINE_BREAKS.sub(" ", text) if c.isprintable())


LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x85\x0b\x0c]+")


def interruption(entry: dict[str, Any]) -> dict[str, Any]:
    return {"action": str(entry.get("action")), "verify_by_hand": str(entry.get("verify_by_hand") or NO_HINT),
            "plan_digest": entry.get("plan_digest"), "seq": entry.get("seq"), "at": entry.get("ts")}


def list_runs(root: Path, incident: str | None = None, *, location: str | None = None,
              evidence: bool | None = None) -> list[RunRecord]:
    """Every run bundle under `root` (or under `root/<incident>`), oldest first, each with its record verified.

    `location` is where `root`'s runs are kept when `root` is a local copy (an `s3://` prefix). `evidence`:
    whether `evidence/` is verified too (default: when the bundles are local; a copy of remote runs may not
    have fetched it)."""
    check_evidence = location is None if evidence is None else evidence
    if incident is not None and not INCIDENT_RE.match(incident):
        raise ConfigError(f"{incident!r} is not an incident id", parameter="incident")
    base = root / incident if incident else root
    if not base.is_dir():
        return []
    runs = []
    for summary_path in sorted(base.glob(f"**/{SUMMARY}")):
        bundle = summary_path.parent
        if any(part.startswith(".") for part in bundle.relative_to(root).parts):
            continue  # staging copies and withheld files are not runs of record
        problems: list[str] = withheld(bundle)
        summary, loaded = Summary.read(summary_path, problems)
        if summary is None:
            problems.append(f"{SUMMARY} is not readable; the run is listed from its folder name only")
            kept = records.summary(loaded, []) if loaded is not None else {}
            summary = Summary.from_json({"started_at": _started_of(bundle.name), **kept,
                                         "runbook": _runbook_of(bundle.name), "status": "unreadable"})
        where = f"{location.rstrip('/')}/{bundle.relative_to(root).as_posix()}/" if location else str(bundle.resolve())
        numbered = read_audit_lines(bundle / AUDIT, problems)
        problems += records.verify_ledger(loaded, bundle / AUDIT, numbered,
                                          bundle / EVIDENCE if check_evidence else None)
        audit = records.audit([entry for _, entry in numbered], problems)
        problems += _unlogged_changes(summary, audit)
        runs.append(RunRecord(bundle, summary, audit, where, problems))
    return sorted(runs, key=lambda r: r.started)


def _unlogged_changes(summary: Summary, audit: list[dict[str, Any]]) -> list[str]:
    """Changes the summary records that the audit log does not: the record cannot confirm what was applied."""
    logged = {(str(e.get("action")), e.get("decision")) for e in audit}
    return [f"{SUMMARY} records {a.get('action')} as {a.get('decision')}, but {AUDIT} has no such record: what was "
            "applied cannot be confirmed" for a in summary.actions
            if a.get("decision") in CHANGED and (str(a.get("action")), a.get("decision")) not in logged]


def withheld(bundle: Path) -> list[str]:
    """What the final scan withheld from this bundle (its `quarantined.json`), as record problems."""
    path = bundle / QUARANTINED
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("withheld") or []
    except (OSError, ValueError, AttributeError):
        return [f"{QUARANTINED} is not readable: some files of this run were withheld as leaks"]
    return [REDACTOR.text(f"{e.get('file')} was withheld: it held {', '.join(map(str, e.get('why') or []))} "
                          "(kept outside the record, owner-only)") for e in entries if isinstance(e, dict)]


def _runbook_of(bundle: str) -> str:
    """The runbook slug in a bundle folder name (`<UTC time>-<slug>[-n]`)."""
    parsed = parse_name(bundle)
    return parsed[1] if parsed else "?"


def _started_of(bundle: str) -> str:
    parsed = parse_name(bundle)
    return parsed[0].isoformat() if parsed else ""

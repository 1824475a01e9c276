"""Reading a run's records defensively: `summary.json`, `audit.jsonl` and `evidence/` as the review and `runbook runs`
use them.

A record may be torn, edited or written by another version. `conform(value, shape)` keeps what has the
shape a run writes and drops the rest, saying what it dropped, so that one damaged part of one run never
stops the review of a whole incident. Strings are made safe to print and write (lone surrogates replaced).

`verify_ledger` checks what can be checked of a record's integrity: the audit log's hash chain, the seal
`summary.json` keeps of it and of the evidence index (`summary["ledger"]`), and each evidence file's
SHA-256. What it finds is a list of problems, each saying what cannot be trusted; none is fatal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbooklib.audit import evidence_prefix_digest, index_lines, json_lines, verify_chain
from runbooklib.bundle import AUDIT as AUDIT_FILE
from runbooklib.bundle import EVIDENCE, EVIDENCE_INDEX
from runbooklib.bundle import SUMMARY as SUMMARY_NAME

NUMBER = (int, float)
Shape = Any
"""A type, a tuple of types (None allowed as a member), a dict of key → shape (`"*"`: any key), or [shape]."""

_TEXT, _MAYBE_TEXT = str, (str, None)
FINDING: Shape = {"name": _TEXT, "title": _TEXT, "status": _TEXT, "summary": _TEXT, "classification": _MAYBE_TEXT,
                  "at": _TEXT}
UNCHECKED: Shape = {"check": _TEXT, "what": _TEXT, "why": _TEXT, "by_hand": _TEXT, "needed": bool, "status": _TEXT}
IMPACT: Shape = {"window": {"since": _TEXT, "until": _TEXT}, "total": int, "failed": int, "delayed": int,
                 "tenants": [{"tenant_id": _TEXT, "total": int, "failed": int, "delayed": int}]}
SUMMARY: Shape = {
    "runbook": _TEXT, "title": _TEXT, "incident": _TEXT, "environment": _TEXT, "operator": _MAYBE_TEXT, "status": _TEXT,
    "started_at": _TEXT, "window": {"since": _TEXT, "until": _TEXT, "length": _TEXT, "baseline": _TEXT},
    "timings": {"wall_seconds": NUMBER, "finished_at": _TEXT},
    "findings": {"*": FINDING},
    "diagnosis": {"cause": _TEXT, "outcome": _TEXT, "explanation": _TEXT, "evidence": [_TEXT],
                  "others": [{"cause": _TEXT, "explanation": _TEXT}], "unchecked": [UNCHECKED], "at": _TEXT,
                  "figures": [dict], "notes": [_TEXT]},
    "measurements": [{"metric": _TEXT, "scope": _TEXT, "value": NUMBER, "basis": _TEXT, "at": _TEXT}],
    "impact": {"*": IMPACT},
    "post_incident": {"title": _TEXT, "items": [{"item": _TEXT, "answer": _TEXT, "ok": bool}]},
    "failed_cell": ({"index": (int, None), "section": _TEXT, "error": _TEXT}, None),
    "evidence": dict, "actions": [dict],
}
AUDIT_ENTRY: Shape = {"ts": _TEXT, "action": _TEXT, "decision": _TEXT, "message": _TEXT, "operator": _MAYBE_TEXT,
                      "plan_digest": _MAYBE_TEXT, "approval": ({"by": _TEXT, "source": _TEXT}, None), "result": dict,
                      "seq": int, "of": (int, None), "verify_by_hand": _MAYBE_TEXT, "by_run": _MAYBE_TEXT}
REQUIRED_AUDIT = ("action", "decision")


def safe_text(text: str) -> str:
    """`text` with anything that cannot be written as UTF-8 (a lone surrogate) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


def conform(value: Any, shape: Shape, where: str, problems: list[str]) -> tuple[bool, Any]:
    """(fits, the part of `value` that has `shape`); each part dropped is named in `problems`."""
    if isinstance(shape, tuple):
        for option in shape:
            if option is None and value is None:
                return True, None
            if option is not None and _fits_plain(value, option):
                return conform(value, option, where, problems)
        problems.append(f"{where} is not what a run writes; ignored")
        return False, None
    if isinstance(shape, list):
        if not isinstance(value, list):
            problems.append(f"{where} is not a list; ignored")
            return False, None
        kept = []
        for i, item in enumerate(value):
            fits, part = conform(item, shape[0], f"{where}[{i}]", problems)
            if fits:
                kept.append(part)
        return True, kept
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            problems.append(f"{where} is not a mapping; ignored")
            return False, None
        out: dict[str, Any] = {}
        for key, item in value.items():
            inner = shape.get(key, shape.get("*"))
            if inner is None:
                out[str(key)] = _safe(item)
                continue
            fits, part = conform(item, inner, f"{where}.{key}", problems)
            if fits:
                out[safe_text(str(key))] = part
        return True, out
    if not _fits_plain(value, shape):
        problems.append(f"{where} is not what a run writes ({type(value).__name__}); ignored")
        return False, None
    return True, _safe(value)


def _fits_plain(value: Any, shape: Shape) -> bool:
    if isinstance(shape, dict):
        return isinstance(value, dict)
    if isinstance(shape, list):
        return isinstance(value, list)
    if isinstance(value, bool) and shape is not bool:
        return False
    return isinstance(value, shape)


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, list):
        return [_safe(v) for v in value]
    if isinstance(value, dict):
        return {safe_text(str(k)): _safe(v) for k, v in value.items()}
    return value


def summary(value: Any, problems: list[str]) -> dict[str, Any]:
    """A run's summary.json as the review reads it (parts of the wrong shape dropped and reported)."""
    fits, part = conform(value, SUMMARY, SUMMARY_FILE, problems)
    return part if fits else {}


def audit(entries: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    """Audit entries as the review reads them; an entry without an action or decision is dropped and reported."""
    out = []
    for n, entry in enumerate(entries, 1):
        fits, part = conform(entry, AUDIT_ENTRY, f"audit.jsonl entry {n}", problems)
        if fits and all(isinstance(part.get(k), str) for k in REQUIRED_AUDIT):
            out.append(part)
        elif fits:
            problems.append(f"audit.jsonl entry {n} names no action or decision; skipped")
    return out


# -- integrity ----------------------------------------------------------------------------------------
EVIDENCE_DIR = EVIDENCE
SUMMARY_FILE = SUMMARY_NAME


@dataclass
class EvidenceCheck:
    """A run's kept query results checked now against the SHA-256 each has in `evidence/index.jsonl`."""

    listed: int = 0
    """How many results the index lists (readable lines)."""
    readable: bool = True
    """False when a line of the index is not readable."""
    mismatched: list[str] = field(default_factory=list)
    """Files missing or not matching their checksum."""
    problems: list[str] = field(default_factory=list)


def check_evidence(folder: Path) -> EvidenceCheck:
    """Every file `folder/index.jsonl` lists, hashed now and compared with its recorded SHA-256."""
    index = folder / EVIDENCE_INDEX
    where = f"{EVIDENCE_DIR}/{EVIDENCE_INDEX}"
    out = EvidenceCheck()
    if not index.is_file():
        return out
    try:
        data = index.read_bytes()
    except OSError as exc:
        return EvidenceCheck(0, False, [], [f"{where} cannot be read ({exc.__class__.__name__})"])
    for number, entry in json_lines(index_lines(data)):
        name = entry.get("file") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(name, str):
            out.readable = False
            out.problems.append(f"{where} line {number} is not readable (torn or edited): what it lists cannot be checked")
            continue
        out.listed += 1
        if Path(name).name != name or name in ("", ".", ".."):
            out.mismatched.append(safe_text(name))
            out.problems.append(f"{where} line {number} names {safe_text(name)!r}, not a file in {EVIDENCE_DIR}/")
            continue
        path = folder / name
        if not path.is_file():
            out.mismatched.append(safe_text(name))
            out.problems.append(f"{EVIDENCE_DIR}/{safe_text(name)} is missing: the query result it kept is lost")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            out.mismatched.append(safe_text(name))
            out.problems.append(f"{EVIDENCE_DIR}/{safe_text(name)} does not match its SHA-256 in {EVIDENCE_INDEX}: edited "
                                "or replaced, so the figures it kept cannot be trusted")
    return out


def verify_ledger(summary: dict[str, Any] | None, audit_path: Path, numbered: list[tuple[int, dict[str, Any]]],
                  evidence: Path | None) -> list[str]:
    """What cannot be trusted in one run's record; [] when everything checks.

    `summary` is `summary.json` as loaded (None: not readable, so there is no seal to compare with),
    `numbered` the audit log's readable entries with their line numbers, `evidence` the bundle's
    `evidence/` folder (None: not checked, e.g. a listing of remote runs that did not copy it). Checked:
    the audit hash chain; the seal `summary["ledger"]` against `audit.jsonl` (fewer records than sealed,
    or a different entry where the seal's head was: truncated or rewritten; entries after the sealed ones
    were written after the summary last was, e.g. before a kill, and are only chain-checked) and against
    the evidence index (its sealed first lines must hash as sealed); each evidence file's checksum."""
    entries = [entry for _, entry in numbered]
    chain = verify_chain(entries, lines=[n for n, _ in numbered])
    problems: list[str] = []
    if summary is None:
        problems += chain
    elif "ledger" not in summary:
        if entries and not any("hash" in e for e in entries):
            problems.append(f"not sealed (older record): {SUMMARY_FILE} carries no ledger seal and {AUDIT_FILE} is not "
                            "hash-chained, so deleted, edited or truncated records cannot be detected")
        else:
            problems.append(f"not sealed (older record): {SUMMARY_FILE} carries no ledger seal, so a truncated or "
                            f"deleted {AUDIT_FILE} or evidence index cannot be detected")
            problems += chain
    else:
        problems += chain
        audit_seal, evidence_seal = _seals(summary["ledger"], problems)
        if audit_seal is not None:
            problems += _against_audit_seal(*audit_seal, audit_path, entries)
        if evidence_seal is not None and evidence is not None:
            problems += _against_evidence_seal(*evidence_seal, evidence / EVIDENCE_INDEX)
    if evidence is not None:
        problems += check_evidence(evidence).problems
    return problems



def evidence_seal_problems(summary: dict[str, Any] | None, folder: Path) -> list[str]:
    """What does not match the seal `summary["ledger"]` keeps of `folder/index.jsonl` (nothing when there is none)."""
    ledger = summary.get("ledger") if isinstance(summary, dict) else None
    _, seal = _seals(ledger, []) if isinstance(ledger, dict) else (None, None)
    return _against_evidence_seal(*seal, folder / EVIDENCE_INDEX) if seal is not None else []


def _short(digest: Any) -> str:
    return f"{digest[:12]}…" if isinstance(digest, str) else "none"


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _seals(ledger: Any, problems: list[str]) -> tuple[tuple[int, str | None] | None, tuple[int, str | None] | None]:
    """(records, head) and (entries, sha256) of a summary's ledger seal; a part not of that shape is None (reported)."""
    audit = ledger.get("audit") if isinstance(ledger, dict) else None
    evidence = ledger.get("evidence") if isinstance(ledger, dict) else None
    audit_seal = evidence_seal = None
    if isinstance(audit, dict) and _count(audit.get("records")) and isinstance(audit.get("head"), str | None):
        audit_seal = (int(audit["records"]), audit.get("head"))
    else:
        problems.append(f"{SUMMARY_FILE}'s ledger seal of {AUDIT_FILE} is not what a run writes: the audit log cannot be "
                        "checked for truncation or deletion")
    if isinstance(evidence, dict) and _count(evidence.get("entries")) and isinstance(evidence.get("sha256"), str | None):
        evidence_seal = (int(evidence["entries"]), evidence.get("sha256"))
    else:
        problems.append(f"{SUMMARY_FILE}'s ledger seal of the evidence index is not what a run writes: the index cannot "
                        "be checked for truncation or rewriting")
    return audit_seal, evidence_seal


def _against_audit_seal(records: int, head: str | None, path: Path, entries: list[dict[str, Any]]) -> list[str]:
    if records == 0:
        return []
    if not path.exists():
        return [f"{AUDIT_FILE} is missing: {records} records sealed — no decision of this run (an applied mitigation "
                "included) can be read"]
    if len(entries) < records or entries[records - 1].get("hash") != head:
        return [f"{AUDIT_FILE} was truncated or rewritten: the summary seals {records} records (head {_short(head)}), "
                f"the file has {len(entries)} — decisions may be missing from it, an applied mitigation included"]
    return []


def _against_evidence_seal(entries: int, sha256: str | None, index: Path) -> list[str]:
    where = f"{EVIDENCE_DIR}/{EVIDENCE_INDEX}"
    if entries == 0 and sha256 is None:
        return []
    if not index.is_file():
        return [f"{where} is missing: the summary seals {entries} kept query results — the evidence behind this run's "
                "decisions cannot be checked"] if entries else []
    try:
        data = index.read_bytes()
    except OSError as exc:
        return [f"{where} cannot be read ({exc.__class__.__name__})"]
    have = len(index_lines(data))
    if have < entries:
        return [f"{where} was truncated or rewritten: the summary seals {entries} entries (sha256 {_short(sha256)}), the "
                f"file has {have} — kept query results may be missing"]
    if evidence_prefix_digest(data, entries) != sha256:
        return [f"{where} was rewritten: its first {entries} entries do not hash to the sealed sha256 ({_short(sha256)}) — "
                "an entry (a file's checksum, its SQL or values) was edited, so the evidence cannot be trusted"]
    return []

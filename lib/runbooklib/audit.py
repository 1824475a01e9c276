"""The audit log: one JSON line per gate decision, applied or not, written as it happens.

Each entry says who (operator, and who approved), when (UTC), which incident and runbook, which
action, the decision (`not_needed`, `dry_run`, `blocked`, `refused`, `already_applied`, `applying`,
`applied`, `failed`, `undone`), the plan and its digest, and the result. Entries are redacted before
they are written, and each line is flushed and fsynced so that a crash loses no decision already taken.

An apply is recorded twice: `applying` before `apply()` is called (with what a responder must check by
hand if the outcome is never recorded), then its outcome (`applied`, `failed`, `undone`) carrying
`of`: the `seq` of its `applying` entry. An `applying` entry with no outcome is an interrupted apply.

The log is a hash chain. Every entry carries `seq` (1, 2, …), `prev` (the previous entry's `hash`; ""
for the first) and `hash`: the SHA-256 of the entry's canonical JSON without `hash`
(`canonical`). `verify_chain` finds an edited line (its hash no longer matches) and a deleted,
inserted or moved one (the next line's `prev` or `seq` does not follow). Deleting the last lines keeps
the chain whole, so the run's summary carries a seal of it (`AuditLog.seal`) and of its evidence
index (`evidence_seal`), which the review compares with the files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

from runbooklib.bundle import AUDIT as AUDIT_FILE
from runbooklib.bundle import EVIDENCE_INDEX as EVIDENCE_INDEX
from runbooklib.redact import REDACTOR

DECISIONS = ("not_needed", "dry_run", "blocked", "refused", "already_applied", "applying", "applied", "failed",
             "undone")
CHAIN_FIELDS = ("seq", "prev", "hash")
"""Written by `AuditLog.record` itself; a caller cannot pass them."""
GENESIS = ""
"""The `prev` of a log's first entry."""
"""In a bundle's `evidence/`: one line per kept query result."""


def canonical(entry: dict[str, Any]) -> str:
    """The canonical JSON of an entry without its `hash`: what `hash` is the SHA-256 of."""
    return json.dumps({k: v for k, v in entry.items() if k != "hash"}, sort_keys=True, separators=(",", ":"),
                      default=str)


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 (hex) of `canonical(entry)`."""
    return hashlib.sha256(canonical(entry).encode("utf-8", "surrogatepass")).hexdigest()


class AuditLog:
    """Append-only, hash-chained JSONL audit log (this process's entries kept in memory too, for the run summary).

    Opened on a file that already has entries (a Jupyter start cell run again on the same `run_dir`), it
    continues that file's chain."""

    def __init__(self, path: Path | None, *, incident: str, runbook: str, operator: str) -> None:
        self.path = path
        self.incident = incident
        self.runbook = runbook
        self.operator = operator
        self.entries: list[dict[str, Any]] = []
        self._records = 0
        self._head = GENESIS
        self._torn = False
        if path is not None and path.is_file():
            earlier = read_audit(path)
            if earlier:
                last = earlier[-1]
                seq = last.get("seq")
                self._records = seq if _is_int(seq) else len(earlier)
                self._head = str(last.get("hash") or GENESIS)
            # a line cut off by a kill has no newline: the next entry must not be glued onto it
            with path.open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell() > 0:
                    fh.seek(-1, os.SEEK_END)
                    self._torn = fh.read(1) != b"\n"

    def record(self, *, action: str, decision: str, **details: Any) -> dict[str, Any]:
        """Write one decision (chained to the one before, fsynced); returns the entry as written."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}")
        reserved = [k for k in CHAIN_FIELDS if k in details]
        if reserved:
            raise ValueError(f"{', '.join(reserved)} are written by the audit log itself")
        redacted = REDACTOR.mapping({
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "incident": self.incident,
            "runbook": self.runbook,
            "operator": self.operator or None,
            "action": action,
            "decision": decision,
            **details,
        })
        # hashed exactly as it reads back: what json cannot hold is turned into what it writes
        entry: dict[str, Any] = json.loads(json.dumps(redacted, default=str))
        entry["seq"] = self._records + 1
        entry["prev"] = self._head
        entry["hash"] = entry_hash(entry)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(("\n" if self._torn else "") + json.dumps(entry, default=str, sort_keys=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._torn = False
        self._records, self._head = entry["seq"], entry["hash"]
        self.entries.append(entry)
        return entry

    def seal(self) -> dict[str, Any]:
        """What the run's summary keeps of this log: `records` (how many entries) and `head` (the last one's hash)."""
        return {"records": self._records, "head": self._head or None}


def evidence_seal(folder: Path) -> dict[str, Any]:
    """What the run's summary keeps of `folder/index.jsonl`: `entries` (its lines) and `sha256` (of its bytes;
    None when there is no index). `evidence_prefix_digest` checks the same of a longer index's first lines."""
    index = folder / EVIDENCE_INDEX
    if not index.is_file():
        return {"entries": 0, "sha256": None}
    data = index.read_bytes()
    return {"entries": len(index_lines(data)), "sha256": hashlib.sha256(data).hexdigest()}


def index_lines(data: bytes) -> list[bytes]:
    """An index file's lines, each with its newline (so that the first N joined are its first N lines' bytes)."""
    return data.splitlines(keepends=True)


def evidence_prefix_digest(data: bytes, entries: int) -> str:
    """SHA-256 of the first `entries` lines of an index file (all of it when it has exactly that many)."""
    return hashlib.sha256(b"".join(index_lines(data)[:entries])).hexdigest()


def verify_chain(entries: list[dict[str, Any]], *, lines: Sequence[int] | None = None) -> list[str]:
    """The problems in a hash-chained audit log read in file order; [] when the chain is whole.

    Each problem names the entry (its line in the file when `lines` gives them, and its seq): a hash that
    does not match the content (edited), a `prev` or `seq` that does not follow the entry before (deleted,
    inserted or moved lines). A log written before entries were chained gets one line saying so. Deleting
    the last lines is not seen here: `summary.json`'s seal is what catches that."""
    if not entries:
        return []
    if not any("hash" in e for e in entries):
        return [f"{AUDIT_FILE} is not chained (older record): an edited, deleted or reordered line cannot be detected"]
    problems = []
    prev_hash, prev_seq = GENESIS, 0
    for i, entry in enumerate(entries):
        seq = entry.get("seq")
        where = f"{AUDIT_FILE} line {lines[i]}" if lines is not None and i < len(lines) else f"{AUDIT_FILE} entry {i + 1}"
        label = f"{where} (seq {seq}, {entry.get('action')} {entry.get('decision')})" if _is_int(seq) else \
            f"{where} ({entry.get('action')} {entry.get('decision')})"
        stored = entry.get("hash")
        if not isinstance(stored, str):
            problems.append(f"{label} carries no hash in a chained log: inserted, or written by another version")
            prev_seq += 1
            continue
        try:
            edited = entry_hash(entry) != stored
        except (TypeError, ValueError, RecursionError):
            edited = True
        if edited:
            problems.append(f"{label}: its content does not match its hash — the line was edited")
        breaks = []
        if entry.get("prev") != prev_hash:
            breaks.append("it does not follow the line before it (prev hash differs)")
        if not _is_int(seq) or seq != prev_seq + 1:
            breaks.append(f"seq {seq} where {prev_seq + 1} was due")
        if breaks:
            problems.append(f"{label}: {'; '.join(breaks)} — a line before it was deleted, inserted or moved")
        prev_hash = stored
        prev_seq = seq if _is_int(seq) else prev_seq + 1
    return problems


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def unfinished(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `applying` entries of one run's audit with no later entry recording their outcome (`of` = their `seq`):
    applies begun and cut off (a kill), whose outcome is unknown."""
    out = []
    for i, entry in enumerate(entries):
        if entry.get("decision") != "applying":
            continue
        seq = entry.get("seq")
        if isinstance(seq, int) and any(later.get("of") == seq for later in entries[i + 1:]):
            continue
        out.append(entry)
    return out


def json_lines(lines: Iterable[str | bytes]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value or None when the line is not JSON) for every non-blank line: one JSON-lines
    reader for the audit log and the evidence index, each of which reports unreadable lines in its own words."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except (ValueError, RecursionError):
            yield number, None


def read_audit_lines(path: Path, problems: list[str] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line number, entry) for every readable entry of an audit log file. A torn or edited line is skipped and,
    when `problems` is given, reported there ("audit.jsonl line 7 is not readable"); the rest is still read."""
    if not path.exists():
        return []
    entries: list[tuple[int, dict[str, Any]]] = []
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        if problems is not None:
            problems.append(f"{path.name} cannot be read ({exc.__class__.__name__})")
        return []
    for number, entry in json_lines(text.splitlines()):
        if isinstance(entry, dict):
            entries.append((number, entry))
        elif problems is not None:
            problems.append(f"{path.name} line {number} is not readable (torn or edited); skipped")
    return entries


def read_audit(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Every readable entry of an audit log file (see `read_audit_lines`)."""
    return [entry for _, entry in read_audit_lines(path, problems)]

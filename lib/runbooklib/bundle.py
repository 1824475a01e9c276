"""A run bundle's layout, named once: what a run writes, where, and how a folder is recognised as a run.

```
runs/<incident>/<UTC start, %Y%m%dT%H%M%SZ>-<slug>/
    summary.json        the kernel writes it as the run goes; the runner completes it (status, leaks, time)
    audit.jsonl         every gate decision and ledger record, hash-chained (sealed: never rewritten)
    evidence/           kept query results, with index.jsonl (sealed)
    notebook.ipynb      the executed notebook (masked by structure after the run)
    notebook.html       its rendering
runs/.staging/          runs bound for s3:// are written here first
runs/.quarantine/<incident>/<bundle>/   a bundle withheld by the leak scan, with quarantined.json
```

The kernel-side context, the runner, the S3 store, the ledger and the offline review all take these names
from here; nothing else spells them. `Summary` is `summary.json` typed: the kernel writes it, the runner
completes it and the review reads it, each through this one class.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SUMMARY = "summary.json"
AUDIT = "audit.jsonl"
EVIDENCE = "evidence"
EVIDENCE_INDEX = "index.jsonl"
"""In `evidence/`: one line per kept query result (file, SQL, bound values, rows, SHA-256)."""
NOTEBOOK = "notebook.ipynb"
HTML = "notebook.html"
SEALED = (AUDIT, EVIDENCE)
"""Never rewritten after the kernel: the audit log is hash-chained and the evidence sealed."""
RECORD_FILES = (SUMMARY, AUDIT)
"""What a bundle must hold to be read as a run record."""
STAGING = ".staging"
"""Under the local runs folder: runs bound for s3:// are written here first, and stay if the upload fails."""
QUARANTINE = ".quarantine"
"""Under the runs folder: files withheld from a bundle because they hold a secret or personal data (mode 0600)."""
QUARANTINED = "quarantined.json"
"""In a bundle whose files were withheld: which files, and what kind of leak each held (no values)."""
METRICS = {
    "failure_rate": "failure rate",
    "queue_depth": "queue depth (waiting + delayed)",
    "dlq_size": "DLQ size",
    "retry_ratio": "retries per first attempt",
}
"""The key figures a run measures (`RunContext.measure`, kept in `summary.json`), which a review shows before
and after mitigation."""
RUNS_DIR_ENV = "RUNBOOK_RUNS_DIR"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME = re.compile(r"(?P<when>\d{8}T\d{6}Z)-(?P<slug>[A-Za-z_][A-Za-z0-9_]*)(?:-\d+)?")


def bundle_name(slug: str, when: datetime) -> str:
    """The folder name of a run of `slug` started at `when` (UTC)."""
    return f"{when.strftime(TIME_FORMAT)}-{slug}"


def parse_name(name: str) -> tuple[datetime, str] | None:
    """(start, slug) of a bundle folder name (`<UTC time>-<slug>[-n]`), or None when `name` is not one."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        when = datetime.strptime(match["when"], TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return when, match["slug"]


def default_runs_dir() -> Path:
    """Where bundles go: `$RUNBOOK_RUNS_DIR`, else `runs/` in the checkout, else `runs/` here."""
    from runbooklib.catalog import project_root
    from runbooklib.errors import ConfigError

    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env)
    try:
        return project_root() / "runs"
    except ConfigError:
        return Path.cwd() / "runs"


@dataclass(frozen=True)
class Bundle:
    """One run's folder and the paths of what it holds."""

    path: Path

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def audit(self) -> Path:
        return self.path / AUDIT

    @property
    def evidence(self) -> Path:
        return self.path / EVIDENCE

    @property
    def evidence_index(self) -> Path:
        return self.path / EVIDENCE / EVIDENCE_INDEX

    @property
    def notebook(self) -> Path:
        return self.path / NOTEBOOK

    @property
    def html(self) -> Path:
        return self.path / HTML

    @property
    def incident(self) -> str:
        return self.path.parent.name

    @property
    def is_record(self) -> bool:
        """It holds the files a run record needs."""
        return all((self.path / name).exists() for name in RECORD_FILES)


@dataclass
class Summary:
    """`summary.json`, typed: the kernel writes it as the run goes (`RunContext.summary`), the runner completes it
    (`complete`: status, the failed cell, timings, files) and the review reads it (`read`, defensively: a part of
    the wrong shape is dropped and reported, never trusted). Keys a run adds that are not fields (a review list's
    file, say) are kept in `extra` and written back as they came."""

    runbook: str
    title: str = ""
    incident: str = ""
    environment: str = ""
    operator: str | None = None
    status: str = "running"
    """`running` while the kernel writes it; `completed`, `failed` or `incomplete` once the runner has."""
    started_at: str = ""
    window: dict[str, str] = field(default_factory=dict)
    """`since`, `until` (ISO), `length` and `baseline` (durations as written, e.g. `1h`)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    scenario: str | None = None
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Check name → `CheckResult.to_json()`."""
    facts: dict[str, Any] = field(default_factory=dict)
    not_configured: list[dict[str, str]] = field(default_factory=list)
    deadline: str | None = None
    diagnosis: dict[str, Any] | None = None
    """`Diagnosis.to_json()`: cause, outcome, explanation, evidence, others, unchecked, figures, notes, at."""
    actions: list[dict[str, Any]] = field(default_factory=list)
    """Each gate outcome: action, decision, message, plan (with its digest)."""
    measurements: list[dict[str, Any]] = field(default_factory=list)
    ledger: dict[str, Any] | None = None
    """The seals of `audit.jsonl` and `evidence/index.jsonl` at the last write."""
    impact: dict[str, dict[str, Any]] = field(default_factory=dict)
    post_incident: dict[str, Any] | None = None
    failed_cell: dict[str, Any] | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    evidence: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- what the review asks of it ----------------------------------------------------------------
    @property
    def cause(self) -> str:
        return str((self.diagnosis or {}).get("cause", "—"))

    @property
    def outcome(self) -> str | None:
        """The diagnosis's kind (`healthy`, `cause`, `unknown`, `inconclusive`), or None without one."""
        found = (self.diagnosis or {}).get("outcome")
        return str(found) if found else None

    @property
    def unchecked(self) -> list[dict[str, Any]]:
        """What the run could not check (its diagnosis says), each with what and why."""
        found = (self.diagnosis or {}).get("unchecked")
        return [u for u in found if isinstance(u, dict)] if isinstance(found, list) else []

    @property
    def finished_at(self) -> str | None:
        found = self.timings.get("finished_at")
        return str(found) if found else None

    @property
    def checklist(self) -> list[dict[str, Any]]:
        """The post-incident checklist's items (item, answer, ok)."""
        items = (self.post_incident or {}).get("items")
        return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []

    # -- reading and writing -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "extra"}
        for name in ("impact", "post_incident", "evidence", "diagnosis", "ledger"):  # left out until set: a null
            if not out[name]:  # would read as a part of the wrong shape (a damaged record), not as "none yet"
                del out[name]
        if not self.timings:  # the runner's part, written once it completes the summary
            for name in ("failed_cell", "timings", "files"):
                del out[name]
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        """A summary from a mapping of the shape a run writes (`read` checks the shape first)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "extra"}
        extra = {k: v for k, v in data.items() if k not in cls.__dataclass_fields__}
        return cls(**{"runbook": "?", **known}, extra=extra)

    @classmethod
    def read(cls, path: Path, problems: list[str]) -> tuple[Summary | None, dict[str, Any] | None]:
        """(the summary as the review may trust it, the mapping as it was written) from `path`; (None, None) when
        it cannot be read at all. What is not of the shape a run writes is dropped and named in `problems`."""
        from runbooklib import records

        try:
            loaded = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
        except (OSError, ValueError, RecursionError):
            return None, None
        if not isinstance(loaded, dict):
            return None, None
        kept = records.summary(loaded, problems)
        if "status" not in loaded:
            problems.append(f"{SUMMARY} names no status: how the run ended is not on record")
        return (cls.from_json({"status": "?", **kept}) if kept.get("runbook") else None), loaded

    def write(self, path: Path) -> None:
        """Write atomically (a reader never sees half a summary)."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, default=str), encoding="utf-8")
        tmp.replace(path)

    def complete(self, status: str, failed_cell: dict[str, Any] | None, elapsed: float, bundle: Path) -> None:
        """The runner's part, once the notebook has stopped: the run's status (a notebook that ended without
        `ctx.finish()` is `incomplete`), the cell that failed, timings, and what the bundle holds."""
        self.status = status if status == "failed" or self.status == "completed" else "incomplete"
        if status == "completed" and self.status == "incomplete":
            failed_cell = {"index": None, "error": "the notebook ended without calling ctx.finish()"}
        self.failed_cell = failed_cell
        self.timings = {"wall_seconds": round(elapsed, 2),
                        "finished_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
        self.files = sorted(p.name for p in bundle.iterdir()) + ([HTML] if not (bundle / HTML).exists() else [])
        if (bundle / EVIDENCE).is_dir():
            self.evidence = {"index": f"{EVIDENCE}/{EVIDENCE_INDEX}",
                             "queries": len(list((bundle / EVIDENCE).glob("*.csv")))}


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
from here; nothing else spells them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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

"""Headless runs through papermill, and the run bundle they leave.

`execute()` runs a runbook notebook with parameters into `runs/<incident>/<UTC time>-<slug>/`:
`notebook.ipynb` (executed), `notebook.html` (charts embedded), `summary.json` and `audit.jsonl`
(both written by the kernel as it goes). It writes the bundle even when a cell fails, naming the
failing cell, and then scrubs every file: any registered secret value is replaced and any unmasked
email address or phone number is masked, so nothing sensitive is saved.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from runbooklib import catalog
from runbooklib.context import EVIDENCE, EVIDENCE_INDEX, SUMMARY, bundle_name
from runbooklib.errors import ConfigError
from runbooklib.redact import REDACTOR

NOTEBOOK = "notebook.ipynb"
HTML = "notebook.html"
CELL_TIMEOUT = 600
EXIT_HEALTHY, EXIT_FAILED, EXIT_BAD_PARAMETERS, EXIT_DIAGNOSED = 0, 1, 2, 3
"""Exit codes: healthy · run failed · bad parameters · incident diagnosed."""


@dataclass
class RunResult:
    """Where a run's bundle is and how it ended."""

    bundle: Path
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    failed_cell: dict[str, Any] | None = None

    @property
    def cause(self) -> str | None:
        diagnosis = self.summary.get("diagnosis") or {}
        cause = diagnosis.get("cause")
        return str(cause) if cause is not None else None

    @property
    def exit_code(self) -> int:
        if self.status != "completed":
            return EXIT_FAILED
        return EXIT_HEALTHY if self.cause == "healthy" else EXIT_DIAGNOSED

    @property
    def headline(self) -> str:
        diagnosis = self.summary.get("diagnosis") or {}
        if self.status != "completed":
            cell = self.failed_cell or {}
            return REDACTOR.text(f"run failed at cell {cell.get('index')} ({cell.get('section', '?')}): "
                                 f"{cell.get('error', 'unknown error')}")
        return REDACTOR.text(f"{diagnosis.get('cause')}: {diagnosis.get('explanation')}")


def new_bundle(output_root: Path, incident: str, slug: str, when: datetime | None = None) -> Path:
    """A fresh bundle folder (a suffix is added if a run started in the same second)."""
    base = output_root / incident / bundle_name(slug, when or datetime.now(UTC))
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def _section_of(nb: nbformat.NotebookNode, index: int) -> str:
    for cell in reversed(nb.cells[: index + 1]):
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return str(line).lstrip("#").strip()
    return "start"


def execute(slug: str, parameters: Mapping[str, Any], *, output_root: Path, incident: str,
            progress: bool = True, env: Mapping[str, str] | None = None, notebook: Path | None = None) -> RunResult:
    """Run a runbook notebook headless and write its bundle. Never raises for a failing cell.

    `notebook` overrides the runbook's own notebook (tests use purpose-built failing notebooks).
    """
    import papermill as pm

    source = notebook or catalog.get(slug).notebook
    bundle = new_bundle(output_root, incident, slug)
    out_nb = bundle / NOTEBOOK
    params = {**parameters, "incident": incident, "run_dir": str(bundle.resolve())}
    started = time.monotonic()
    failed_cell: dict[str, Any] | None = None
    previous = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        pm.execute_notebook(str(source), str(out_nb), parameters=params, kernel_name="python3",
                            progress_bar=progress, log_output=False, request_save_on_cell_execute=True,
                            execution_timeout=CELL_TIMEOUT, cwd=str(source.parent))
        status = "completed"
    except pm.PapermillExecutionError as exc:
        status = "failed"
        failed_cell = {"index": exc.cell_index, "exec_count": exc.exec_count, "error": f"{exc.ename}: {exc.evalue}"}
    except Exception as exc:  # kernel died, timeout, ...: still write the bundle
        status = "failed"
        failed_cell = {"index": None, "error": f"{exc.__class__.__name__}: {exc}"}
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    elapsed = time.monotonic() - started
    if failed_cell is not None and out_nb.exists():
        nb = nbformat.read(out_nb, as_version=4)  # type: ignore[no-untyped-call]
        index = failed_cell.get("index")
        if index is None:
            index = next((i for i, c in enumerate(nb.cells) if c.get("metadata", {}).get("papermill", {})
                          .get("status") == "failed"), None)
            failed_cell["index"] = index
        if index is not None:
            failed_cell["section"] = _section_of(nb, index)
    summary = _finish_summary(bundle, slug, incident, status, failed_cell, elapsed)
    write_html(bundle)
    scrub_bundle(bundle)
    summary = json.loads((bundle / SUMMARY).read_text())
    return RunResult(bundle=bundle, status=status, summary=summary, failed_cell=failed_cell)


def _finish_summary(bundle: Path, slug: str, incident: str, status: str, failed_cell: dict[str, Any] | None,
                    elapsed: float) -> dict[str, Any]:
    path = bundle / SUMMARY
    summary: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"runbook": slug, "incident": incident}
    summary["status"] = status if status == "failed" or summary.get("status") == "completed" else "incomplete"
    if status == "completed" and summary["status"] == "incomplete":
        failed_cell = {"index": None, "error": "the notebook ended without calling ctx.finish()"}
    summary["failed_cell"] = failed_cell
    summary["timings"] = {"wall_seconds": round(elapsed, 2),
                          "finished_at": datetime.now(UTC).isoformat(timespec="milliseconds")}
    summary["files"] = sorted(p.name for p in bundle.iterdir()) + ([HTML] if HTML not in os.listdir(bundle) else [])
    evidence = bundle / EVIDENCE
    if evidence.is_dir():
        summary["evidence"] = {"index": f"{EVIDENCE}/{EVIDENCE_INDEX}", "queries": len(list(evidence.glob("*.csv")))}
    path.write_text(json.dumps(summary, indent=2, default=str))
    return summary


def write_html(bundle: Path) -> None:
    """Render the executed notebook to HTML with charts embedded (nbconvert)."""
    from nbconvert import HTMLExporter

    out_nb = bundle / NOTEBOOK
    if not out_nb.exists():
        (bundle / HTML).write_text("<html><body><p>The run failed before the notebook was written.</p></body></html>")
        return
    nb = nbformat.read(out_nb, as_version=4)  # type: ignore[no-untyped-call]
    exporter = HTMLExporter()  # type: ignore[no-untyped-call]
    body, _ = exporter.from_notebook_node(nb)
    (bundle / HTML).write_text(offline(body), encoding="utf-8")


_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)


def offline(page: str) -> str:
    """Drop every script that reaches the network (nbconvert's require.js, MathJax, its mermaid loader):
    the record must open offline, and its charts are inline images anyway."""
    return _SCRIPT.sub(lambda m: "" if re.search(r"https?://", m.group(0)) else m.group(0), page)


_SKIP_SCRUB = re.compile(r"\.(png|jpg|parquet)$")


def scrub_bundle(bundle: Path) -> list[str]:
    """Mask secrets and personal data in every text file of the bundle; returns the files changed."""
    changed = []
    for path in sorted(p for p in bundle.rglob("*")):
        if not path.is_file() or _SKIP_SCRUB.search(path.name):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        clean = REDACTOR.document(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
            changed.append(str(path.relative_to(bundle)))
    return changed


def load_parameter_files(paths: list[Path]) -> dict[str, Any]:
    """Merge YAML parameter files shallowly (later files win), like papermill does."""
    import yaml

    merged: dict[str, Any] = {}
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"parameter file {str(path)!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"parameter file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"parameter file {path} must map parameter names to values")
        merged.update(data)
    return merged

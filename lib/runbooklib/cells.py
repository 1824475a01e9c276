"""Drive a runbook's own notebook cells in this process, with a real run context and real sockets.

`run_cells` executes the notebook's code cells in order (the parameters cell, then the values a
runner would inject, then every cell), stopping at the first cell that raises, as papermill does.
No kernel and no papermill: a fault matrix or a triage of dozens of runs stays fast, while every
check, the verdict, the gate and `ctx.finish()` run exactly as the notebook calls them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat

from runbooklib import catalog
from runbooklib.bundle import SUMMARY
from runbooklib.results import CheckResult
from runbooklib.runs import EXIT_BY_OUTCOME, EXIT_FAILED, FINISH_SECONDS, STARTUP_SECONDS, budget_for


@dataclass
class Outcome:
    """How one in-process run ended."""

    slug: str
    seconds: float
    bound: float
    """The run's time budget without kernel start-up and rendering (what these cells may take)."""
    crash: str | None
    summary: dict[str, Any]
    findings: dict[str, CheckResult] = field(default_factory=dict)
    bundle: Path | None = None

    @property
    def diagnosis(self) -> dict[str, Any]:
        found = self.summary.get("diagnosis")
        return found if isinstance(found, dict) else {}

    @property
    def cause(self) -> str | None:
        cause = self.diagnosis.get("cause")
        return str(cause) if cause else None

    @property
    def exit_code(self) -> int:
        if self.crash or self.summary.get("status") != "completed":
            return EXIT_FAILED
        return EXIT_BY_OUTCOME.get(str(self.diagnosis.get("outcome")), EXIT_FAILED)


def run_cells(slug: str, description: dict[str, Any], run_dir: Path, **parameters: Any) -> Outcome:
    """Run `slug`'s notebook cells against the sandbox `description` (endpoints, variable names), as a headless
    run would: with a deadline from the run's time budget, and its bundle in `run_dir`."""
    spec = catalog.get(slug)
    run_dir.mkdir(parents=True, exist_ok=True)
    described = run_dir.parent / f"{run_dir.name}.sandbox.json"
    described.write_text(json.dumps(description))
    values: dict[str, Any] = {"environment": "demo", "sandbox": str(described), "incident": "FAULT-1",
                              "recovery_samples": 1, "recovery_interval": "1s", "run_dir": str(run_dir), **parameters}
    budget = budget_for(slug, values)
    kernel_part = budget.seconds - STARTUP_SECONDS - FINISH_SECONDS
    values["deadline"] = (datetime.now(UTC) + timedelta(seconds=kernel_part)).isoformat()
    nb = nbformat.read(spec.notebook, as_version=4)  # type: ignore[no-untyped-call]
    namespace: dict[str, Any] = {"__name__": f"cells_{slug}"}
    crash = None
    started = time.monotonic()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    try:
        for index, cell in enumerate(cells):
            try:
                exec(compile(cell.source, f"<{slug} cell {index}>", "exec"), namespace)  # noqa: S102
            except Exception as exc:  # recorded: a crash is what a run must never show
                crash = f"cell {index}: {exc.__class__.__name__}: {exc}"
                break
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(values)
    finally:
        seconds = time.monotonic() - started
        ctx = namespace.get("ctx")
        if ctx is not None:
            ctx.close()
    summary_path = run_dir / SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return Outcome(slug, seconds, kernel_part, crash, summary, dict(getattr(ctx, "findings", {}) or {}),
                   run_dir if summary_path.exists() else None)

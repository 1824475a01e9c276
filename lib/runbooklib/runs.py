"""Headless runs through papermill, and the run bundle they leave.

`execute()` runs a runbook notebook with parameters into `runs/<incident>/<UTC time>-<slug>/`:
`notebook.ipynb` (executed), `notebook.html` (charts embedded), `summary.json` and `audit.jsonl`
(both written by the kernel as it goes, redacted as they are written). It writes the bundle even when
a cell fails, naming the failing cell. Then it masks the notebook and summary again by structure
(`scrub_bundle`; the hash-chained audit log and the sealed evidence are never rewritten), renders the
HTML from the masked notebook, and scans every file (`leaks.scan_bundle`): a file that still holds a
secret or unmasked personal data is withheld (`leaks.quarantine`) and the run exits `EXIT_LEAK`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from runbooklib import catalog
from runbooklib.bundle import AUDIT as AUDIT_FILE
from runbooklib.bundle import HTML, NOTEBOOK, QUARANTINED, SEALED, SUMMARY, Summary, bundle_name
from runbooklib.errors import ConfigError
from runbooklib.leaks import Leak, quarantine, scan_bundle
from runbooklib.params import format_duration, operator_problem
from runbooklib.redact import BINARY_MAGIC, REDACTOR
from runbooklib.yamlfiles import load_yaml

if TYPE_CHECKING:
    from runbooklib.params import CommonParams
    from runbooklib.settings import Profile

EXIT_HEALTHY, EXIT_FAILED, EXIT_BAD_PARAMETERS, EXIT_DIAGNOSED, EXIT_INCONCLUSIVE, EXIT_UNKNOWN = 0, 1, 2, 3, 4, 5
EXIT_MITIGATION_FAILED = 6
EXIT_LEAK = 7
EXIT_CODES = {
    EXIT_HEALTHY: "healthy: every check the verdict rests on ran and passed",
    EXIT_FAILED: "the run failed (its bundle is still written, naming the failing cell), or its record was not stored",
    EXIT_BAD_PARAMETERS: "bad parameters, settings or usage: nothing ran",
    EXIT_DIAGNOSED: "a cause was diagnosed (every mitigation that was tried succeeded, or none was approved)",
    EXIT_INCONCLUSIVE: "inconclusive: a check the verdict needs could not run — no all-clear; check by hand what it names",
    EXIT_UNKNOWN: "unknown: failures are present, but no known cause matched the evidence",
    EXIT_MITIGATION_FAILED: "an approved mitigation failed, or was interrupted with its outcome unknown (see the "
                            "run's mitigations; the verdict is printed as well)",
    EXIT_LEAK: "a file of the run's record, or the review, would have held a secret or unmasked personal data: it "
               "was withheld and not published (the message names the file and the kind of leak, never the value)",
}
"""Every exit code of `runbook run` / `runbook demo`, and what it means (README and `runbook --help` show it)."""
EXIT_BY_OUTCOME = {"healthy": EXIT_HEALTHY, "cause": EXIT_DIAGNOSED, "inconclusive": EXIT_INCONCLUSIVE,
                   "unknown": EXIT_UNKNOWN}
STARTUP_SECONDS = 60.0
"""Kernel start, imports and the start cell, in a headless run's time budget."""
SANDBOX_SECONDS = 30.0
"""A kernel that starts its own demo sandbox (`runbook run` in the demo environment) needs this more."""
FINISH_SECONDS = 30.0
"""Rendering the HTML and scrubbing the bundle after the last cell."""
MIN_CELL_SECONDS = 10.0


@dataclass
class RunResult:
    """Where a run's bundle is and how it ended."""

    bundle: Path
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    failed_cell: dict[str, Any] | None = None
    leaks: list[Leak] = field(default_factory=list)
    """What the final scan found (file and kind, never a value): those files were withheld."""
    withheld_at: Path | None = None
    """Where the withheld files are kept (owner-only), outside every bundle."""

    @property
    def record(self) -> Summary:
        """`summary` as the review reads it: typed, and what is not of the shape a run writes left out."""
        from runbooklib import records

        kept = records.summary(self.summary, [])
        return Summary.from_json({"status": "?", **kept}) if kept.get("runbook") else Summary(runbook="?", status="?")

    @property
    def cause(self) -> str | None:
        diagnosis = self.record.diagnosis or {}
        cause = diagnosis.get("cause")
        return str(cause) if cause is not None else None

    @property
    def outcome(self) -> str | None:
        """healthy, cause, unknown or inconclusive (None: no diagnosis, or the run failed)."""
        if self.status != "completed":
            return None
        outcome = self.record.outcome
        if outcome == "cause" and self.cause is None:  # a cause whose name did not survive the shape check
            return None
        return outcome if outcome in EXIT_BY_OUTCOME else None

    @property
    def actions(self) -> list[dict[str, Any]]:
        return self.record.actions

    @property
    def interrupted(self) -> list[dict[str, Any]]:
        """`applying` records of this run's audit with no outcome after them (a kernel killed mid-apply)."""
        from runbooklib.audit import read_audit, unfinished

        return unfinished(read_audit(self.bundle / AUDIT_FILE))

    @property
    def mitigation_failed(self) -> bool:
        return any(a.get("decision") == "failed" for a in self.actions) or bool(self.interrupted)

    @property
    def exit_code(self) -> int:
        if self.leaks:
            return EXIT_LEAK
        if self.outcome is None:
            return EXIT_MITIGATION_FAILED if self.interrupted else EXIT_FAILED
        if self.mitigation_failed:
            return EXIT_MITIGATION_FAILED
        return EXIT_BY_OUTCOME[self.outcome]

    @property
    def unchecked(self) -> list[dict[str, Any]]:
        """What the run could not check (from its diagnosis)."""
        return self.record.unchecked

    @property
    def headline(self) -> str:
        diagnosis = self.record.diagnosis or {}
        if self.status != "completed":
            cell = self.failed_cell or {}
            return REDACTOR.text(f"run failed at cell {cell.get('index')} ({cell.get('section', '?')}): "
                                 f"{cell.get('error', 'unknown error')}")
        if not diagnosis:
            return "no diagnosis was made"
        return REDACTOR.text(f"{diagnosis.get('cause')}: {diagnosis.get('explanation')}")


@dataclass(frozen=True)
class TimeBudget:
    """The most a headless run may take, and what it is made of (printed at the run's start, enforced)."""

    parts: dict[str, float]

    @property
    def seconds(self) -> float:
        return sum(self.parts.values())

    def text(self) -> str:
        return (f"at most {_span(self.seconds)} ("
                + ", ".join(f"{name}: {_span(seconds)}" for name, seconds in self.parts.items()) + ")")


def _span(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds))) if seconds >= 1 else f"{seconds:.1f}s"


def time_budget(spec: catalog.RunbookSpec, params: CommonParams, profile: Profile | None) -> TimeBudget:
    """A run's time budget from its parameters and profile: start-up, one outside call per code cell (each
    allowed the profile's total deadline or a statement timeout), the runbook's deliberate waits, finishing.

    `profile` None: the kernel starts its own demo sandbox; the default timeouts are used (longer than the
    sandbox's own, so the budget still holds)."""
    from runbooklib.db import CLIENT_MARGIN
    from runbooklib.settings import Profile as _Profile

    in_kernel = profile is None
    timeouts = profile or _Profile(name="demo", database_url_env="", platform_api_url="http://127.0.0.1",
                                   platform_api_token_env="")
    slot = max(timeouts.total_timeout, timeouts.statement_timeout + timeouts.connect_timeout + CLIENT_MARGIN)
    nb = nbformat.read(spec.notebook, as_version=4)  # type: ignore[no-untyped-call]
    cells = sum(1 for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", []))
    parts = {"start-up": STARTUP_SECONDS + (SANDBOX_SECONDS if in_kernel else 0.0),
             f"{cells} cells × {slot:g}s": cells * slot, **spec.time_needs(params, slot), "finish": FINISH_SECONDS}
    return TimeBudget(parts)


FALLBACK_BUDGET = TimeBudget({"a run whose parameters could not be read ahead": 1800.0})


def budget_for(slug: str, parameters: Mapping[str, Any]) -> TimeBudget:
    """The time budget of a run with these (typed or raw) parameters: validated, its profile resolved."""
    from runbooklib.params import validate
    from runbooklib.settings import DEMO, demo_profile, load_profiles

    spec = catalog.get(slug)
    try:
        profiles = load_profiles(str(parameters.get("environments_file") or ""))
        params = validate(spec.params_cls, {k: v for k, v in parameters.items() if k != "deadline"},
                          actions=list(spec.approvable), environments=profiles,
                          scenarios=spec.scenarios())
        if params.environment != DEMO:
            return time_budget(spec, params, profiles[params.environment])
        if not params.sandbox:
            return time_budget(spec, params, None)
        return time_budget(spec, params, demo_profile(json.loads(Path(params.sandbox).read_text())))
    except (ConfigError, OSError, ValueError, KeyError):
        return FALLBACK_BUDGET


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
            progress: bool = True, env: Mapping[str, str] | None = None, notebook: Path | None = None,
            budget: TimeBudget | None = None) -> RunResult:
    """Run a runbook notebook headless and write its bundle. Never raises for a failing cell.

    The run must end within its `budget` (default: `budget_for(slug, parameters)`): the kernel gets the
    deadline (every outside call is capped by it) and each cell's timeout is what is left of it, so a cell
    that still runs past it is interrupted. `notebook` overrides the runbook's own notebook (tests use
    purpose-built failing notebooks).
    """
    import papermill as pm

    source = notebook or catalog.get(slug).notebook
    budget = budget or budget_for(slug, parameters)
    bundle = new_bundle(output_root, incident, slug)
    out_nb = bundle / NOTEBOOK
    params = {**parameters, "incident": incident, "run_dir": str(bundle.resolve())}
    REDACTOR.set_scope(incident)
    operator = parameters.get("operator")
    if isinstance(operator, str) and operator_problem(operator) is None:
        REDACTOR.add_public(operator)  # who approved is the record's point (the kernel shows it as it is too)
    started = time.monotonic()
    kernel_ends = started + budget.seconds - FINISH_SECONDS
    params["deadline"] = (datetime.now(UTC) + timedelta(seconds=budget.seconds - FINISH_SECONDS)).isoformat()
    # The kernel stops calling out at its deadline; this cuts a cell that still runs a little after it.
    limits = {"timeout_func": lambda cell: max(MIN_CELL_SECONDS, kernel_ends + MIN_CELL_SECONDS - time.monotonic()),
              "interrupt_on_timeout": True}
    failed_cell: dict[str, Any] | None = None
    previous = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    logging.getLogger("papermill").setLevel(logging.WARNING)
    try:
        pm.execute_notebook(str(source), str(out_nb), parameters=params, kernel_name="python3",
                            progress_bar=progress, log_output=False, request_save_on_cell_execute=True,
                            cwd=str(source.parent), **limits)
        status = "completed"
    except pm.PapermillExecutionError as exc:
        status = "failed"
        error = f"{exc.ename}: {exc.evalue}"
        if exc.ename == "KeyboardInterrupt":
            error = f"the cell was still running at the end of the run's time budget ({budget.text()}) and was interrupted"
        failed_cell = {"index": exc.cell_index, "exec_count": exc.exec_count, "error": error}
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
    if failed_cell is not None:
        failed_cell = REDACTOR.data(failed_cell)
    _finish_summary(bundle, slug, incident, status, failed_cell, elapsed)
    scrub_bundle(bundle)
    write_html(bundle)
    scrub_file(bundle / HTML)  # what nbconvert added around the masked notebook (its title, from metadata)
    leaks = scan_bundle(bundle)  # fail closed: what still holds a secret or personal data is withheld
    withheld = quarantine(bundle, leaks, output_root) if leaks else None
    summary = json.loads((bundle / SUMMARY).read_text()) if (bundle / SUMMARY).exists() else {}
    return RunResult(bundle=bundle, status=status, summary=summary, failed_cell=failed_cell, leaks=leaks,
                     withheld_at=withheld)


def _finish_summary(bundle: Path, slug: str, incident: str, status: str, failed_cell: dict[str, Any] | None,
                    elapsed: float) -> Summary:
    """Complete the kernel's summary with the runner's part (or write one for a kernel that wrote none)."""
    path = bundle / SUMMARY
    try:
        written = json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        written = None
    summary = Summary.from_json(written) if isinstance(written, dict) else Summary(runbook=slug, incident=incident)
    summary.complete(status, failed_cell, elapsed, bundle)
    summary.write(path)
    return summary


def write_html(bundle: Path) -> None:
    """Render the executed notebook to HTML with charts embedded (nbconvert)."""
    from nbconvert import HTMLExporter

    out_nb = bundle / NOTEBOOK
    if not out_nb.exists():
        (bundle / HTML).write_text("<html><body><p>The run failed before the notebook was written.</p></body></html>")
        return
    nb = nbformat.read(out_nb, as_version=4)  # type: ignore[no-untyped-call]
    exporter = HTMLExporter(template_name=OFFLINE_TEMPLATE,  # type: ignore[no-untyped-call]
                            extra_template_basedirs=[str(TEMPLATES)])
    body, _ = exporter.from_notebook_node(nb)
    (bundle / HTML).write_text(body, encoding="utf-8")


TEMPLATES = Path(__file__).resolve().parent / "templates"
OFFLINE_TEMPLATE = "offline"
"""nbconvert's lab template without the scripts it loads from the network (require.js, MathJax, mermaid, the
widget manager): a record must open offline, and its charts are inline images anyway."""




def scrub_bundle(bundle: Path) -> list[str]:
    """Mask secrets and personal data in the bundle's files by their structure (a notebook's outputs by mime type,
    JSON by its strings, HTML around its real inline images); returns the files changed. Sealed files are left."""
    changed = []
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        relative = path.relative_to(bundle)
        if relative.parts[0] in SEALED or path.name == QUARANTINED:
            continue
        if scrub_file(path):
            changed.append(str(relative))
    return changed


def scrub_file(path: Path) -> bool:
    """Mask one file by its structure; True when it changed."""
    raw = path.read_bytes()
    if raw.startswith(BINARY_MAGIC):
        return False
    text = raw.decode("utf-8", errors="replace")
    clean = _scrubbed(path.name, text)
    if clean != text:
        path.write_text(clean, encoding="utf-8")
    return clean != text


def _scrubbed(name: str, text: str) -> str:
    try:
        if name.endswith(".ipynb"):
            return json.dumps(REDACTOR.notebook(json.loads(text)), indent=1, ensure_ascii=False) + "\n"
        if name.endswith(".json"):
            return json.dumps(REDACTOR.data(json.loads(text)), indent=2, default=str)
    except ValueError:
        pass  # not what its name says: masked as text
    if name.endswith((".html", ".htm")):
        return REDACTOR.html_page(text)
    return REDACTOR.text(text)


def load_parameter_files(paths: list[Path]) -> dict[str, Any]:
    """Merge YAML parameter files shallowly (later files win), like papermill does."""
    merged: dict[str, Any] = {}
    for path in paths:
        data = load_yaml(path, "parameter file") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"parameter file {str(path)!r} must map parameter names to values")
        merged.update(data)
    return merged

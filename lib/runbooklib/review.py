"""The incident record: the runs of an incident listed, and compiled into one post-incident review.

A review is built only from run bundles (`summary.json`, `audit.jsonl`): a timeline of runs and
gate decisions (who approved what, when, with which plan, with what result), the key figures of
each run in order (failure rate, queue backlog, DLQ size, retries per first attempt), the impact,
and each runbook's post-incident checklist as its last run answered it. It is written as Markdown
and as one self-contained HTML file (charts inline, no scripts, no network).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from matplotlib.figure import Figure

from runbooklib.audit import read_audit
from runbooklib.context import AUDIT, SUMMARY
from runbooklib.errors import ConfigError, PlatformUnreachable
from runbooklib.params import INCIDENT_RE
from runbooklib.redact import REDACTOR

FIGURES = (("failure_rate", "failure rate", "{:.1%}"), ("queue_waiting", "queue waiting", "{:,.0f}"),
           ("dlq_size", "DLQ size", "{:,.0f}"), ("retry_ratio", "retries per first attempt", "{:.2f}"))
CHANGED = ("applied", "undone")


@dataclass
class RunRecord:
    """One run, as its bundle recorded it."""

    bundle: Path
    summary: dict[str, Any]
    audit: list[dict[str, Any]] = field(default_factory=list)

    @property
    def started(self) -> str:
        return str(self.summary.get("started_at", ""))

    @property
    def runbook(self) -> str:
        return str(self.summary.get("runbook", "?"))

    @property
    def cause(self) -> str:
        return str((self.summary.get("diagnosis") or {}).get("cause", "—"))

    @property
    def applied(self) -> list[str]:
        return [e["action"] for e in self.audit if e.get("decision") in CHANGED]

    @property
    def outcome(self) -> str:
        return str(self.summary.get("status", "?"))

    def line(self) -> str:
        operator = self.summary.get("operator") or "—"
        return (f"{self.started:<25}  {self.runbook:<27}  {operator:<12}  {self.cause:<28}  "
                f"{', '.join(self.applied) or 'nothing applied':<30}  {self.outcome}")


def list_runs(root: Path, incident: str | None = None) -> list[RunRecord]:
    """Every run bundle under `root` (or under `root/<incident>`), oldest first."""
    if incident is not None and not INCIDENT_RE.match(incident):
        raise ConfigError(f"{incident!r} is not an incident id", parameter="incident")
    base = root / incident if incident else root
    if not base.is_dir():
        return []
    records = []
    for summary_path in sorted(base.glob(f"**/{SUMMARY}")):
        try:
            summary = json.loads(summary_path.read_text())
        except ValueError:
            continue
        records.append(RunRecord(summary_path.parent, summary, read_audit(summary_path.parent / AUDIT)))
    return sorted(records, key=lambda r: r.started)


@dataclass
class Review:
    """A compiled post-incident review."""

    incident: str
    runs: list[RunRecord]
    markdown: str
    html: str


def _figure_value(summary: dict[str, Any], key: str) -> float | None:
    facts = summary.get("facts") or {}
    value = facts.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _chart(runs: list[RunRecord]) -> str:
    """A PNG (base64) of the key figures per run, in run order; empty when nothing to draw."""
    fig = Figure(figsize=(8, 2.8), layout="constrained")
    series = [(label, [(i + 1, _figure_value(r.summary, key)) for i, r in enumerate(runs)])
              for key, label, _ in FIGURES]
    series = [(label, [(x, y) for x, y in points if y is not None]) for label, points in series]
    series = [(label, points) for label, points in series if points]
    if not series:
        return ""
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (label, points) in zip(axes, series, strict=True):
        ax.plot([x for x, _ in points], [y for _, y in points], marker="o")
        ax.set_title(label, fontsize="small")
        ax.set_xlabel("run")
        ax.set_xticks([x for x, _ in points])
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode()


def _timeline(runs: list[RunRecord]) -> list[tuple[str, str, str]]:
    """(time, runbook, what happened) for every run start, diagnosis and gate decision, in time order
    (events of one run keep their order when they share a timestamp)."""
    rows: list[tuple[str, str, str]] = []
    for r in runs:
        window = (r.summary.get("window") or {}).get("length")
        rows.append((r.started, r.runbook, f"run started by {r.summary.get('operator') or 'unknown'} "
                                           f"({r.summary.get('environment')}, window {window})"))
        diagnosis = r.summary.get("diagnosis") or {}
        if diagnosis:
            rows.append((r.started, r.runbook, f"diagnosis {diagnosis.get('cause')}: {diagnosis.get('explanation')}"))
        for e in r.audit:
            approval = e.get("approval") or {}
            who = f" — approved by {approval.get('by')} ({approval.get('source')}) for plan {e.get('plan_digest')}" \
                if approval else ""
            rows.append((str(e.get("ts", "")), r.runbook, f"{e.get('action')}: {e.get('decision')}{who} — {e.get('message')}"))
        finish = (r.summary.get("timings") or {}).get("finished_at")
        if finish:
            rows.append((str(finish), r.runbook, f"run {r.outcome}"))
    order = {id(row): i for i, row in enumerate(rows)}
    return sorted(rows, key=lambda row: (row[0][:19], order[id(row)]))


def compile_review(root: Path, incident: str) -> Review:
    """Compile every run of `incident` under `root` into one review (Markdown and HTML)."""
    runs = list_runs(root, incident)
    if not runs:
        raise ConfigError(f"no runs recorded for {incident} under {root}", parameter="incident")
    timeline = _timeline(runs)
    md = [f"# Post-incident review: {incident}", "",
          f"{len(runs)} run(s) of {', '.join(sorted({r.runbook for r in runs}))}, from {runs[0].started} to "
          f"{runs[-1].started}. Compiled {datetime.now().astimezone().isoformat(timespec='seconds')} from the run records.",
          "", "## Runs", "", "| started | runbook | operator | diagnosis | applied | outcome |",
          "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        md.append(f"| {r.started} | {r.runbook} | {r.summary.get('operator') or '—'} | {r.cause} | "
                  f"{', '.join(r.applied) or '—'} | {r.outcome} |")
    md += ["", "## Timeline", ""] + [f"- `{t}` **{rb}** — {what}" for t, rb, what in timeline]
    md += ["", "## Key figures, run by run", "", "| run | " + " | ".join(label for _, label, _ in FIGURES) + " |",
           "| --- |" + " --- |" * len(FIGURES)]
    for i, r in enumerate(runs, 1):
        cells = [fmt.format(v) if (v := _figure_value(r.summary, key)) is not None else "—" for key, _, fmt in FIGURES]
        md.append(f"| {i} ({r.runbook}, {r.started}) | " + " | ".join(cells) + " |")
    md += ["", "## Impact", ""]
    for r in runs:
        facts = r.summary.get("facts") or {}
        replayed = sum(int((e.get("result") or {}).get("replayed") or 0) for e in r.audit)
        md.append(f"- {r.runbook} ({r.started}): {int(facts.get('window_failed') or 0):,} messages failed of "
                  f"{int(facts.get('window_total') or 0):,} in the window; tenants with failures: "
                  f"{facts.get('failing_tenants', '—')}" + (f"; {replayed:,} replayed from the DLQ" if replayed else ""))
    md += ["", "## Post-incident checklists", ""]
    latest: dict[str, RunRecord] = {r.runbook: r for r in runs}
    for runbook, r in latest.items():
        checklist = (r.summary.get("post_incident") or {}).get("items", [])
        md.append(f"### {runbook}")
        md += [f"- [{'x' if i.get('ok') else ' '}] **{i.get('item')}** — {i.get('answer')}" for i in checklist] or [
            "- (this run did not reach its post-incident section)"]
        md.append("")
    markdown = REDACTOR.text("\n".join(md))
    return Review(incident, runs, markdown, _html(incident, markdown, _chart(runs)))


def _html(incident: str, markdown: str, chart: str) -> str:
    """A small, script-free rendering of the review's Markdown (tables, lists, headings) with the chart inline."""
    body: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if table:
            rows = [r.strip("|").split(" | ") for r in table if not set(r.replace("|", "").strip()) <= {"-", " "}]
            head, *rest = rows
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>"
                                  for row in rest) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
            if line.startswith("## Key figures") and chart:
                body.append(f'<img alt="key figures per run" src="data:image/png;base64,{chart}">')
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:.9em}"
             "li{margin:.2em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Review {html.escape(incident)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def write_review(root: Path, incident: str) -> tuple[Review, Path, Path]:
    """Compile and write `review.md` and `review.html` into `root/<incident>/`."""
    review = compile_review(root, incident)
    folder = root / incident
    md_path, html_path = folder / "review.md", folder / "review.html"
    md_path.write_text(review.markdown, encoding="utf-8")
    html_path.write_text(review.html, encoding="utf-8")
    return review, md_path, html_path


def send_webhook(url: str, review: Review, location: Path, *, timeout: float = 10.0) -> int:
    """POST the review's summary and where its files are to a ticketing webhook; returns the HTTP status."""
    payload = REDACTOR.data({
        "incident": review.incident,
        "runs": [{"runbook": r.runbook, "started_at": r.started, "diagnosis": r.cause, "applied": r.applied,
                  "outcome": r.outcome, "bundle": str(r.bundle)} for r in review.runs],
        "review": {"markdown": str(location / "review.md"), "html": str(location / "review.html")},
    })
    try:
        response = httpx.post(url, json=payload, timeout=timeout)
    except httpx.HTTPError as exc:
        raise PlatformUnreachable(f"webhook {url}: {exc.__class__.__name__}") from exc
    return response.status_code

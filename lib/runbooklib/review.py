"""The post-incident review: every run of an incident compiled into one report (Markdown and HTML).

A review is built only from run bundles (`summary.json`, `audit.jsonl`, `evidence/`): a timeline
of runs and gate decisions (who approved what, when, with which plan, with what result); the key
figures (failure rate per channel, queue depth, DLQ size, retries per first attempt) before and
after the first mitigation, charted over time with every mitigation marked; the impact (messages
failed and delayed per channel and tenant, messages replayed or re-queued); each runbook's
post-incident checklist as its last run answered it; and each run's evidence with its checksums
verified. It is written as Markdown and as one self-contained HTML file (charts inline, no scripts,
no network).

The runs are read and verified by `incident.list_runs` (the audit hash chain, the summary's seals of
the audit log and of the evidence index, each evidence checksum); what fails is a record problem,
listed by `runbook runs`, near the top of the review ("Record integrity") and in the webhook
(`webhook.py`). The key figures are `review_figures.py`'s; this module writes the sections. An apply
that was begun (`applying`) and has no outcome is shown as interrupted, outcome unknown, with what to
verify by hand; when a run's record has problems, the review never says that nothing was applied, only
that the record cannot confirm it.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mistune

from runbooklib import records
from runbooklib.bundle import EVIDENCE, EVIDENCE_INDEX
from runbooklib.diagnosis import could_not_check
from runbooklib.errors import ConfigError
from runbooklib.incident import LINE_BREAKS, RunRecord, interruption, list_runs
from runbooklib.leaks import LeakFound, scan_text
from runbooklib.params import operator_problem
from runbooklib.redact import REDACTOR
from runbooklib.results import LABELS
from runbooklib.review_figures import (
    REQUEUED_KEYS,
    Change,
    KeyFigure,
    Measurement,
    changes,
    chart_png,
    format_figure,
    key_figures,
    measurements,
    parse_time,
)

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|~])|(?<![^\W_])_|_(?![^\W_])")
"""What Markdown (and the HTML inside it) reads as structure mid-line; `_` only where it can open or close emphasis
(not inside a word such as retry_failed_sms)."""


def _md(value: Any) -> str:
    """Text from a record, a person or a provider as one inert line of Markdown: line breaks become spaces, other
    unprintable characters are dropped, and every character Markdown or HTML would read as structure is escaped."""
    text = LINE_BREAKS.sub(" ", str(value))
    text = "".join(c for c in text if c.isprintable())
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def _code(value: Any) -> str:
    """Text for inside a Markdown code span (where escapes do not work): one line, no backticks."""
    return LINE_BREAKS.sub(" ", str(value)).replace("`", "'")


def _interrupted_text(item: dict[str, Any], run: int) -> str:
    return (f"{_md(item['action'])} (run {run}): interrupted while applying — outcome unknown; "
            f"verify: {_md(item['verify_by_hand'])}")


@dataclass
class Review:
    """A compiled post-incident review."""

    incident: str
    runs: list[RunRecord]
    markdown: str
    html: str
    summary: list[str] = field(default_factory=list)
    """The Summary section's lines (Markdown), also sent to a ticketing webhook."""
    figures: list[KeyFigure] = field(default_factory=list)


def _scope(slug: str) -> str:
    """What the runbook `slug` covers, as it declares it; the slug itself for a runbook no longer declared."""
    from runbooklib import catalog

    try:
        return catalog.get(slug).label
    except ConfigError:
        return slug


def _timeline(runs: list[RunRecord]) -> list[tuple[str, str, str]]:
    """(time, runbook, what happened) for every run start, check, diagnosis and gate decision, in time order
    (events of one run keep their order when they share a timestamp)."""
    rows: list[tuple[str, str, str]] = []
    for n, r in enumerate(runs, 1):
        window = r.summary.window.get("length")
        rows.append((r.started, r.runbook, _md(f"run started by {r.summary.operator or 'unknown'} "
                                              f"({r.summary.environment}, window {window})")))
        findings = sorted((f for f in r.summary.findings.values() if f.get("at")),
                          key=lambda f: str(f["at"]))
        for f in findings:
            rows.append((str(f["at"]), r.runbook, _md(f"check {f.get('title')}: "
                                                     f"{LABELS.get(str(f.get('status')), str(f.get('status')).upper())} — "
                                                     f"{f.get('summary')}")))
        diagnosis = r.diagnosis
        if diagnosis:
            rows.append((str(diagnosis.get("at") or r.started), r.runbook,
                         _md(f"diagnosis {diagnosis.get('cause')}: {diagnosis.get('explanation')}")))
        cut = r.interrupted_entries()
        for e in r.audit:
            approval = e.get("approval") or {}
            who = f" — approved by {approval.get('by')} ({approval.get('source')}) for plan {e.get('plan_digest')}" \
                if approval else ""
            what = f"{e.get('action')}: {e.get('decision')}{who}"
            if e.get("decision") == "already_applied":
                what += f" — skipped: already applied by run {e.get('by_run') or '?'}"
            if e.get("message"):
                what += f" — {e.get('message')}"
            what = _md(what)
            if any(e is c for c in cut):
                what += " — **" + _interrupted_text(interruption(e), n) + "**"
            rows.append((str(e.get("ts", "")), r.runbook, what))
        finish = r.summary.finished_at
        if finish:
            rows.append((str(finish), r.runbook, _md(f"run {r.outcome}")))
    order = {id(row): i for i, row in enumerate(rows)}
    return sorted(rows, key=lambda row: (parse_time(row[0]) or datetime.min.replace(tzinfo=UTC), order[id(row)]))


def _summary(runs: list[RunRecord], figures: list[KeyFigure], applied: list[Change]) -> list[str]:
    """What was found, what was done, whether it worked, and what it cost — in a few lines."""
    md = []
    for runbook in dict.fromkeys(r.runbook for r in runs):
        last = [r for r in runs if r.runbook == runbook][-1]
        diagnosis = last.diagnosis
        line = (f"- **Found** ({_md(runbook)}): `{_code(diagnosis.get('cause', 'no diagnosis'))}` — "
                f"{_md(diagnosis.get('explanation', 'the run ended before its diagnosis'))}")
        if last.unchecked and diagnosis.get("cause") != "inconclusive":
            line += f"; **could not check**: {_md(could_not_check(last.unchecked))}"
        if last.outcome != "completed":
            why = (last.summary.failed_cell or {}).get("error")
            line += (f" — **but the run then {_md(last.outcome.upper())}**" + (f" ({_md(why)})" if why else "")
                     + ": what came after was not checked")
        md.append(line)
        if diagnosis.get("cause") == "inconclusive":
            md.append(f"- **Could not check** ({_md(runbook)}) — no all-clear; look at these by hand: "
                      + "; ".join(_md(f"{u.get('what')}: {u.get('why')}") + (f" (by hand: `{_code(u.get('by_hand'))}`)"
                                                                       if u.get("by_hand") else "")
                                  for u in last.unchecked if u.get("needed")))
    done = [c for c in applied if c.mitigation]
    items = ([_md(f"{c.action} ({c.at:%H:%M:%S} UTC, approved by {c.by})") for c in done]
             + [_interrupted_text(i, n) for n, i in _interrupted(runs)])
    doubt = _unconfirmed(runs)
    if items:
        md.append("- **Done**: " + "; ".join(items)
                  + (f" — and the record cannot confirm this is all: {_md(doubt)}" if doubt else ""))
    else:
        md.append("- **Done**: " + (f"no mitigation is on record, but the record cannot confirm that none was applied: "
                                    f"{_md(doubt)}" if doubt else "no mitigation was applied"))
    moved = [f"{f.label} {format_figure(f.series[0].metric, f.before.value)} → {format_figure(f.series[0].metric, f.after.value)}"
             for f in figures if f.mitigations and f.before is not None and f.after is not None]
    if done:
        md.append("- **Effect**: " + (_md("; ".join(moved)) if moved else "no figure was measured on both sides of a mitigation"))
    not_recovered = [f"{r.runbook}: {f.get('title')} — {f.get('summary')}" for r in runs
                     for f in r.summary.findings.values() if f.get("classification") == "not_recovered"]
    if not_recovered:
        md.append("- **Not recovered** at the last look: " + _md("; ".join(not_recovered)))
    failed: dict[str, int] = {}
    for r in runs:
        for channel, impact in r.summary.impact.items():
            failed[channel] = max(failed.get(channel, 0), int(impact.get("failed") or 0))
    if failed:
        md.append("- **Impact**: " + ", ".join(f"{n:,} {_md(channel)} messages failed" for channel, n in failed.items())
                  + " in the runs' windows (per tenant below)")
    damaged = [f"run {n} ({r.runbook}): {p}" for n, r in enumerate(runs, 1) for p in r.problems]
    if damaged:
        md.append("- **Record problems** (read around, reported here; what they touch cannot be trusted, see Record "
                  "integrity): " + _md("; ".join(damaged)))
    return md


def _interrupted(runs: list[RunRecord]) -> list[tuple[int, dict[str, Any]]]:
    """(run number, interrupted apply) for every apply of the incident begun and never recorded as finished."""
    return [(n, i) for n, r in enumerate(runs, 1) for i in r.interrupted]


def _unconfirmed(runs: list[RunRecord]) -> str:
    """Which runs' records have problems (so what they show applied may not be all), or "" when none has."""
    doubtful = [f"run {n} ({r.runbook})" for n, r in enumerate(runs, 1) if r.problems]
    return (", ".join(doubtful) + " — see Record integrity") if doubtful else ""


def _integrity(runs: list[RunRecord]) -> list[str]:
    """The Record integrity section: what of each run's record failed verification, and what that means."""
    md = ["Each run's audit log is hash-chained and its summary seals the chain's head and the evidence index; the "
          "chain, both seals and every evidence checksum were verified now.", ""]
    damaged = [(n, r) for n, r in enumerate(runs, 1) if r.problems]
    if not damaged:
        return md + ["Every run's record verified: no audit line edited, deleted, moved or cut off, no evidence changed."]
    md.append("These runs' records cannot be fully trusted:")
    md.append("")
    for n, r in damaged:
        md += [f"- **run {n}** ({_md(r.runbook)}, `{_code(r.location)}`): {_md(p)}" for p in r.problems]
    return md + ["", "What these records show applied may not be all that was applied (an audit line can be missing), "
                     "and a figure from evidence that does not match its checksum or seal cannot be relied on: check "
                     "the systems themselves before trusting them."]


def _key_figures(figures: list[KeyFigure], applied: list[Change], runs: list[RunRecord]) -> list[str]:
    items = ([f"**{_md(c.action)}** ({_md(c.runbook)}, run {c.run}) at {c.at:%H:%M:%S} UTC, approved by {_md(c.by)}"
              for c in applied if c.mitigation]
             + [f"**{_interrupted_text(i, n)}**" for n, i in _interrupted(runs)])
    doubt = _unconfirmed(runs)
    if items:
        head = "Mitigations applied: " + "; ".join(items) + "." + (
            f" The record cannot confirm this is all: {_md(doubt)}." if doubt else "")
    else:
        head = (f"No mitigation is on record in this incident, but the record cannot confirm that none was applied: "
                f"{_md(doubt)}." if doubt else "No mitigation was applied in this incident.")
    md = [head,
          "", "Each figure is compared around the first mitigation of the runbook that measured it: before is the last "
          "value measured before it, after the last measured since. With no mitigation: the first and the last value.",
          "", "| key figure | compared around | before | after | change |", "| --- | --- | --- | --- | --- |"]
    for f in figures:
        before, after = f.before, f.after
        change = "—"
        if before is not None and after is not None:
            delta = after.value - before.value
            change = ("+" if delta > 0 else "") + (f"{delta * 100:.1f} pts" if before.metric == "failure_rate"
                                                   else format_figure(before.metric, delta))
        around = f"{f.mitigations[0].action} ({f.mitigations[0].at:%H:%M:%S})" if f.mitigations else "no mitigation"
        md.append(f"| {_md(f.label)} | {_md(around)} | {_md(before.text()) if before else 'not measured'} | "
                  f"{_md(after.text()) if after else 'not measured'} | {change} |")
    if not figures:
        md.append("| (no run recorded key figures) | — | — | — | — |")
    return md


def _impact(runs: list[RunRecord], found: list[Measurement]) -> list[str]:
    md = ["### Messages failed and delayed, per channel and tenant", "",
          "Delayed: not failed, but still queued or retrying, or sent only after a retry. Each channel's figures come "
          "from the run whose window held the most failures.", ""]
    worst: dict[str, tuple[int, dict[str, Any]]] = {}
    for n, r in enumerate(runs, 1):
        for channel, impact in r.summary.impact.items():
            if channel not in worst or int(impact.get("failed") or 0) > int(worst[channel][1].get("failed") or 0):
                worst[channel] = (n, impact)
    if worst:
        md += ["| channel | tenant | messages | failed | delayed | window (UTC), run |", "| --- | --- | --- | --- | --- | --- |"]
        for channel, (n, impact) in sorted(worst.items()):
            window = impact.get("window") or {}
            span = _md(f"{str(window.get('since', ''))[:16]} – {str(window.get('until', ''))[11:16]}, run {n}")
            for t in impact.get("tenants") or []:
                md.append(f"| {_md(channel)} | {_md(t.get('tenant_id'))} | {int(t.get('total') or 0):,} | "
                          f"{int(t.get('failed') or 0):,} "
                          f"| {int(t.get('delayed') or 0):,} | {span} |")
            md.append(f"| {_md(channel)} | **all tenants** | {int(impact.get('total') or 0):,} | "
                      f"{int(impact.get('failed') or 0):,} "
                      f"| {int(impact.get('delayed') or 0):,} | {span} |")
    else:
        md.append("No run measured failed or delayed messages per tenant.")
    md += ["", "### Messages replayed or re-queued", ""]
    requeued = []
    for n, r in enumerate(runs, 1):
        for e in r.audit:
            result = e.get("result") or {}
            count = next((result[k] for k in REQUEUED_KEYS if isinstance(result.get(k), int)), None)
            if e.get("decision") == "applied" and count is not None:
                requeued.append(f"| {_md(_scope(r.runbook))} | {_md(e.get('action'))} | {count:,} | "
                                f"{_md(str(e.get('ts'))[:19])}, run {n} |")
    md += (["| channel | action | messages | when (UTC), run |", "| --- | --- | --- | --- |"] + requeued) if requeued \
        else ["Nothing was replayed or re-queued."]
    sizes = [m for m in found if m.metric == "dlq_size"]
    if sizes:
        md += ["", f"DLQ size last measured: {sizes[-1].value:,.0f} ({sizes[-1].at:%H:%M:%S} UTC, run {sizes[-1].run})."]
    return md


def _evidence(runs: list[RunRecord]) -> list[str]:
    """Each run's kept query results, with their checksums verified now."""
    md = ["Each run keeps the results of the queries its decisions rested on (`evidence/`: CSV, the SQL, its bound "
          "values and a SHA-256), so this review can be rebuilt after `message_logs` has dropped the rows.", "",
          "| run | bundle | queries kept | checksums |", "| --- | --- | --- | --- |"]
    for n, r in enumerate(runs, 1):
        folder = r.bundle / EVIDENCE
        check = records.check_evidence(folder)
        sealed = records.evidence_seal_problems(r.summary.to_json(), folder)
        if not check.readable:
            md.append(f"| {n} ({_md(r.runbook)}) | {_md(r.location)} | ? | MISMATCH: {EVIDENCE_INDEX} is not readable |")
            continue
        verdict = "none kept" if not check.listed else "all match"
        if check.mismatched:
            verdict = f"MISMATCH: {_md(', '.join(check.mismatched))}"
        if sealed:
            verdict = (f"MISSING: {EVIDENCE_INDEX}" if not (folder / EVIDENCE_INDEX).is_file() else
                       f"MISMATCH: {EVIDENCE_INDEX} does not match the summary's seal") + (
                f"; {verdict}" if check.mismatched else "")
        md.append(f"| {n} ({_md(r.runbook)}) | {_md(r.location)} | {check.listed} | {verdict} |")
    return md


def compile_review(root: Path, incident: str, *, location: str | None = None) -> Review:
    """Compile every run of `incident` under `root` into one review (Markdown and HTML).

    `location` is where the runs are kept when `root` is a local copy (e.g. an `s3://` prefix)."""
    runs = list_runs(root, incident, location=location, evidence=True)
    if not runs:
        raise ConfigError(f"no runs recorded for {incident} under {location or root}", parameter="incident")
    REDACTOR.set_scope(incident)
    for r in runs:  # who ran and approved is the record's point: an operator's name is shown as it is
        for who in [r.summary.operator] + [(e.get("approval") or {}).get("by") for e in r.audit]:
            if isinstance(who, str) and who and operator_problem(who) is None:
                REDACTOR.add_public(who)
    timeline = _timeline(runs)
    applied = changes(runs)
    found = measurements(runs)
    figures = key_figures(found, applied)
    md = [f"# Post-incident review: {incident}", "",
          f"{len(runs)} run(s) of {', '.join(sorted({r.runbook for r in runs}))}, from {runs[0].started} to "
          f"{runs[-1].started}. Compiled {datetime.now().astimezone().isoformat(timespec='seconds')} from the run records.",
          "", "## Summary", ""]
    summary = _summary(runs, figures, applied)
    md += summary
    md += ["", "## Record integrity", ""] + _integrity(runs)
    md += ["", "## Runs", "", "| run | started | runbook | operator | diagnosis | applied | outcome |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for n, r in enumerate(runs, 1):
        md.append(f"| {n} | {_md(r.started)} | {_md(r.runbook)} | {_md(r.summary.operator or '—')} | "
                  f"{_md(r.cause)} | {_md(', '.join(r.changed) or '—')} | {_md(r.outcome)} |")
    md += ["", "## Timeline", ""] + [f"- `{_code(t)}` **{_md(rb)}** — {what}" for t, rb, what in timeline]
    md += ["", "## Key figures before and after mitigation", ""] + _key_figures(figures, applied, runs)
    md += ["", "## Impact", ""] + _impact(runs, found)
    md += ["", "## Post-incident checklists", ""]
    latest: dict[str, RunRecord] = {r.runbook: r for r in runs}
    for runbook, r in latest.items():
        checklist = r.summary.checklist
        md.append(f"### {_md(runbook)}")
        md += [f"- [{'x' if i.get('ok') else ' '}] **{_md(i.get('item'))}** — {_md(i.get('answer'))}" for i in checklist] or [
            "- (this run did not reach its post-incident section)"]
        md.append("")
    md += ["## Evidence", ""] + _evidence(runs)
    markdown = REDACTOR.text("\n".join(md))
    review = Review(incident, runs, markdown, _html(incident, markdown, chart_png(figures)),
                    [REDACTOR.text(line) for line in summary], figures)
    leaks = scan_text("review.md", review.markdown) + scan_text("review.html", review.html)
    if leaks:  # fail closed: nothing of this review is written or sent
        raise LeakFound(leaks, f"the review of {incident}")
    return review


_MARKDOWN = mistune.create_markdown(escape=True, plugins=["table"])
"""CommonMark and GFM tables; raw HTML in the text is escaped, never passed through, and unsafe link schemes
are dropped (defence in depth: `_md` already escapes everything Markdown would read as structure)."""


_KEY_FIGURES = "<h2>Key figures before and after mitigation</h2>"


def _html(incident: str, markdown: str, chart: str) -> str:
    """The review's Markdown rendered by mistune into one script-free page, with the chart inline."""
    body = str(_MARKDOWN(markdown))
    if chart:
        body = body.replace(_KEY_FIGURES, _KEY_FIGURES + '<img class="chart" alt="key figures over time, '
                            f'mitigations marked" src="data:image/png;base64,{chart}">', 1)
    style = ("body{font-family:sans-serif;max-width:72em;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;font-size:.9em}"
             "li{margin:.2em 0}img.chart{max-width:100%;height:auto}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Review {html.escape(incident)}</title>"
            f"<style>{style}</style></head><body>{body}</body></html>")


def write_review(root: Path, incident: str, *, location: str | None = None) -> tuple[Review, Path, Path]:
    """Compile and write `review.md` and `review.html` into `root/<incident>/`."""
    review = compile_review(root, incident, location=location)
    folder = root / incident
    md_path, html_path = folder / "review.md", folder / "review.html"
    md_path.write_text(review.markdown, encoding="utf-8")
    html_path.write_text(review.html, encoding="utf-8")
    return review, md_path, html_path

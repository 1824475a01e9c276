"""From findings to one verdict: rules tried in priority order; the first that holds names the cause.

A rule returns `None` (does not hold) or a `Match` with a one-line explanation and the evidence
behind it. When several hold, the diagnosis names one and lists the others, so a responder sees
that, say, the SMTP server is down *and* one tenant has its own problem. Which one is named: a
provider state under which nothing can be sent (`BLOCKING`, in the runbook's priority order), then
one tenant's own problem (`TENANT`), then the causes the logs establish ranked by how many of the
failures above baseline each explains (`SHARE`).

A verdict says what it rests on. Each runbook declares the checks its `healthy` needs (`Needed`).
The outcome is one of:

- a cause code — a rule holds (what could not be checked is listed beside it);
- `inconclusive` — no rule holds and a needed check could not run (error, timeout, missing
  credential, not configured, not run): it names what and why, and what to look at by hand;
- `unknown` — every needed check ran, failures are present, and no rule holds;
- `healthy` — every needed check ran and passed, and no failures are present.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from runbooklib.redact import REDACTOR
from runbooklib.results import CheckResult

HEALTHY = "healthy"
UNKNOWN = "unknown"
INCONCLUSIVE = "inconclusive"
OUTCOMES = ("healthy", "cause", "unknown", "inconclusive")
"""What kind of verdict a diagnosis is (a cause code's outcome is `cause`)."""
_COLOURS = {"healthy": "#1a7f37", "cause": "#cf222e", "unknown": "#cf222e", "inconclusive": "#9a6700"}
BLOCKING, TENANT, SHARE = 0, 1, 2
"""How a match ranks: a provider state a check observed under which nothing can be sent; the failures of a few
tenants while the others are fine; a cause established by the share of the failures above baseline it explains."""


@dataclass
class Match:
    """A rule that holds: why, on what evidence, and how it ranks against others that hold too."""

    explanation: str
    evidence: list[str] = field(default_factory=list)
    tier: int = BLOCKING
    weight: float = 0.0
    """The failures above baseline this cause explains: ranks the matches of the `SHARE` tier."""


@dataclass
class Rule:
    """One candidate cause and the test that decides whether it holds."""

    cause: str
    test: Callable[[], Match | None]


@dataclass(frozen=True)
class Needed:
    """A check a runbook's `healthy` rests on, and what a responder looks at by hand when it cannot run."""

    check: str
    """The finding's name (`CheckResult.name`)."""
    what: str
    """What it establishes, e.g. "the email failure rate in message_logs"."""
    by_hand: str
    """What to look at instead, e.g. the spec's SQL or curl command."""


def unchecked(needed: Sequence[Needed], findings: Mapping[str, CheckResult]) -> list[dict[str, Any]]:
    """Every check that could not run: the needed ones (error, skipped or not run at all) first, then any other
    check that errored. Each entry: check, what, status, why, by_hand, needed."""
    out: list[dict[str, Any]] = []
    names = {n.check for n in needed}
    for n in needed:
        f = findings.get(n.check)
        if f is None:
            out.append({"check": n.check, "what": n.what, "status": "not run", "needed": True, "by_hand": n.by_hand,
                        "why": "its cell did not run in this session"})
        elif f.status in ("error", "skipped"):
            out.append({"check": n.check, "what": n.what, "status": f.status, "needed": True, "by_hand": n.by_hand,
                        "why": REDACTOR.text(f.summary)})
    for f in findings.values():
        if f.status == "error" and f.name not in names:
            out.append({"check": f.name, "what": f.title, "status": f.status, "needed": False, "by_hand": "",
                        "why": REDACTOR.text(f.summary)})
    return out


def could_not_check(entries: Sequence[Mapping[str, Any]], *, why: bool = True) -> str:
    """One line: "the email failure rate (why); the email queue (why)" (or only the names)."""
    if not why:
        return ", ".join(str(e.get("what")) for e in entries)
    return "; ".join(f"{e.get('what')} ({e.get('why')})" for e in entries)


@dataclass
class Diagnosis:
    """The verdict: the named cause, its one-line explanation, the evidence, other causes that also hold, and
    what could not be checked."""

    runbook: str
    cause: str
    explanation: str
    evidence: list[str] = field(default_factory=list)
    others: list[dict[str, str]] = field(default_factory=list)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    unchecked: list[dict[str, Any]] = field(default_factory=list)
    """What could not be checked (see `unchecked()`); a `healthy` verdict never has a needed entry here."""
    figures: list[dict[str, Any]] = field(default_factory=list)
    """The comparisons the verdict decided on (`stats.Comparison.to_json()`): what was compared with what, the
    test's p-value and whether it counted as elevated."""
    notes: list[str] = field(default_factory=list)
    """What the checks observed that is not the named cause: provider states no rule concluded from, causes'
    evidence below their thresholds. An `unknown` verdict cites them as what might explain it."""

    @property
    def healthy(self) -> bool:
        return self.cause == HEALTHY

    @property
    def outcome(self) -> str:
        return self.cause if self.cause in (HEALTHY, UNKNOWN, INCONCLUSIVE) else "cause"

    @property
    def headline(self) -> str:
        text = f"{self.cause}: {self.explanation}"
        if self.unchecked and self.cause != INCONCLUSIVE:
            text += f" — could not check: {could_not_check(self.unchecked, why=False)}"
        return REDACTOR.text(text)

    def to_json(self) -> dict[str, Any]:
        return REDACTOR.mapping({"runbook": self.runbook, "cause": self.cause, "outcome": self.outcome,
                                 "explanation": self.explanation, "evidence": self.evidence, "others": self.others,
                                 "unchecked": self.unchecked, "figures": self.figures, "notes": self.notes,
                                 "at": self.at.isoformat(timespec="milliseconds")})

    def _repr_html_(self) -> str:
        colour = _COLOURS[self.outcome]
        label = {"inconclusive": "Inconclusive — no all-clear"}.get(self.outcome, "Diagnosis")
        ev = "".join(f"<li>{_e(e)}</li>" for e in self.evidence)
        others = "".join(f"<li><code>{_e(o['cause'])}</code>: {_e(o['explanation'])}</li>" for o in self.others)
        missing = "".join(
            f"<li><b>{_e(u['what'])}</b>: {_e(u['why'])}" + (f"<br>by hand: <code>{_e(u['by_hand'])}</code>"
                                                               if u.get("by_hand") else "") + "</li>"
            for u in self.unchecked)
        notes = "".join(f"<li>{_e(n)}</li>" for n in self.notes)
        return (f'<div style="border:2px solid {colour};padding:6px 12px;margin:6px 0">'
                f'<div style="font-size:1.2em;color:{colour}"><b>{label}: <code>{_e(self.cause)}</code></b></div>'
                f"<div>{_e(self.explanation)}</div>"
                + (f"<div><b>Could not check</b><ul>{missing}</ul></div>" if missing else "")
                + (f"<div><b>Evidence</b><ul>{ev}</ul></div>" if ev else "")
                + (f"<div><b>Also holds</b><ul>{others}</ul></div>" if others else "")
                + (f"<div><b>Also observed</b><ul>{notes}</ul></div>" if notes else "")
                + _figures_html(self.figures)
                + "</div>")

    def __str__(self) -> str:
        return self.headline

    def amended(self, later: Sequence[CheckResult]) -> Diagnosis:
        """The verdict with the checks that ran after it (recovery confirmation) taken in: what could not be checked
        is listed beside it, and a `healthy` verdict that a later check contradicts becomes `unknown`."""
        known = {u["check"] for u in self.unchecked}
        extra = [{"check": f.name, "what": f.title, "status": f.status, "needed": False, "by_hand": "",
                  "why": REDACTOR.text(f.summary) + " (after the diagnosis)"}
                 for f in later if f.status == "error" and f.name not in known]
        failed = [f for f in later if f.status == "fail"]
        if self.cause != HEALTHY or not failed:
            return replace(self, unchecked=[*self.unchecked, *extra])
        found = "; ".join(f"{f.title}: {f.summary}" for f in failed)
        return replace(self, cause=UNKNOWN, explanation=f"no all-clear: the checks before the diagnosis passed, but a "
                                                        f"later one found a problem ({found})",
                       evidence=[*self.evidence, *(f"{f.title}: {f.summary}" for f in failed)],
                       unchecked=[*self.unchecked, *extra])


def _e(value: Any) -> str:
    return html.escape(REDACTOR.text(str(value)))


def _figures_html(figures: Sequence[Mapping[str, Any]]) -> str:
    """The comparisons a verdict used, as a small table: what, window, baseline, p-value, decision."""
    if not figures:
        return ""
    rows = "".join(
        f"<tr><td>{_e(f.get('what'))}</td><td>{int(f.get('failed', 0)):,} / {int(f.get('total', 0)):,} "
        f"({float(f.get('rate', 0)):.1%})</td><td>{float(f.get('baseline_rate', 0)):.1%} "
        f"({_e(f.get('baseline_source'))}, {int(f.get('baseline_total', 0)):,})</td>"
        f"<td>{float(f.get('expected', 0)):,.1f}</td><td>{_e(f.get('p_value'))}</td><td>{_e(f.get('verdict'))}</td></tr>"
        for f in figures)
    return ('<details><summary><b>Figures the verdict used</b></summary><table><tr><th>compared</th><th>window</th>'
            '<th>baseline</th><th>expected</th><th>p</th><th>decision</th></tr>' + rows + "</table></details>")


def diagnose(runbook: str, rules: Sequence[Rule], causes: Mapping[str, str], *, incident_present: bool,
             incident_evidence: Sequence[str] = (), needed: Sequence[Needed] = (),
             findings: Mapping[str, CheckResult] | None = None, figures: Sequence[Mapping[str, Any]] = (),
             notes: Sequence[str] = (), ended: str | None = None,
             unconcluded: Callable[[Sequence[str]], Sequence[str]] | None = None) -> Diagnosis:
    """Try every rule; of those that hold, the best ranked (`Match.tier`, then `Match.weight`, then the rules'
    order) is the cause and the others are listed. Otherwise the verdict rests on `needed`:

    `inconclusive` when a needed check could not run; else `unknown` when `incident_present` or a
    needed check failed (citing `notes`: what was observed that might explain it); else `healthy`.
    Every cause a rule names must be documented in `causes`. `figures` are the comparisons the verdict
    decided on, shown with it. `unconcluded(causes that held)` gives what was observed that names a cause which did
    not hold, kept beside the verdict. `ended` says that the failures of the window are over (its end is back at
    baseline): a cause that only the logs establish is then history, not the present — the verdict is `healthy`
    (when every needed check ran) and what happened is kept beside it; a provider state a check observes now
    never ends this way.
    """
    findings = findings or {}
    missing = unchecked(needed, findings)
    matches: list[tuple[int, str, Match]] = []
    for index, rule in enumerate(rules):
        if rule.cause not in causes:
            raise ValueError(f"cause {rule.cause!r} is not documented for {runbook}")
        found = rule.test()
        if found is not None and rule.cause not in {c for _, c, _ in matches}:
            matches.append((index, rule.cause, found))
    extra = list(unconcluded([c for _, c, _ in matches])) if unconcluded is not None else []
    shown: dict[str, Any] = {"figures": [dict(f) for f in figures], "notes": [*notes, *extra]}
    if matches:
        ranked = sorted(matches, key=lambda m: (m[2].tier, -round(m[2].weight, 6), m[0]))
        _, cause, first = ranked[0]
        blocking_unchecked = [u for u in missing if u["needed"]]
        if ended and all(m.tier == SHARE for _, _, m in ranked) and not blocking_unchecked:
            history = [f"ended in the window: {c} — {m.explanation}" for _, c, m in ranked]
            return Diagnosis(runbook, HEALTHY, f"the failures of this window have ended ({ended}); what happened: "
                                               f"{cause} — {first.explanation}", list(first.evidence),
                             unchecked=missing, figures=shown["figures"], notes=[*history, *shown["notes"]])
        others = [{"cause": c, "explanation": m.explanation} for _, c, m in ranked[1:]]
        return Diagnosis(runbook, cause, first.explanation, list(first.evidence), others, unchecked=missing, **shown)
    failed = [findings[n.check] for n in needed if n.check in findings and findings[n.check].status == "fail"]
    evidence = list(incident_evidence) + [f"{f.title}: {f.summary}" for f in failed
                                          if f"{f.title}: {f.summary}" not in incident_evidence]
    blocking = [u for u in missing if u["needed"]]
    if blocking:
        if incident_present:
            lead = "failures are elevated, but no cause could be established and "
        elif failed:
            lead = (f"{', '.join(f.title for f in failed)} found a problem no known cause explains, and ")
        else:
            lead = "no all-clear: "
        return Diagnosis(runbook, INCONCLUSIVE, f"{lead}{len(blocking)} check(s) the verdict needs could not run: "
                                                f"{could_not_check(blocking, why=False)}", evidence, unchecked=missing,
                         **shown)
    if incident_present or failed:
        cited = [f"might explain it: {n}" for n in notes]
        return Diagnosis(runbook, UNKNOWN, "failures are present but no known cause matched the evidence"
                         + (f"; observed, and might explain it: {len(notes)} finding(s) below" if notes else ""),
                         evidence + cited, unchecked=missing, **shown)
    return Diagnosis(runbook, HEALTHY, f"every check the verdict rests on ran and passed ({len(needed)}: "
                                       f"{', '.join(n.what for n in needed)}); no failure rate above its baseline",
                     evidence, unchecked=missing, **shown)

"""From findings to one cause: rules tried in priority order; the first that holds names the cause.

A rule returns `None` (does not hold) or a `Match` with a one-line explanation and the evidence
behind it. When several hold, the diagnosis names the first and lists the others, so a responder
sees that, say, the SMTP server is down *and* one tenant has its own problem.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runbooklib.redact import REDACTOR

HEALTHY = "healthy"
UNKNOWN = "unknown"


@dataclass
class Match:
    """A rule that holds: why, and on what evidence."""

    explanation: str
    evidence: list[str] = field(default_factory=list)


@dataclass
class Rule:
    """One candidate cause and the test that decides whether it holds."""

    cause: str
    test: Callable[[], Match | None]


@dataclass
class Diagnosis:
    """The named cause, its one-line explanation, the evidence, and other causes that also hold."""

    runbook: str
    cause: str
    explanation: str
    evidence: list[str] = field(default_factory=list)
    others: list[dict[str, str]] = field(default_factory=list)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def healthy(self) -> bool:
        return self.cause == HEALTHY

    @property
    def headline(self) -> str:
        return REDACTOR.text(f"{self.cause}: {self.explanation}")

    def to_json(self) -> dict[str, Any]:
        return REDACTOR.mapping({"runbook": self.runbook, "cause": self.cause, "explanation": self.explanation,
                              "evidence": self.evidence, "others": self.others,
                              "at": self.at.isoformat(timespec="milliseconds")})

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.healthy else "#cf222e"
        ev = "".join(f"<li>{html.escape(REDACTOR.text(e))}</li>" for e in self.evidence)
        others = "".join(f"<li><code>{html.escape(o['cause'])}</code>: {html.escape(REDACTOR.text(o['explanation']))}</li>"
                         for o in self.others)
        return (f'<div style="border:2px solid {colour};padding:6px 12px;margin:6px 0">'
                f'<div style="font-size:1.2em"><b>Diagnosis: <code>{html.escape(self.cause)}</code></b></div>'
                f"<div>{html.escape(REDACTOR.text(self.explanation))}</div>"
                + (f"<div><b>Evidence</b><ul>{ev}</ul></div>" if ev else "")
                + (f"<div><b>Also holds</b><ul>{others}</ul></div>" if others else "")
                + "</div>")

    def __str__(self) -> str:
        return self.headline


def diagnose(runbook: str, rules: Sequence[Rule], causes: Mapping[str, str], *,
             incident_present: bool, incident_evidence: Sequence[str] = ()) -> Diagnosis:
    """Try every rule; the first that holds is the cause.

    If none holds: `unknown` when `incident_present` (failures without an identified cause), else
    `healthy`. Every cause a rule names must be documented in `causes`.
    """
    matches: list[tuple[str, Match]] = []
    for rule in rules:
        if rule.cause not in causes:
            raise ValueError(f"cause {rule.cause!r} is not documented for {runbook}")
        found = rule.test()
        if found is not None:
            matches.append((rule.cause, found))
    if matches:
        cause, first = matches[0]
        others = [{"cause": c, "explanation": m.explanation} for c, m in matches[1:]]
        return Diagnosis(runbook, cause, first.explanation, list(first.evidence), others)
    if incident_present:
        return Diagnosis(runbook, UNKNOWN, "failures are elevated but no known cause matched the evidence",
                         list(incident_evidence))
    return Diagnosis(runbook, HEALTHY, "failure rate is at baseline and every provider check passed",
                     list(incident_evidence))

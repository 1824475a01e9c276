"""The rule helpers every runbook's diagnosis shares: thresholds, and tests of findings and facts.

A rule reads what the checks recorded (`ctx.findings`) and the facts they left (`ctx.facts`); it never
queries anything itself, so it can be tested without a database or a provider (`tests/lib/test_rules.py`).
"""

from __future__ import annotations

from typing import Any

from runbooklib.context import RunContext
from runbooklib.diagnosis import Match
from runbooklib.results import CheckResult

MIN_FAILURES = 10
"""Fewer failures than this in the window is never an incident by itself."""
DOMINANT_SHARE = 0.5
TENANT_SHARE = 0.8


def rate(row: dict[str, Any]) -> float:
    total = int(row.get("total") or 0)
    return (int(row.get("failed") or 0) / total) if total else 0.0


def elevated(failure_rate: float, baseline: float, failed: int) -> bool:
    """A failure rate counts as elevated at twice the baseline and at least 5 points above it."""
    return failed >= MIN_FAILURES and failure_rate >= max(2 * baseline, baseline + 0.05)


def finding(ctx: RunContext, name: str) -> CheckResult | None:
    return ctx.findings.get(name)


def passed(ctx: RunContext, name: str) -> bool:
    """The check ran in this run and found nothing wrong (what a checklist may tick on)."""
    found = ctx.findings.get(name)
    return found is not None and found.passed


def from_check(ctx: RunContext, names: tuple[str, ...], classifications: tuple[str, ...], lead: str) -> Match | None:
    """Holds when one of the named checks failed with one of the classifications."""
    for name in names:
        f = finding(ctx, name)
        if f is not None and f.status == "fail" and f.classification in classifications:
            return Match(f"{lead}: {f.summary}", [f"{f.title}: {f.summary}", *log_evidence(ctx)])
    return None


def class_share(ctx: RunContext, cls: str) -> float:
    """The share of the window's errors in class `cls` (from the top-errors check)."""
    shares: dict[str, float] = ctx.facts.get("error_class_shares") or {}
    return float(shares.get(cls, 0.0))


def from_logs(ctx: RunContext, error_class: str, explanation: str) -> Match | None:
    """Holds when failures are elevated and one error class dominates them in message_logs."""
    if ctx.facts.get("incident_present") and class_share(ctx, error_class) >= DOMINANT_SHARE:
        return Match(explanation, log_evidence(ctx))
    return None


def log_evidence(ctx: RunContext) -> list[str]:
    out = []
    failure_rate = finding(ctx, "failure_rate")
    if failure_rate is not None:
        out.append(f"message_logs: {failure_rate.summary}")
    errors = finding(ctx, "top_errors")
    if errors is not None and ctx.facts.get("dominant_error_class"):
        out.append(f"message_logs: {errors.summary}")
    return out


def tenant_rule(ctx: RunContext, noun: str) -> Match | None:
    """One tenant carries most failures while the others are near the baseline."""
    share = float(ctx.facts.get("top_tenant_share") or 0.0)
    top_rate = float(ctx.facts.get("top_tenant_rate") or 0.0)
    rest_rate = float(ctx.facts.get("rest_rate") or 0.0)
    base = float(ctx.facts.get("baseline_rate") or 0.0)
    if (int(ctx.facts.get("tenants") or 0) >= 2 and int(ctx.facts.get("window_failed") or 0) >= MIN_FAILURES
            and share >= TENANT_SHARE and top_rate >= 0.3 and rest_rate < max(2 * base, base + 0.05)):
        split = finding(ctx, "tenant_split")
        errors = finding(ctx, "top_errors")
        evidence = [f"{f.title}: {f.summary}" for f in (split, errors) if f is not None]
        return Match(f"tenant {ctx.facts['top_tenant']} has {share:.0%} of the failures ({top_rate:.0%} of its "
                     f"{noun}) while the other tenants fail at {rest_rate:.1%}", evidence)
    return None

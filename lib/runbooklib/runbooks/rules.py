"""The rule helpers every runbook's diagnosis shares: thresholds, and tests of findings and evidence.

A rule reads what the checks recorded (`ctx.findings`) and the typed evidence they left (`ctx.evidence`,
see `runbooks.log_facts`); it never queries anything itself, so it can be tested without a database or a
provider (`tests/lib/test_rules.py`).
"""

from __future__ import annotations

from typing import Any

from runbooklib.context import RunContext
from runbooklib.diagnosis import Match
from runbooklib.results import CheckResult
from runbooklib.runbooks.log_facts import ERROR_CLASSES, TENANT_SPLIT, WINDOW_RATE

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


def incident_present(ctx: RunContext) -> bool:
    """Failures are elevated above the baseline in this run's window (the failure-rate check says so)."""
    window = ctx.evidence.find(WINDOW_RATE)
    return window is not None and window.elevated


def class_share(ctx: RunContext, cls: str) -> float:
    """The share of the window's errors in class `cls` (from the top-errors check; 0 when it did not run)."""
    classes = ctx.evidence.find(ERROR_CLASSES)
    return classes.share(cls) if classes is not None else 0.0


def from_logs(ctx: RunContext, error_class: str, explanation: str) -> Match | None:
    """Holds when failures are elevated and one error class dominates them in message_logs."""
    if incident_present(ctx) and class_share(ctx, error_class) >= DOMINANT_SHARE:
        return Match(explanation, log_evidence(ctx))
    return None


def log_evidence(ctx: RunContext) -> list[str]:
    out = []
    failure_rate = finding(ctx, "failure_rate")
    if failure_rate is not None:
        out.append(f"message_logs: {failure_rate.summary}")
    errors = finding(ctx, "top_errors")
    classes = ctx.evidence.find(ERROR_CLASSES)
    if errors is not None and classes is not None and classes.dominant:
        out.append(f"message_logs: {errors.summary}")
    return out


def tenant_rule(ctx: RunContext, noun: str) -> Match | None:
    """One tenant carries most failures while the others are near the baseline."""
    split, window = ctx.evidence.find(TENANT_SPLIT), ctx.evidence.find(WINDOW_RATE)
    if split is None or window is None or split.top_tenant is None:
        return None
    share, top_rate, rest_rate, base = split.top_share, split.top_rate, split.rest_rate, window.baseline_rate
    if (split.tenants >= 2 and window.failed >= MIN_FAILURES
            and share >= TENANT_SHARE and top_rate >= 0.3 and rest_rate < max(2 * base, base + 0.05)):
        checks = (finding(ctx, "tenant_split"), finding(ctx, "top_errors"))
        evidence = [f"{f.title}: {f.summary}" for f in checks if f is not None]
        return Match(f"tenant {split.top_tenant} has {share:.0%} of the failures ({top_rate:.0%} of its "
                     f"{noun}) while the other tenants fail at {rest_rate:.1%}", evidence)
    return None

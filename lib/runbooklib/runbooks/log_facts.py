"""What a channel's `message_logs` checks establish, typed: the rules, the actions and the recovery checks take
these instead of reading string keys off a blackboard.

Each is produced by one check of `runbooks.channel_checks` and kept under its `Key` in `ctx.evidence`; each
also says what it adds to `summary.json`'s facts (`to_facts`, under the names the record has always used).
Every rate in them is compared with its own baseline by `stats.compare`, and the comparisons travel with them
so that a diagnosis can show the figures it decided on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from runbooklib.evidence import Key
from runbooklib.stats import Comparison, compare
from runbooklib.thresholds import MIN_CLASS_FAILURES


@dataclass(frozen=True)
class WindowRate:
    """The channel's failures in the window against the baseline before it (`check_failure_rate`)."""

    total: int
    failed: int
    rate: float
    baseline_total: int
    baseline_rate: float
    delivered: int = 0
    baseline_delivered: int = 0
    elevated: bool = False
    """Failures are elevated above the baseline (`stats.Comparison.elevated`): the incident is present."""
    baseline_failed: int | None = None
    comparison: Comparison | None = None
    """The test behind `elevated`, with its figures."""
    reference: tuple[datetime, datetime] | None = None
    """When the baseline was itself elevated (an incident that began before it), the quietest segment of it that the
    window is compared with instead; the baseline figures above are that segment's."""
    recent: Comparison | None = None
    """The end of the window on its own (failing, bounced and retrying messages) against the baseline: failures that
    were elevated in the window but are not here have ended."""

    @property
    def end_at_baseline(self) -> bool:
        """The end of the window is at baseline (not even risen), on enough messages to tell."""
        from runbooklib.thresholds import RECENT_MIN_MESSAGES

        return self.recent is not None and self.recent.total >= RECENT_MIN_MESSAGES and not self.recent.rose

    @property
    def test(self) -> Comparison:
        """The comparison behind this rate (made from the figures when none was kept)."""
        if self.comparison is not None:
            return self.comparison
        base_failed = self.baseline_failed if self.baseline_failed is not None else round(
            self.baseline_rate * self.baseline_total)
        return compare("failure rate", self.failed, self.total, base_failed, self.baseline_total)

    def to_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"window_total": self.total, "window_failed": self.failed, "failure_rate": self.rate,
                               "baseline_rate": self.baseline_rate, "baseline_total": self.baseline_total,
                               "window_delivered": self.delivered, "baseline_delivered": self.baseline_delivered,
                               "incident_present": self.elevated}
        if self.reference is not None:
            out["baseline_reference"] = [t.isoformat(timespec="seconds") for t in self.reference]
        if self.recent is not None:
            out.update(recent_problem_rate=round(self.recent.rate, 4), end_at_baseline=self.end_at_baseline)
        return out


@dataclass(frozen=True)
class ErrorClasses:
    """What the window's failures are, by error class (`check_top_errors`, or `check_error_codes` for a channel
    whose provider reports codes, which also counts them by retry category), each class compared with its own
    count in the baseline."""

    total: int = 0
    shares: dict[str, float] = field(default_factory=dict)
    """Error class → its share of the window's errors."""
    dominant: str | None = None
    categories: dict[str, int] = field(default_factory=dict)
    """Retry category (transient, permanent, consent, config) → failures (coded channels only)."""
    counts: dict[str, int] = field(default_factory=dict)
    """Error class → failing, bounced and retrying messages in the window."""
    baseline_counts: dict[str, int] = field(default_factory=dict)
    """Error class → the same in the baseline."""
    messages: int = 0
    """Messages in the window (every status), the denominator of each class's rate."""
    baseline_messages: int = 0

    def share(self, cls: str) -> float:
        return float(self.shares.get(cls, 0.0))

    def comparison(self, classes: Iterable[str], what: str = "") -> Comparison:
        """The classes together, in the window against the baseline."""
        wanted = list(classes)
        return compare(what or " / ".join(wanted), sum(self.counts.get(c, 0) for c in wanted), self.messages,
                       sum(self.baseline_counts.get(c, 0) for c in wanted), self.baseline_messages,
                       min_failures=MIN_CLASS_FAILURES)

    @cached_property
    def comparisons(self) -> dict[str, Comparison]:
        """Every class seen in the window, compared with its baseline."""
        return {c: self.comparison([c], f"class {c}") for c in self.counts}

    @cached_property
    def total_excess(self) -> float:
        """Failures above what each class's baseline explains, summed over the classes."""
        return sum(c.excess for c in self.comparisons.values())

    def excess_share(self, classes: Iterable[str]) -> float:
        """The share of all the failures above baseline that these classes carry."""
        total = self.total_excess
        return sum(self.comparisons[c].excess for c in set(classes) if c in self.comparisons) / total if total else 0.0

    def risen(self) -> list[str]:
        """The classes that rose above their baseline, most excess first."""
        found = [(c, cmp.excess) for c, cmp in self.comparisons.items() if cmp.rose]
        return [c for c, _ in sorted(found, key=lambda x: (-x[1], x[0]))]

    def to_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dominant_error_class": self.dominant, "error_class_shares": self.shares,
                               "error_total": self.total}
        if self.dominant is not None:
            out["dominant_error_share"] = self.shares[self.dominant]
        if self.categories:
            out["category_counts"] = self.categories
        if self.counts:
            out["error_classes_risen"] = self.risen()
        return out


@dataclass(frozen=True)
class TenantSplit:
    """How the window's failures fall across tenants (`check_tenant_split`), each tenant compared with its own
    baseline."""

    tenants: int
    failing: int
    top_tenant: str | None = None
    top_share: float = 0.0
    """The top tenant's share of all failures."""
    top_rate: float = 0.0
    """The share of the top tenant's own messages that failed."""
    rest_rate: float = 0.0
    """The failure rate of every other tenant together."""
    comparisons: tuple[Comparison, ...] = ()
    """Every tenant with failures in the window, against its own baseline (most failures first)."""
    elevated_tenants: tuple[str, ...] = ()
    """The tenants whose failure rate is elevated above their own baseline."""
    active: int = 0
    """Tenants with messages in the window."""
    rest: Comparison | None = None
    """Every tenant but the elevated ones, together, against their baseline."""
    top_errors: dict[str, str] = field(default_factory=dict)
    """Elevated tenant → its most common error (with its class and share)."""

    def comparison(self, tenant: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.what == f"tenant {tenant}"), None)

    @property
    def excess(self) -> float:
        """Failures above baseline in the elevated tenants."""
        return sum(c.excess for c in self.comparisons if c.what.removeprefix("tenant ") in self.elevated_tenants)

    def to_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tenants": self.tenants, "failing_tenants": self.failing,
                               "elevated_tenants": list(self.elevated_tenants)}
        if self.top_tenant is not None:
            out.update(top_tenant=self.top_tenant, top_tenant_share=self.top_share, top_tenant_rate=self.top_rate,
                       rest_rate=self.rest_rate)
        return out


@dataclass(frozen=True)
class Peak:
    """The busiest minute of failures in the window (`plot_failures_over_time`)."""

    failures_per_minute: float

    def to_facts(self) -> dict[str, Any]:
        return {"peak_failures_per_minute": self.failures_per_minute}


WINDOW_RATE: Key[WindowRate] = Key("window_rate", "check_failure_rate", "the failure rate against the baseline")
ERROR_CLASSES: Key[ErrorClasses] = Key("error_classes", "the top-errors check (check_top_errors or check_error_codes)",
                                       "the window's errors by class")
TENANT_SPLIT: Key[TenantSplit] = Key("tenant_split", "check_tenant_split", "the failures per tenant")
PEAK: Key[Peak] = Key("peak_failures", "plot_failures_over_time", "the busiest minute of failures")

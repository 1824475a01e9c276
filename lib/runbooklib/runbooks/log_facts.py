"""What a channel's `message_logs` checks establish, typed: the rules, the actions and the recovery checks take
these instead of reading string keys off a blackboard.

Each is produced by one check of `runbooks.channel_checks` and kept under its `Key` in `ctx.evidence`; each
also says what it adds to `summary.json`'s facts (`to_facts`, under the names the record has always used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runbooklib.evidence import Key


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
    """Failures are elevated above the baseline (`rules.elevated`): the incident is present."""

    def to_facts(self) -> dict[str, Any]:
        return {"window_total": self.total, "window_failed": self.failed, "failure_rate": self.rate,
                "baseline_rate": self.baseline_rate, "baseline_total": self.baseline_total,
                "window_delivered": self.delivered, "baseline_delivered": self.baseline_delivered,
                "incident_present": self.elevated}


@dataclass(frozen=True)
class ErrorClasses:
    """What the window's failures are, by error class (`check_top_errors`, or `check_error_codes` for a channel
    whose provider reports codes, which also counts them by retry category)."""

    total: int = 0
    shares: dict[str, float] = field(default_factory=dict)
    """Error class → its share of the window's errors."""
    dominant: str | None = None
    categories: dict[str, int] = field(default_factory=dict)
    """Retry category (transient, permanent, consent, config) → failures (coded channels only)."""

    def share(self, cls: str) -> float:
        return float(self.shares.get(cls, 0.0))

    def to_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dominant_error_class": self.dominant, "error_class_shares": self.shares,
                               "error_total": self.total}
        if self.dominant is not None:
            out["dominant_error_share"] = self.shares[self.dominant]
        if self.categories:
            out["category_counts"] = self.categories
        return out


@dataclass(frozen=True)
class TenantSplit:
    """How the window's failures fall across tenants (`check_tenant_split`)."""

    tenants: int
    failing: int
    top_tenant: str | None = None
    top_share: float = 0.0
    """The top tenant's share of all failures."""
    top_rate: float = 0.0
    """The share of the top tenant's own messages that failed."""
    rest_rate: float = 0.0
    """The failure rate of every other tenant together."""

    def to_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"tenants": self.tenants, "failing_tenants": self.failing}
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

"""Is a failure rate elevated? One exact test, with the figures it used, for every rate a diagnosis compares.

A window's failures are compared with a baseline's by the conditional binomial test of two Poisson rates
(Przyborowski and Wilenski): if both came from the same per-message failure rate, the window's share of all the
failures would follow a binomial distribution with the window's share of all the messages. The p-value is the
chance of a share at least as large. The test accounts for both volumes: ten failures in forty messages says
more than ten in ten thousand, and a baseline of twenty messages is less certain than one of twenty thousand.

A rate is *elevated* when it is significant (`SIGNIFICANCE`), has enough failures (a minimum count) and is
material: at least `MATERIAL_RATIO` times the baseline and `MATERIAL_POINTS` above it. A rate that is
significant and at least twice its baseline but not 5 points above it has *risen*: an error class that
rose can be one of an incident's causes, but a rise alone is not an incident.

With no baseline of its own (a new tenant, a thin baseline) the comparison uses the channel's baseline, and
with none at all an assumed rate; `Comparison.baseline_source` says which, and the diagnosis card shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runbooklib.thresholds import (
    ASSUMED_BASELINE_RATE,
    MATERIAL_POINTS,
    MATERIAL_RATIO,
    MIN_FAILURES,
    SIGNIFICANCE,
)

OWN, CHANNEL, ASSUMED = "own", "channel", "assumed"
"""Where a comparison's baseline came from."""


@dataclass(frozen=True)
class Comparison:
    """One rate in the window against its baseline, the test's answer, and whether it is elevated."""

    what: str
    failed: int
    total: int
    baseline_failed: int
    baseline_total: int
    p_value: float
    baseline_source: str = OWN
    min_failures: int = MIN_FAILURES
    alpha: float = SIGNIFICANCE

    @property
    def rate(self) -> float:
        return self.failed / self.total if self.total else 0.0

    @property
    def baseline_rate(self) -> float:
        if self.baseline_source == ASSUMED:
            return ASSUMED_BASELINE_RATE
        return self.baseline_failed / self.baseline_total if self.baseline_total else 0.0

    @property
    def expected(self) -> float:
        """Failures the window would have had at the baseline's rate."""
        return self.total * self.baseline_rate

    @property
    def excess(self) -> float:
        """Failures above what the baseline's rate explains (never below zero)."""
        return max(self.failed - self.expected, 0.0)

    @property
    def ratio(self) -> float | None:
        """The window's rate over the baseline's (None when the baseline had no failures)."""
        return self.rate / self.baseline_rate if self.baseline_rate else None

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha

    @property
    def enough(self) -> bool:
        return self.failed >= self.min_failures

    @property
    def rose(self) -> bool:
        """Significantly above the baseline, with enough failures, and at least `MATERIAL_RATIO` times its rate."""
        return self.enough and self.significant and self.rate >= MATERIAL_RATIO * self.baseline_rate

    @property
    def material(self) -> bool:
        return self.rate >= MATERIAL_RATIO * self.baseline_rate and self.rate - self.baseline_rate >= MATERIAL_POINTS

    @property
    def elevated(self) -> bool:
        """Risen, and by enough to be an incident (`MATERIAL_POINTS` above the baseline too)."""
        return self.rose and self.material

    @property
    def verdict(self) -> str:
        """What the test decided, in a few words."""
        if self.elevated:
            return "elevated"
        if not self.enough:
            return f"too few failures to call ({self.failed:,} < {self.min_failures})"
        if not self.significant:
            return f"within chance (p = {_p(self.p_value)} ≥ {self.alpha:g})"
        if self.rose:
            return f"risen, but less than {MATERIAL_POINTS * 100:g} points above the baseline"
        return f"under {MATERIAL_RATIO:g}× the baseline"

    def line(self) -> str:
        """'sms: 412 of 1,800 failed (22.9%) vs 1.0% (own baseline, 43,200 messages; 18 expected): p < 1e-12 —
        elevated'"""
        base = {OWN: f"own baseline, {self.baseline_total:,} messages",
                CHANNEL: f"the channel's baseline, {self.baseline_total:,} messages",
                ASSUMED: "an assumed rate: no baseline"}[self.baseline_source]
        return (f"{self.what}: {self.failed:,} of {self.total:,} ({self.rate:.1%}) vs {self.baseline_rate:.1%} ({base}; "
                f"{self.expected:,.1f} expected): p {_p(self.p_value, sign=True)} — {self.verdict}")

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "failed": self.failed, "total": self.total, "rate": round(self.rate, 5),
                "baseline_failed": self.baseline_failed, "baseline_total": self.baseline_total,
                "baseline_rate": round(self.baseline_rate, 5), "baseline_source": self.baseline_source,
                "expected": round(self.expected, 2), "excess": round(self.excess, 2),
                "ratio": round(self.ratio, 2) if self.ratio is not None else None, "p_value": float(f"{self.p_value:.3g}"),
                "alpha": self.alpha, "min_failures": self.min_failures, "elevated": self.elevated, "rose": self.rose,
                "verdict": self.verdict}


def _p(value: float, *, sign: bool = False) -> str:
    if value < 1e-12:
        return "< 1e-12"
    text = f"{value:.2g}"
    return f"= {text}" if sign else text


def upper_tail(successes: int, trials: int, probability: float) -> float:
    """P(X ≥ successes) for X ~ Binomial(trials, probability)."""
    if successes <= 0:
        return 1.0
    if successes > trials:
        return 0.0
    if probability <= 0.0:
        return 0.0
    if probability >= 1.0:
        return 1.0
    from scipy.special import bdtrc  # imported here: only a diagnosis needs it

    return float(min(max(bdtrc(successes - 1, trials, probability), 0.0), 1.0))


def compare(what: str, failed: int, total: int, baseline_failed: int, baseline_total: int, *,
            min_failures: int = MIN_FAILURES, alpha: float = SIGNIFICANCE, baseline_source: str = OWN) -> Comparison:
    """Compare `failed` of `total` in the window with `baseline_failed` of `baseline_total` before it.

    With no baseline messages at all the window is compared with `ASSUMED_BASELINE_RATE` (one-sample exact test).
    """
    failed, total = max(int(failed), 0), max(int(total), 0)
    baseline_failed, baseline_total = max(int(baseline_failed), 0), max(int(baseline_total), 0)
    if baseline_total == 0:
        p = upper_tail(failed, total, ASSUMED_BASELINE_RATE)
        return Comparison(what, failed, total, 0, 0, p, ASSUMED, min_failures, alpha)
    share = total / (total + baseline_total) if total else 0.0
    p = upper_tail(failed, failed + baseline_failed, share)
    return Comparison(what, failed, total, baseline_failed, baseline_total, p, baseline_source, min_failures, alpha)


def family_alpha(tests: int, alpha: float = SIGNIFICANCE) -> float:
    """The per-test significance when `tests` comparisons are made at once (Bonferroni): a chance rise in one of
    many tenants is not an incident."""
    return alpha / max(int(tests), 1)

"""The review's key figures: what each run measured, what was applied, and each figure compared around the
first mitigation of the runbooks that measured it (drawn as one chart with every mitigation marked)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from runbooklib import charts
from runbooklib.bundle import METRICS
from runbooklib.incident import CHANGED, RunRecord
from runbooklib.params import UNDO_PREFIX

REQUEUED_KEYS = ("replayed", "retried")
"""Result keys of applied actions that count messages sent again (DLQ replay, SMS retry-failed)."""


NOT_MITIGATIONS = ("send_test_", UNDO_PREFIX)
"""Applied actions that do not mark a mitigation: test messages and undos."""


@dataclass(frozen=True)
class Measurement:
    """One key figure of one run, with when it was true."""

    metric: str
    scope: str
    value: float
    basis: str
    at: datetime
    run: int
    runbook: str

    @property
    def key(self) -> tuple[str, str]:
        return self.metric, self.scope

    @property
    def label(self) -> str:
        if self.metric == "dlq_size":
            return "DLQ size"
        if self.metric == "retry_ratio":
            return f"retries per first attempt ({self.scope})"
        return f"{self.scope} {METRICS[self.metric].split(' (')[0]}"

    def text(self) -> str:
        return f"{format_figure(self.metric, self.value)} ({self.basis}, {self.at:%H:%M:%S}, run {self.run})"


@dataclass(frozen=True)
class Change:
    """An action applied during the incident."""

    at: datetime
    action: str
    runbook: str
    by: str
    run: int

    @property
    def mitigation(self) -> bool:
        return not self.action.startswith(NOT_MITIGATIONS)


def format_figure(metric: str, value: float) -> str:
    if metric == "failure_rate":
        return f"{value:.1%}"
    if metric == "retry_ratio":
        return f"{value:.2f}"
    return f"{value:,.0f}"


def parse_time(text: Any) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def measurements(runs: list[RunRecord]) -> list[Measurement]:
    """Every key figure the runs measured, oldest first."""
    out = []
    for n, r in enumerate(runs, 1):
        for m in r.summary.measurements:
            at = parse_time(m.get("at"))
            if at is None or m.get("metric") not in METRICS or not isinstance(m.get("value"), int | float):
                continue
            out.append(Measurement(str(m["metric"]), str(m.get("scope") or ""), float(m["value"]),
                                   str(m.get("basis") or ""), at, n, r.runbook))
    return sorted(out, key=lambda m: m.at)


def changes(runs: list[RunRecord]) -> list[Change]:
    """Every action applied (or undone) in the incident, oldest first."""
    out = []
    for n, r in enumerate(runs, 1):
        for e in r.audit:
            at = parse_time(e.get("ts"))
            if e.get("decision") in CHANGED and at is not None:
                by = (e.get("approval") or {}).get("by") or e.get("operator") or "?"
                out.append(Change(at, str(e.get("action")), r.runbook, str(by), n))
    return sorted(out, key=lambda c: c.at)


@dataclass(frozen=True)
class KeyFigure:
    """One key figure compared around the first mitigation of the runbooks that measured it."""

    label: str
    series: list[Measurement]
    mitigations: list[Change]

    @property
    def before(self) -> Measurement | None:
        """The last measurement before the first mitigation (with none: the first measurement)."""
        if not self.mitigations:
            return self.series[0]
        earlier = [m for m in self.series if m.at < self.mitigations[0].at]
        return earlier[-1] if earlier else None

    @property
    def after(self) -> Measurement | None:
        """The last measurement since the first mitigation (with none: the last, if measured twice)."""
        if not self.mitigations:
            return self.series[-1] if len(self.series) > 1 else None
        later = [m for m in self.series if m.at >= self.mitigations[0].at]
        return later[-1] if later else None


def key_figures(found: list[Measurement], applied: list[Change]) -> list[KeyFigure]:
    """Every key figure measured, each with the mitigations applied by the runbooks that measured it
    (an email switch is not the SMS queue's mitigation)."""
    out = []
    for key in sorted({m.key for m in found}, key=lambda k: (list(METRICS).index(k[0]), k[1])):
        series = [m for m in found if m.key == key]
        runbooks = {m.runbook for m in series}
        out.append(KeyFigure(series[0].label, series, [c for c in applied if c.mitigation and c.runbook in runbooks]))
    return out


def chart_png(figures: list[KeyFigure]) -> str:
    """A PNG (base64) of every key figure over time with its mitigations marked; empty when nothing to draw."""
    if not figures:
        return ""
    panels = {f.label: [(m.at, m.value) for m in f.series] for f in figures}
    marks = {f.label: [(c.at, c.action) for c in f.mitigations] for f in figures}
    percent = {f.label for f in figures if f.series[0].metric == "failure_rate"}
    fig = charts.plot_before_after(panels, marks, percent=percent)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode()

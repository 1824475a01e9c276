"""`CheckResult`: what every `check_*` function returns. A failing check is a result, not an exception.

Status values: `ok` (healthy), `warn` (degraded or worth a look), `fail` (the check ran and found a
problem — an SMTP server that cannot be reached is a `fail` with classification `unreachable`),
`error` (the check could not run: a secret variable is not set, the database or an API did not
answer, an answer could not be read — it establishes nothing either way), `skipped` (not configured
or not applicable). A verdict rests only on checks that ran (`runbooklib.diagnosis`).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from runbooklib.redact import REDACTOR

STATUSES = ("ok", "warn", "fail", "error", "skipped")
LABELS = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "error": "COULD NOT CHECK", "skipped": "SKIPPED"}
"""How each status is shown to a responder (cards, review, CLI)."""
_COLOURS = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "error": "#8250df", "skipped": "#6e7781"}


@dataclass
class Step:
    """One step of a multi-step check (e.g. SMTP: connect, EHLO, STARTTLS, AUTH, NOOP)."""

    name: str
    ok: bool
    detail: str = ""
    ms: float = 0.0


@dataclass
class CheckResult:
    """The outcome of one check, with the evidence behind it."""

    name: str
    title: str
    status: str
    summary: str
    classification: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    table: pd.DataFrame | None = None
    duration_ms: float = 0.0
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the check finished (the timeline of a review lists checks by it)."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    @property
    def passed(self) -> bool:
        """Ran and found nothing wrong (`ok`, or `warn`: worth a look, not a failure)."""
        return self.status in ("ok", "warn")

    def to_json(self) -> dict[str, Any]:
        """A redacted, JSON-ready record for summary.json (tables are not included, only their size)."""
        return REDACTOR.mapping({
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "classification": self.classification,
            "facts": {k: _jsonable(v) for k, v in self.facts.items()},
            "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail, "ms": round(s.ms, 1)} for s in self.steps],
            "rows": 0 if self.table is None else len(self.table),
            "duration_ms": round(self.duration_ms, 1),
            "at": self.at.isoformat(timespec="milliseconds"),
        })

    def _repr_html_(self) -> str:
        colour = _COLOURS[self.status]
        parts = [
            f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">',
            f'<b style="color:{colour}">{LABELS[self.status]}</b> &nbsp;<b>{_e(self.title)}</b>'
            + (f" &nbsp;<code>{_e(self.classification)}</code>" if self.classification else ""),
            f"<div>{_e(self.summary)}</div>",
        ]
        if self.steps:
            rows = "".join(
                f"<tr><td>{'✔' if s.ok else '✘'}</td><td>{_e(s.name)}</td><td>{_e(s.detail)}</td>"
                f"<td style='text-align:right'>{s.ms:.0f} ms</td></tr>"
                for s in self.steps
            )
            parts.append(f"<table>{rows}</table>")
        if self.facts:
            rows = "".join(f"<tr><th style='text-align:left'>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>"
                           for k, v in self.facts.items())
            parts.append(f"<table>{rows}</table>")
        if self.table is not None and not self.table.empty:
            parts.append(REDACTOR.text(self.table.to_html(index=False, border=0)))
        parts.append("</div>")
        return "".join(parts)

    def __str__(self) -> str:
        return REDACTOR.text(f"[{LABELS[self.status]}] {self.title}: {self.summary}")

    def __repr__(self) -> str:
        """The card's plain-text form (a notebook's text/plain): masked whole, never a table cut short first."""
        rows = "" if self.table is None else f", {len(self.table)} rows"
        return REDACTOR.text(f"CheckResult({self.name}: {LABELS[self.status]} — {self.summary}{rows})")


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """Measure elapsed milliseconds: `with timed() as ms: ...; ms()`."""
    start = time.perf_counter()
    yield lambda: (time.perf_counter() - start) * 1000


def _e(value: Any) -> str:
    return html.escape(REDACTOR.text(str(value)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return str(value)

"""Triage: run a runbook against each of its drill scenarios and judge what it concluded.

A scenario says what the runbook must conclude (`expect`, and optionally `expect_also`: causes that must be
listed beside it, `expect_tenants`: tenants `tenant_specific` must name, `forbid`: actions that must not be
proposed). `triage()` starts the scenario's sandbox, drives the runbook's own notebook cells in this process
(`cells.run_cells`: real sockets, the production clients, a dry run) and returns what it named and what it
proposed, with two kinds of forbidden outcome called out:

- an **all-clear during an incident**: `healthy` where the scenario has a cause;
- a **harmful mitigation planned**: an action proposed (a dry-run plan, ready to approve) that cannot fix the
  scenario's cause — the runbook's own `MITIGATES` table says which causes each action can fix — or one the
  scenario forbids.

`benchmarks/triage.py` runs every scenario and prints accuracy per runbook; `tests/test_triage.py` runs them in CI.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runbooklib import catalog
from runbooklib.cells import run_cells

PROPOSED = "dry_run"
"""A gate decision that puts a plan in front of a responder, ready to approve."""


def confirmations(spec: catalog.Runbook) -> set[str]:
    """The runbook's test-message actions: recovery confirmation a responder asks for, not a fix."""
    from runbooklib.actions.bases import SendTestMessage

    return {cls.name for cls in vars(spec.module).values()
            if isinstance(cls, type) and issubclass(cls, SendTestMessage) and cls.name}


@dataclass
class Triage:
    """What one runbook concluded on one scenario, against what the scenario expects."""

    runbook: str
    scenario: str
    expect: str
    cause: str | None
    others: list[str] = field(default_factory=list)
    proposed: list[str] = field(default_factory=list)
    """Actions whose plan was put up for approval (decision `dry_run`)."""
    decisions: dict[str, str] = field(default_factory=dict)
    forbidden: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    """What the scenario expects beside the cause that the run did not say (a listed cause, a named tenant)."""
    crash: str | None = None
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    changes: list[str] = field(default_factory=list)
    """What the run asked the stand-ins to change or send (a dry run: nothing)."""

    @property
    def correct(self) -> bool:
        return self.crash is None and self.cause == self.expect and not self.missing and not self.forbidden


def judge(spec: catalog.Runbook, scenario: Mapping[str, Any], summary: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(forbidden outcomes, expectations not met) of a run's summary against its scenario."""
    found = summary.get("diagnosis")
    diagnosis: dict[str, Any] = found if isinstance(found, dict) else {}
    cause = str(diagnosis.get("cause")) if diagnosis else None
    others = [str(o.get("cause")) for o in diagnosis.get("others", []) if isinstance(o, dict)]
    expect = str(scenario["expect"])
    forbidden, missing = [], []
    if expect not in ("healthy", "unknown", "inconclusive") and cause == "healthy":
        forbidden.append(f"all-clear during an incident: healthy where the scenario has {expect}")
    mitigates: Mapping[str, Iterable[str]] = getattr(spec.module, "MITIGATES", {})
    others = [str(o.get("cause")) for o in diagnosis.get("others", []) if isinstance(o, dict)]
    # an action for a cause the run lists beside the named one is not harmful (the scenario's `forbid` says otherwise)
    allowed_causes = {expect, *scenario.get("expect_also", []), *(others if cause == expect else [])}
    for action in _proposed(summary):
        if action in confirmations(spec):
            continue
        if action in scenario.get("forbid", []):
            forbidden.append(f"harmful mitigation planned: {action} (the scenario forbids it)")
        elif action in mitigates and not allowed_causes & set(mitigates[action]):
            forbidden.append(f"harmful mitigation planned: {action} cannot fix "
                             f"{', '.join(sorted({expect, *scenario.get('expect_also', [])}))}")
    for also in scenario.get("expect_also", []):
        if also not in others and also != cause:
            missing.append(f"{also} not listed beside the cause")
    named = " ".join([str(diagnosis.get("explanation", "")), *(str(o.get("explanation", ""))
                                                                 for o in diagnosis.get("others", []) if isinstance(o, dict))])
    for tenant in scenario.get("expect_tenants", []):
        if tenant not in named:
            missing.append(f"tenant {tenant} not named")
    return forbidden, missing


def _proposed(summary: Mapping[str, Any]) -> list[str]:
    return [a for a, d in _last_decisions(summary).items() if d == PROPOSED]


def triage(slug: str, scenario: str | Path, *, workdir: Path | None = None, redis_url: str | None = None,
           database_url: str | None = None, **parameters: Any) -> Triage:
    """Run `slug` on one scenario (a name or a file) as a dry run, in this process, and judge it."""
    from runbooklib.redact import REDACTOR
    from runbooklib.sandbox import Sandbox
    from runbooklib.settings import demo_profile, register_profile_secrets

    spec = catalog.get(slug)
    loaded = spec.load_scenario(str(scenario))
    registered = REDACTOR.snapshot()  # each sandbox's fresh secrets are forgotten after its run
    own = workdir is None
    folder = workdir or Path(tempfile.mkdtemp(prefix="runbook-triage-"))
    started = time.monotonic()
    try:
        with Sandbox(loaded, workdir=folder / "sandbox", database_url=database_url, redis_url=redis_url,
                     dependencies=spec.dependencies) as box:
            description = box.describe()
            register_profile_secrets(demo_profile(description))
            with contextlib.redirect_stdout(io.StringIO()):  # what the cells print is in the record
                named = {"scenario": loaded.name} if loaded.name in spec.scenarios() else {}  # a file of one's own: none
                outcome = run_cells(slug, description, folder / "run", incident="TRIAGE-1",
                                    **{**dict(spec.demo_parameters), "recovery_samples": 2, **named, **parameters})
            changes = box.changes()
    finally:
        seconds = time.monotonic() - started
        REDACTOR.restore(registered)
        if own:
            shutil.rmtree(folder, ignore_errors=True)
    forbidden, missing = judge(spec, loaded.data, outcome.summary)
    decisions = _last_decisions(outcome.summary)
    others = [str(o.get("cause")) for o in outcome.diagnosis.get("others", []) if isinstance(o, dict)]
    return Triage(slug, loaded.name, loaded.expect, outcome.cause, others, _proposed(outcome.summary), decisions,
                  forbidden, missing, outcome.crash, seconds, outcome.summary, changes)


def _last_decisions(summary: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for action in summary.get("actions", []) or []:
        if isinstance(action, dict) and isinstance(action.get("action"), str):
            out[action["action"]] = str(action.get("decision"))
    return out


def every_scenario() -> list[tuple[str, str]]:
    """(runbook, scenario) for every built-in scenario of every runbook, in the spec's order."""
    return [(spec.slug, name) for spec in catalog.all_runbooks() for name in spec.scenarios()]

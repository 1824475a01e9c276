"""The fault matrix, driven at the library level: every fault × every runbook it applies to.

Each case breaks one dependency of a healthy sandbox on loopback and runs the runbook's notebook
cells in this process (`runbooklib.cells.run_cells`: a real run context, real sockets, the production clients).
It must finish within the run's own time budget, write its bundle, name the fault in a finding,
end with the expected verdict (never `healthy`) and the documented exit code, and never crash.
Each case's result is kept in `test-artifacts/fault-matrix/` for the README's reliability table
(`python -m tests.faults.report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runbooklib import catalog
from runbooklib.cells import Outcome, run_cells
from runbooklib.runs import EXIT_BY_OUTCOME, EXIT_DIAGNOSED, EXIT_HEALTHY
from runbooklib.sandbox import Sandbox
from tests.faults.matrix import ALL, Fault, World, apply_env, cases, names_fault, restore_env

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parents[2]


def artifacts() -> Path:
    folder = Path(os.environ.get("RUNBOOK_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "fault-matrix"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Sandbox]]:
    """One healthy sandbox per runbook for the module (dry runs change nothing, so cases can share it)."""
    started: dict[str, Sandbox] = {}

    def get(slug: str) -> Sandbox:
        if slug not in started:
            spec = catalog.get(slug)
            started[slug] = Sandbox(spec.load_scenario("healthy"), workdir=tmp_path_factory.mktemp(slug)).start()
        return started[slug]

    yield get
    for box in started.values():
        box.stop()


def drive(world: World, slug: str, run_dir: Path, **parameters: Any) -> Outcome:
    before = apply_env(world)
    try:
        return run_cells(slug, world.description, run_dir, **parameters)
    finally:
        restore_env(before)
        world.close()


def record(name: str, slug: str, outcome: Outcome, expected: str) -> None:
    (artifacts() / f"{name}--{slug}.json").write_text(json.dumps({
        "fault": name, "runbook": slug, "cause": outcome.cause, "expected": expected, "exit_code": outcome.exit_code,
        "seconds": round(outcome.seconds, 2), "bound": round(outcome.bound, 1), "crash": outcome.crash,
        "findings": {n: f.status for n, f in outcome.findings.items()}}, indent=1))


@pytest.mark.parametrize("slug", ALL)
def test_the_unbroken_sandbox_is_healthy(slug: str, sandbox: Callable[[str], Sandbox], tmp_path: Path) -> None:
    """The control: with nothing broken, the same profile and cells end healthy (so each fault is what differs)."""
    outcome = drive(World.of(sandbox(slug)), slug, tmp_path / "run")
    record("none", slug, outcome, "healthy")
    assert outcome.crash is None
    assert outcome.cause == "healthy", outcome.diagnosis
    assert outcome.exit_code == EXIT_HEALTHY
    assert not [u for u in outcome.diagnosis["unchecked"] if u["needed"]]


@pytest.mark.parametrize(("fault", "slug"), cases(), ids=[f"{f.name}-{s}" for f, s in cases()])
def test_a_broken_dependency_never_yields_an_all_clear(fault: Fault, slug: str, sandbox: Callable[[str], Sandbox],
                                                      tmp_path: Path, request: pytest.FixtureRequest) -> None:
    postgres = request.getfixturevalue("postgres") if fault.postgres else None
    world = World.of(sandbox(slug), postgres)
    fault.breaks(world)
    outcome = drive(world, slug, tmp_path / "run")
    expected = fault.expected(slug)
    record(fault.name, slug, outcome, expected)

    assert outcome.crash is None, outcome.crash
    assert outcome.bundle is not None and (outcome.bundle / "summary.json").is_file()
    assert outcome.summary["status"] == "completed"
    assert outcome.cause != "healthy"
    assert outcome.cause == expected, outcome.diagnosis
    assert outcome.seconds <= outcome.bound, f"{outcome.seconds:.1f}s > bound {outcome.bound:.1f}s"
    named = names_fault(outcome.findings, fault.names)
    assert named, {n: (f.status, f.summary) for n, f in outcome.findings.items()}
    outcome_kind = outcome.diagnosis["outcome"]
    assert outcome.exit_code == EXIT_BY_OUTCOME[outcome_kind]
    if expected == "inconclusive":
        blocking = [u for u in outcome.diagnosis["unchecked"] if u["needed"]]
        assert blocking and all(u["why"] and u["by_hand"] for u in blocking)
        assert any(u["check"] in named for u in outcome.diagnosis["unchecked"]) or _named_in_evidence(outcome, named)
    else:
        assert outcome.exit_code in (EXIT_DIAGNOSED, EXIT_BY_OUTCOME["unknown"])


def _named_in_evidence(outcome: Outcome, named: list[str]) -> bool:
    evidence: list[Any] = outcome.diagnosis.get("evidence") or []
    return any(outcome.findings[n].summary in str(evidence) for n in named)


@pytest.mark.parametrize("slug", ["email_provider_failure", "sms_delivery_failure"])
def test_a_tenant_that_matches_no_tenant_is_not_healthy(slug: str, sandbox: Callable[[str], Sandbox],
                                                        tmp_path: Path) -> None:
    outcome = drive(World.of(sandbox(slug)), slug, tmp_path / "run", tenant_id="no-such-tenant")
    assert outcome.crash is None
    assert outcome.cause == "inconclusive" and outcome.exit_code == EXIT_BY_OUTCOME["inconclusive"]
    rate = outcome.findings["failure_rate"]
    assert rate.status == "error" and "no messages for tenant no-such-tenant in the window or baseline" in rate.summary

"""Every drill of every runbook, triaged in this process (`runbooklib.triage`): the runbook's own notebook cells run
as a dry run against the scenario's sandbox, with real sockets and the production clients.

Each must name the scenario's cause, list what it expects beside it, name the tenants it expects, propose no
mitigation that cannot fix the cause (nor one the scenario forbids), never give an all-clear where the scenario
has a cause, and change nothing. Whole notebook runs of a representative slice are in `tests/notebooks/`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.triage import every_scenario, triage

CASES = every_scenario()
ROOT = Path(__file__).resolve().parents[1]


def _artifacts() -> Path:
    folder = Path(os.environ.get("RUNBOOK_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "triage"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize(("slug", "scenario"), CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_every_drill_names_its_cause_with_no_forbidden_outcome(slug: str, scenario: str, tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    bull = catalog.get(slug).load_scenario(scenario).section("bullmq")["enabled"]
    redis = request.getfixturevalue("redis_server").url if bull else None
    result = triage(slug, scenario, workdir=tmp_path, redis_url=redis)
    (_artifacts() / f"{slug}--{scenario}.json").write_text(json.dumps({
        "runbook": slug, "scenario": scenario, "expect": result.expect, "cause": result.cause, "others": result.others,
        "proposed": result.proposed, "forbidden": result.forbidden, "missing": result.missing,
        "seconds": round(result.seconds, 2)}, indent=1))

    assert result.crash is None, result.crash
    assert result.cause == result.expect, result.summary.get("diagnosis")
    assert not result.forbidden, result.forbidden
    assert not result.missing, (result.missing, result.summary.get("diagnosis"))
    assert result.changes == [], result.changes
    assert result.summary["diagnosis"]["figures"] or result.cause == "inconclusive", "the card shows its figures"

"""Running a runbook notebook headless against a test's sandbox, as `runbook demo` does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from runbooklib.audit import read_audit
from runbooklib.runs import RunResult, execute
from runbooklib.sandbox import Sandbox
from runbooklib.settings import demo_profile, register_profile_secrets

UNPLANNED = "0" * 16
"""Bound to an action its dry run did not plan (not needed, blocked): the gate decides before it compares digests."""


def run(slug: str, box: Sandbox, tmp_path: Path, *, bind: bool = True, **parameters: Any) -> RunResult:
    """One headless run. Approvals given as bare action names are bound the documented way: a dry run first, then
    `action@digest` with the digest that dry run printed (undo approvals stay bare: bound to this run's apply)."""
    approve = list(parameters.get("approve") or [])
    bare = [a for a in approve if "@" not in a and not a.startswith("undo_") and a != "allow_unlocked"]
    if bind and bare:
        dry = _execute(slug, box, tmp_path, **{**parameters, "dry_run": True, "approve": []})
        planned = {a["action"]: a["plan"]["digest"] for a in dry.actions
                   if a.get("decision") == "dry_run" and a.get("plan")}
        parameters["approve"] = [f"{a}@{planned.get(a, UNPLANNED)}" if a in bare else a for a in approve]
    return _execute(slug, box, tmp_path, **parameters)


def _execute(slug: str, box: Sandbox, tmp_path: Path, **parameters: Any) -> RunResult:
    register_profile_secrets(demo_profile(box.describe()))  # the sandbox's secrets, each labelled by its variable
    description = box.write_description()
    params = {"environment": "demo", "sandbox": str(description), "scenario": box.scenario_name,
              "recovery_samples": 2, "recovery_interval": "1s", **parameters}
    return execute(slug, params, output_root=tmp_path / "runs", incident="TEST-42", progress=False)


def decisions(result: RunResult) -> dict[str, str]:
    """The last decision per action in the run's audit log."""
    return {e["action"]: e["decision"] for e in read_audit(result.bundle / "audit.jsonl")}


def audit(result: RunResult) -> dict[str, dict[str, Any]]:
    return {e["action"]: e for e in read_audit(result.bundle / "audit.jsonl")}


def database_url(request: pytest.FixtureRequest, database: str) -> str | None:
    return str(request.getfixturevalue("postgres_url")) if database == "postgres" else None


def assert_nothing_sensitive(bundle: Path, values: list[str], patterns: list[str]) -> None:
    """No file of the bundle holds any of `values` or text matching any of `patterns`."""
    for path in (p for p in bundle.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        for value in values:
            assert value not in text, f"{value[:12]}… leaked into {path.name}"
        for pattern in patterns:
            found = re.search(pattern, text)
            assert not found, f"unmasked {found.group(0) if found else ''} in {path.name}"

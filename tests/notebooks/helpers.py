"""Running a runbook notebook headless against a test's sandbox, as `runbook demo` does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from runbooklib.audit import read_audit
from runbooklib.redact import REDACTOR
from runbooklib.runs import RunResult, execute
from runbooklib.sandbox import Sandbox


def run(slug: str, box: Sandbox, tmp_path: Path, **parameters: Any) -> RunResult:
    REDACTOR.add_secrets(box.secrets.values())
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

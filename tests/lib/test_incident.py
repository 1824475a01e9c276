"""Runs listed from damaged records: what a record cannot say is said as a problem, never filled in with a
default that reads as a fact."""

from __future__ import annotations

import json
from pathlib import Path

from runbooklib.incident import list_runs
from runbooklib.review import compile_review


def _bundle(root: Path, summary: dict[str, object], audit: str = "") -> Path:
    bundle = root / "INC-8" / "20260101T000000Z-high_retry_volume"
    bundle.mkdir(parents=True)
    (bundle / "summary.json").write_text(json.dumps(summary))
    (bundle / "audit.jsonl").write_text(audit)
    return bundle


def test_a_summary_without_a_status_is_not_shown_as_running(tmp_path: Path) -> None:
    _bundle(tmp_path, {"runbook": "high_retry_volume", "started_at": "2026-01-01T00:00:00+00:00"})
    (run,) = list_runs(tmp_path, "INC-8")
    assert run.outcome == "?" and run.line().endswith("?")
    assert "summary.json names no status: how the run ended is not on record" in run.problems


def test_a_change_the_summary_records_and_the_audit_log_does_not_is_unconfirmed(tmp_path: Path) -> None:
    _bundle(tmp_path, {"runbook": "high_retry_volume", "status": "completed", "started_at": "2026-01-01T00:00:00+00:00",
                       "actions": [{"action": "pause_queue", "decision": "applied"}],
                       "ledger": {"audit": {"records": 0, "head": None}, "evidence": {"entries": 0, "sha256": None}}})
    (run,) = list_runs(tmp_path, "INC-8")
    assert any("records pause_queue as applied, but audit.jsonl has no such record" in p for p in run.problems)
    review = compile_review(tmp_path, "INC-8")
    assert "no mitigation was applied" not in review.markdown
    assert "the record cannot confirm that none was applied" in review.markdown

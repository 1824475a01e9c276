"""The bundle layout is named in one module; the offline side (review, store, runner) reads it without the kernel."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runbooklib import bundle
from runbooklib.bundle import SUMMARY, Summary

LIB = Path(__file__).resolve().parents[2] / "lib" / "runbooklib"


def test_a_bundle_name_round_trips_and_a_stranger_is_not_one() -> None:
    when = datetime(2026, 12, 2, 3, 4, 5, tzinfo=UTC)
    name = bundle.bundle_name("sms_delivery_failure", when)
    assert name == "20261202T030405Z-sms_delivery_failure"
    assert bundle.parse_name(name) == (when, "sms_delivery_failure")
    assert bundle.parse_name(name + "-2") == (when, "sms_delivery_failure")  # a second run in the same second
    assert bundle.parse_name(name + "-interactive") is None  # a Jupyter run's folder is not a headless bundle name
    for stranger in ("notes", ".quarantine", "20261302T030405Z-x", "20261202T030405Z-", "20261202T030405Z-a-b"):
        assert bundle.parse_name(stranger) is None, stranger


def test_a_bundle_knows_its_files_and_whether_it_is_a_record(tmp_path: Path) -> None:
    run = bundle.Bundle(tmp_path / "INC-1" / "20261202T030405Z-high_retry_volume")
    run.evidence.mkdir(parents=True)
    assert run.incident == "INC-1" and run.evidence_index.parent == run.evidence and not run.is_record
    run.summary.write_text("{}")
    run.audit.write_text("")
    assert run.is_record


@pytest.mark.parametrize("module", ["runbooklib.review", "runbooklib.incident", "runbooklib.webhook", "runbooklib.store",
                                    "runbooklib.runs", "runbooklib.cli"])
def test_the_offline_side_does_not_import_the_kernel_context(module: str) -> None:
    code = f"import sys, {module}; print('runbooklib.context' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"


def test_no_other_module_spells_a_bundle_file_name() -> None:
    names = ('"summary.json"', '"audit.jsonl"', '"index.jsonl"', '"notebook.ipynb"', '"notebook.html"',
             '".quarantine"', '"quarantined.json"', '".staging"')
    spelled = [f"{p.relative_to(LIB)}: {n}" for p in LIB.rglob("*.py") if p.name != "bundle.py"
               for n in names if n in p.read_text(encoding="utf-8")]
    assert not spelled


def test_a_summary_round_trips_and_keeps_keys_it_does_not_know(tmp_path: Path) -> None:
    written = {"runbook": "sms_delivery_failure", "incident": "INC-1", "status": "completed",
               "diagnosis": {"cause": "rate_limited", "outcome": "cause", "unchecked": [{"check": "x"}, "junk"]},
               "impact": {"sms": {"failed": 3}}, "recipients_review": {"file": "r.csv", "recipients": 2}}
    path = tmp_path / SUMMARY
    path.write_text(json.dumps(written))
    problems: list[str] = []
    summary, loaded = Summary.read(path, problems)
    assert loaded == written and summary is not None
    assert (summary.cause, summary.outcome, summary.impact) == ("rate_limited", "cause", {"sms": {"failed": 3}})
    assert summary.unchecked == [{"check": "x"}] and summary.extra == {"recipients_review": written["recipients_review"]}
    assert problems == ["summary.json.diagnosis.unchecked[1] is not a mapping; ignored"]
    summary.write(path)
    assert json.loads(path.read_text())["recipients_review"] == written["recipients_review"]
    assert "failed_cell" not in json.loads(path.read_text())  # the runner's part is written once it completes


@pytest.mark.parametrize("body", ['["a list"]', "{not json", '{"status": "completed"}', '{"runbook": 7}'])
def test_a_summary_that_is_not_a_runs_is_not_read_as_one(tmp_path: Path, body: str) -> None:
    path = tmp_path / SUMMARY
    path.write_text(body)
    assert Summary.read(path, [])[0] is None


def test_a_diagnosis_of_the_wrong_shape_is_left_out_not_trusted(tmp_path: Path) -> None:
    from runbooklib.runs import RunResult

    result = RunResult(tmp_path, "completed", summary={"runbook": "x", "status": "completed", "diagnosis": ["healthy"]})
    assert result.record.diagnosis is None and result.cause is None and result.outcome is None
    assert result.headline == "no diagnosis was made"


def test_the_runner_completes_the_kernels_summary(tmp_path: Path) -> None:
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "q1.csv").write_text("a\n")
    summary = Summary(runbook="high_retry_volume", status="running")
    summary.complete("completed", None, 12.345, tmp_path)  # the kernel never reached ctx.finish()
    assert summary.status == "incomplete" and summary.failed_cell == {
        "index": None, "error": "the notebook ended without calling ctx.finish()"}
    assert summary.timings["wall_seconds"] == 12.35 and summary.evidence == {"index": "evidence/index.jsonl",
                                                                             "queries": 1}
    done = Summary(runbook="high_retry_volume", status="completed")
    done.complete("completed", None, 1.0, tmp_path)
    assert done.status == "completed" and done.failed_cell is None and "notebook.html" in done.files
    assert done.to_json()["failed_cell"] is None


def test_a_summary_the_runner_writes_for_a_run_that_never_started_reads_as_unsealed_not_damaged(tmp_path: Path) -> None:
    from runbooklib import records

    path = tmp_path / SUMMARY
    summary = Summary(runbook="email_provider_failure", incident="INC-1")
    summary.complete("failed", {"index": 1, "section": "start", "error": "ConfigError: bad"}, 0.5, tmp_path)
    summary.write(path)
    written = json.loads(path.read_text())
    assert "diagnosis" not in written and "ledger" not in written  # absent, not null: nothing of the wrong shape
    problems: list[str] = []
    assert Summary.read(path, problems)[0] is not None and problems == []
    assert records.verify_ledger(written, tmp_path / "audit.jsonl", [], None)[0].startswith("not sealed")


def test_a_cause_whose_name_did_not_survive_is_no_verdict(tmp_path: Path) -> None:
    from runbooklib.runs import EXIT_FAILED, RunResult

    result = RunResult(tmp_path, "completed", summary={"runbook": "x", "status": "completed",
                                                       "diagnosis": {"cause": 7, "outcome": "cause", "explanation": "e"}})
    assert result.cause is None and result.outcome is None and result.exit_code == EXIT_FAILED

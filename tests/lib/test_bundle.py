"""The bundle layout is named in one module; the offline side (review, store, runner) reads it without the kernel."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runbooklib import bundle

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


@pytest.mark.parametrize("module", ["runbooklib.review", "runbooklib.store", "runbooklib.runs", "runbooklib.cli"])
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

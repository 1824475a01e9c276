"""The run bundle: written even when a cell fails (naming it), and scrubbed of secrets and PII."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runbooklib.redact import REDACTOR
from runbooklib.runs import EXIT_FAILED, execute, new_bundle, scrub_bundle

FAILING = Path(__file__).resolve().parents[1] / "fixtures" / "failing.ipynb"
SECRET = "failing-notebook-secret-5a7c19"


@pytest.mark.notebook
def test_a_failed_run_still_writes_its_bundle_naming_the_failing_cell(tmp_path: Path) -> None:
    REDACTOR.add_secret(SECRET)
    result = execute("email_provider_failure", {}, output_root=tmp_path, incident="INC-9", progress=False,
                     env={"FAILING_NB_SECRET": SECRET}, notebook=FAILING)
    assert result.status == "failed" and result.exit_code == EXIT_FAILED
    assert result.failed_cell is not None
    assert result.failed_cell["section"] == "Checks"
    assert result.failed_cell["error"].startswith("RuntimeError: provider exploded")
    assert {p.name for p in result.bundle.iterdir()} >= {"notebook.ipynb", "notebook.html", "summary.json"}
    summary = json.loads((result.bundle / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["failed_cell"]["section"] == "Checks"
    for path in result.bundle.iterdir():
        text = path.read_text()
        assert SECRET not in text, path.name
        assert "victim@example.com" not in text, path.name
    assert "run failed at cell" in result.headline


def test_scrub_masks_every_text_file(tmp_path: Path) -> None:
    REDACTOR.add_secret("scrub-me-secret-0042")
    (tmp_path / "a.json").write_text('{"t": "scrub-me-secret-0042", "to": "jane@example.com"}')
    (tmp_path / "b.txt").write_text("nothing here")
    assert scrub_bundle(tmp_path) == ["a.json"]
    reference = REDACTOR.reference("email", "jane@example.com")
    assert json.loads((tmp_path / "a.json").read_text()) == {"t": "[redacted]", "to": f"***#{reference}@example.com"}


def test_bundles_started_in_the_same_second_do_not_collide(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    first = new_bundle(tmp_path, "INC-1", "email_provider_failure", when)
    second = new_bundle(tmp_path, "INC-1", "email_provider_failure", when)
    assert first != second and first.name == "20261128T030000Z-email_provider_failure"

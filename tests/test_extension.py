"""Runbooks declare themselves: one kept outside `lib/` is listed, runs as a drill and compiles into a review,
and shared modules name no runbook."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.cli import main
from runbooklib.errors import ConfigError
from runbooklib.runs import EXIT_BAD_PARAMETERS, EXIT_DIAGNOSED

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib" / "runbooklib"
EXTRA = "tests.extra_runbook.email_bounce_watch"


@pytest.fixture
def extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test runbook registered the way an out-of-tree one is: its module named in `$RUNBOOK_MODULES`
    (and importable by the kernel)."""
    monkeypatch.setenv(catalog.MODULES_ENV, EXTRA)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def test_the_extra_runbook_is_listed_runs_as_a_drill_and_is_reviewed(extra: None, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert "email_bounce_watch" in catalog.slugs() and catalog.slugs()[:4] == (
        "email_provider_failure", "sms_delivery_failure", "whatsapp_delivery_failure", "high_retry_volume")
    assert main(["list"]) == 0
    assert re.search(r"^email_bounce_watch  —  Email Bounce Watch$", capsys.readouterr().out, re.M)

    runs = tmp_path / "runs"
    code = main(["demo", "email_bounce_watch", "--incident", "INC-EXT", "--no-progress", "--output", str(runs)])
    out = capsys.readouterr().out
    assert code == EXIT_DIAGNOSED, out
    assert "diagnosis: failures_elevated" in out and "scenario expects: failures_elevated ✓" in out
    [bundle] = (runs / "INC-EXT").iterdir()
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["runbook"] == "email_bounce_watch" and summary["diagnosis"]["cause"] == "failures_elevated"

    assert main(["review", "INC-EXT", "--output", str(runs)]) == 0
    review = (runs / "INC-EXT" / "review.md").read_text()
    assert "Email Bounce Watch" in review or "email_bounce_watch" in review
    assert "failures_elevated" in review


def test_nothing_in_lib_names_the_extra_runbook() -> None:
    assert not [p for p in LIB.rglob("*") if p.is_file() and p.suffix in {".py", ".yaml", ".md"}
                and "email_bounce_watch" in p.read_text(encoding="utf-8")]


def test_a_module_in_runbook_modules_that_cannot_be_imported_is_named(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(catalog.MODULES_ENV, "tests.extra_runbook.no_such_runbook")
    with pytest.raises(ConfigError, match=r"cannot import runbook module 'tests.extra_runbook.no_such_runbook'"):
        catalog.all_runbooks()
    assert main(["list"]) == EXIT_BAD_PARAMETERS
    assert "RUNBOOK_MODULES" in capsys.readouterr().err


def test_a_module_without_a_declaration_is_not_a_runbook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.MODULES_ENV, "tests.extra_runbook")  # a package that declares no RUNBOOK
    assert "extra_runbook" not in catalog.slugs()
    with pytest.raises(ConfigError, match="unknown runbook 'extra_runbook'; runbooks: email_provider_failure"):
        catalog.get("extra_runbook")


def test_shared_modules_name_no_runbook() -> None:
    """Each slug appears only in its own module (and its scenarios); shared code loops over declarations."""
    offenders = []
    for slug in catalog.slugs():
        for path in LIB.rglob("*.py"):
            if path.parent.name == "runbooks" and path.stem == slug:
                continue
            if slug in path.read_text(encoding="utf-8"):
                offenders.append(f"{path.relative_to(LIB)} names {slug}")
    assert not offenders


def test_a_declaration_refuses_an_action_named_like_an_undo() -> None:
    spec = catalog.get("email_provider_failure")
    with pytest.raises(ValueError, match="may not start with 'undo_'"):
        catalog.Runbook(**{**{f: getattr(spec, f) for f in spec.__dataclass_fields__}, "actions": ("undo_x",)})
    assert spec.approvable == ("switch_email_provider", "send_test_email", "undo_switch_email_provider",
                               "undo_send_test_email")

"""The `runbook` command: listing, showing parameters, and bad parameters refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooklib.cli import main
from runbooklib.runs import EXIT_BAD_PARAMETERS, EXIT_DIAGNOSED

ENVS = Path(__file__).resolve().parents[1] / "params" / "environments.example.yaml"


def test_list_names_runbooks_and_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "email_provider_failure" in out and "ses_daily_quota_exceeded" in out and "tenant_specific" in out


def test_show_reads_parameters_from_the_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "email_provider_failure"]) == 0
    out = capsys.readouterr().out
    assert "window: str = \"1h\"" in out or "window: str = '1h'" in out
    assert "look-back window" in out and "dry_run: bool = True" in out
    assert "switch_email_provider" in out and "ses_rate_throttled" in out


@pytest.mark.parametrize(("argv", "words"), [
    (["-p", "windw", "2h"], "windw: unknown parameter (did you mean 'window'?)"),
    (["-p", "dry_run", "perhaps"], "dry_run: must be true or false"),
    (["-p", "window", "an hour"], "window: 'an hour' is not a duration"),
    (["-p", "environment", "staging"], "environment: unknown environment 'staging'"),
    (["-p", "approve", "flush_queue", "-p", "operator", "a"], "approve: no action named 'flush_queue'"),
    (["-p", "recovery_samples", "lots"], "recovery_samples: must be a whole number"),
    (["-p", "run_dir", "/tmp/x"], "run_dir: set by the runner"),
])
def test_bad_parameters_exit_2_before_anything_runs(argv: list[str], words: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "email_provider_failure", "--incident", "INC-1", "--output", str(tmp_path / "runs"),
                 "-p", "environments_file", str(ENVS), *argv])
    assert code == EXIT_BAD_PARAMETERS
    assert words in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_bad_incident_id_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "email_provider_failure", "--incident", "../etc", "--output", str(tmp_path)]) == 2
    assert "not an incident id" in capsys.readouterr().err


def test_unknown_runbook_and_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "sms_failure"]) == EXIT_BAD_PARAMETERS
    assert main(["demo", "email_provider_failure", "--scenario", "meteor"]) == EXIT_BAD_PARAMETERS
    err = capsys.readouterr().err
    assert "runbooks: email_provider_failure" in err and "unknown scenario 'meteor'" in err


def test_missing_parameter_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "email_provider_failure", "--incident", "INC-1", "-f", str(tmp_path / "nope.yaml")])
    assert code == EXIT_BAD_PARAMETERS and "does not exist" in capsys.readouterr().err


@pytest.mark.notebook
def test_demo_runs_a_drill_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "email_provider_failure", "--scenario", "smtp_tls_failure", "--no-progress",
                 "--output", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == EXIT_DIAGNOSED
    assert "diagnosis: smtp_tls_failure" in out and "scenario expects: smtp_tls_failure ✓" in out
    bundles = list((tmp_path / "DRILL-smtp-tls-failure").iterdir())
    assert len(bundles) == 1 and (bundles[0] / "summary.json").exists()

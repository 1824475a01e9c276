"""The `runbook` command: listing, showing parameters, and bad parameters refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runbooklib.cli import main
from runbooklib.runs import EXIT_BAD_PARAMETERS, EXIT_DIAGNOSED
from tests.conftest import SandboxFactory

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


@pytest.mark.notebook
def test_scenario_file_of_your_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drill = tmp_path / "my-drill.yaml"
    drill.write_text("description: Only initech is failing, its SMTP login was changed.\nexpect: tenant_specific\n"
                     "message_logs:\n  incident:\n    started_minutes_ago: 30\n    failure_rate: 0.9\n"
                     "    tenants: [initech]\n    errors: [{error: 'Invalid login: 535 5.7.8 bad', error_code: EAUTH}]\n")
    code = main(["demo", "--scenario-file", str(drill), "--no-progress", "--output", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == EXIT_DIAGNOSED and "diagnosis: tenant_specific: tenant initech" in out


@pytest.mark.notebook
def test_run_against_a_configured_environment(make_sandbox: SandboxFactory, postgres_url: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`runbook run` with a profile of its own: database URL, token and passwords from its variables."""
    box = make_sandbox("smtp_unreachable", database_url=postgres_url)
    profile = box.describe()["profile"]
    names = {"STAGING_API_TOKEN": "api_token", "STAGING_SMTP_USER": "smtp_username",
             "STAGING_SMTP_PASSWORD": "smtp_password", "STAGING_BACKUP_USER": "smtp_backup_username",
             "STAGING_BACKUP_PASSWORD": "smtp_backup_password", "STAGING_AWS_KEY": "aws_access_key_id",
             "STAGING_AWS_SECRET": "aws_secret_access_key"}
    for env, key in names.items():
        monkeypatch.setenv(env, box.secrets[key])
    monkeypatch.setenv("STAGING_DATABASE_URL", postgres_url.replace("+psycopg", ""))
    profile.update(database_url_env="STAGING_DATABASE_URL",
                   platform_api={"url": profile["platform_api"]["url"], "token_env": "STAGING_API_TOKEN"})
    profile["smtp"].update(username_env="STAGING_SMTP_USER", password_env="STAGING_SMTP_PASSWORD")
    profile["smtp_backup"].update(username_env="STAGING_BACKUP_USER", password_env="STAGING_BACKUP_PASSWORD")
    profile["ses"].update(access_key_id_env="STAGING_AWS_KEY", secret_access_key_env="STAGING_AWS_SECRET")
    envs = tmp_path / "environments.yaml"
    envs.write_text(yaml.safe_dump({"staging": profile}))
    params = tmp_path / "staging.yaml"
    params.write_text(yaml.safe_dump({"environment": "staging", "environments_file": str(envs),
                                      "recovery_samples": 1, "tenant_id": "acme"}))

    code = main(["run", "email_provider_failure", "--incident", "INC-77", "-f", str(params), "--no-progress",
                 "--output", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == EXIT_DIAGNOSED, out
    assert "diagnosis: smtp_unreachable" in out
    bundle = next((tmp_path / "runs" / "INC-77").iterdir())
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["environment"] == "staging" and summary["parameters"]["tenant_id"] == "acme"
    assert box.platform is not None and box.platform.mutations() == []
    for path in (p for p in bundle.rglob("*") if p.is_file()):
        text = path.read_text()
        assert all(box.secrets[key] not in text for key in names.values()), path.name


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    from runbooklib.runs import EXIT_CODES

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert f"  {code}  {meaning.split(':')[0]}" in out
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for code in EXIT_CODES:
        assert f"| `{code}` |" in readme

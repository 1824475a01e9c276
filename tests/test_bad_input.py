"""Bad input and bad settings: every known case gets a clear error naming the value and what is allowed
(exit 2, nothing ran) — never a Python traceback, never the tool's own "internal error"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runbooklib.cli import main
from runbooklib.errors import ConfigError
from runbooklib.runs import EXIT_BAD_PARAMETERS
from runbooklib.settings import load_profiles
from runbooklib.yamlfiles import MAX_BYTES

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "params" / "environments.example.yaml"
PRODUCTION = yaml.safe_load(ENVS.read_text())["production"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text and "internal error" not in text, text
    return code, text


def run_with(tmp_path: Path, capsys: pytest.CaptureFixture[str], *params: str, slug: str = "email_provider_failure",
             files: tuple[Path, ...] = ()) -> tuple[int, str]:
    argv = ["run", slug, "--incident", "INC-1", "--output", str(tmp_path / "runs"), "--check-only"]
    for f in files:
        argv += ["-f", str(f)]
    for i in range(0, len(params), 2):
        argv += ["-p", params[i], params[i + 1]]
    code, text = run(argv, capsys)
    assert not (tmp_path / "runs").exists(), "nothing may run or be written for bad input"
    return code, text


@pytest.mark.parametrize(("name", "value", "words"), [
    ("window", "1000000000d", "window: '1000000000d' is far too long"),
    ("window", "999999999d", "window: '999999999d' is longer than the 31d allowed"),
    ("baseline", "36500d", "baseline: '36500d' is longer than the 90d allowed"),
    ("recovery_interval", "99999999999999999999s", "recovery_interval: '99999999999999999999s' is far too long"),
    ("recovery_samples", "0", "recovery_samples: must be between 1 and 60, got 0"),
])
def test_durations_and_windows_out_of_range(name: str, value: str, words: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_with(tmp_path, capsys, name, value)
    assert code == EXIT_BAD_PARAMETERS and words in text


def test_a_parameter_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_bytes(b"window: 1h\ntenant_id: \xff\xfe\x00caf\xe9\n")
    code, text = run_with(tmp_path, capsys, files=(bad,))
    assert code == EXIT_BAD_PARAMETERS and "is not UTF-8 text" in text and str(bad) in text


def test_a_yaml_alias_bomb_is_refused_unexpanded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    lines.append("tenant_id: *i")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    code, text = run_with(tmp_path, capsys, files=(bomb,))
    assert code == EXIT_BAD_PARAMETERS and "aliases (*name) are not allowed" in text
    assert "lol" not in text and len(text) < 2000


def test_a_parameter_file_too_large_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("window: 1h\n" + "#" * (MAX_BYTES + 10) + "\n")
    code, text = run_with(tmp_path, capsys, files=(big,))
    assert code == EXIT_BAD_PARAMETERS and f"at most {MAX_BYTES:,} are read" in text


def test_scenario_is_refused_on_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_with(tmp_path, capsys, "scenario", "smtp_auth_failure")
    assert code == EXIT_BAD_PARAMETERS and "scenario: only `runbook demo` runs scenarios" in text


def test_output_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    code, text = run(["run", "email_provider_failure", "--incident", "INC-1", "--check-only",
                      "--output", str(a_file / "runs")], capsys)
    assert code == EXIT_BAD_PARAMETERS and "is a file, not a folder" in text and str(a_file) in text
    code, text = run(["review", "INC-1", "--output", str(a_file / "runs")], capsys)
    assert code == EXIT_BAD_PARAMETERS and "is a file, not a folder" in text


def test_a_webhook_that_is_not_http(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run(["review", "INC-1", "--output", str(tmp_path), "--webhook", "file:///etc/passwd"], capsys)
    assert code == EXIT_BAD_PARAMETERS and "--webhook: 'file:///etc/passwd' is not an http(s) URL" in text


def _profile(tmp_path: Path, change: dict[str, object] | list[object]) -> Path:
    body: object = change if isinstance(change, list) else {**PRODUCTION, **change}
    path = tmp_path / "envs.yaml"
    path.write_text(yaml.safe_dump({"prod": body}))
    return path


@pytest.mark.parametrize(("change", "words"), [
    ({"timeouts": {"connect": "abc"}}, "prod.timeouts.connect: 'abc' is not a number; allowed: 0.1 to 300"),
    ({"timeouts": [1]}, "prod.timeouts: expected a mapping of keys to values, got a list"),
    ({"timeouts": {"connect": 0}}, "prod.timeouts.connect: 0 is out of range; allowed: 0.1 to 300"),
    ({"timeouts": {"read": -5}}, "prod.timeouts.read: -5 is out of range"),
    ({"timeouts": {"total": 0.0}}, "prod.timeouts.total: 0.0 is out of range"),
    ({"timeouts": {"conect": 5}}, "prod.timeouts: unknown keys ['conect']"),
    ({"providers": "ses"}, "prod.providers: expected a mapping of keys to values, got text"),
    ({"providers": {"ses": "sendgrid"}}, "prod.providers.ses: 'sendgrid'; allowed: ses, smtp, smtp_backup"),
    ({"row_cap": 0}, "prod.row_cap: 0 is out of range; allowed: 1 to 1e+06"),
    ({"row_cap": 2.5}, "prod.row_cap: 2.5 is not a whole number"),
    ({"statement_timeout": -1}, "prod.statement_timeout: -1 is out of range"),
    ({"statement_timeout": True}, "prod.statement_timeout: True is not a number"),
    ({"smtp": {"host": "smtp.example.com", "port": 70000}}, "prod.smtp.port: port 70000 is out of range; allowed: 1 to 65535"),
    ({"smtp": {"host": "smtp.example.com", "port": "587"}}, "prod.smtp.port: expected a whole number, got text '587'"),
    ({"smtp": {"host": "smtp.example.com", "verify_tls": "yes"}}, "prod.smtp.verify_tls: expected true or false"),
    ({"smtp": {"host": "smtp.example.com", "password_env": "SMTP PASSWORD"}},
     "prod.smtp.password_env: 'SMTP PASSWORD' is not an environment variable name"),
    ({"twilio": {"auth_token_env": "T", "from_numbers": "+15005550006"}},
     "prod.twilio.from_numbers: expected a list of text"),
    ({"twilio": {"auth_token_env": "T", "from_numbers": ["5550006"]}}, "'5550006' is not a number in E.164 form"),
    ({"twilio": {"auth_token_env": "T", "status_page_url": "ftp://status.twilio.com"}},
     "prod.twilio.status_page_url: 'ftp://status.twilio.com' is not an http(s) URL"),
    ({"platform_api": {"url": "lineup.app", "token_env": "T"}}, "prod.platform_api.url: 'lineup.app' is not an http(s) URL"),
    ({"platform_api": {"url": "javascript:alert(1)", "token_env": "T"}}, "is not an http(s) URL"),
    ({"ses": {"region": "eu-west-1", "endpoint_url": "localhost:4566"}}, "prod.ses.endpoint_url"),
    ({"whatsapp": {"waba_id": "x1", "phone_number_id": "1", "access_token_env": "W"}}, "whatsapp.waba_id must be"),
    ({"redis": {"url_env": "R", "prefix": ""}}, "prod.redis.prefix: must not be empty"),
    (["production", "staging"], "prod: expected a mapping of keys to values, got a list"),
])
def test_profiles_of_the_wrong_type_or_range(change: dict[str, object] | list[object], words: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = _profile(tmp_path, change)
    with pytest.raises(ConfigError, match=None) as caught:
        load_profiles(str(path))
    assert words in str(caught.value)
    code, text = run_with(tmp_path, capsys, "environment", "prod", "environments_file", str(path))
    assert code == EXIT_BAD_PARAMETERS and words in text


def test_the_example_profile_still_loads() -> None:
    production = load_profiles(str(ENVS))["production"]
    assert production is not None and production.total_timeout == 15.0 and production.row_cap == 5000


def test_an_unknown_runbook_scenario_file_of_the_wrong_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drill = tmp_path / "drill.yaml"
    drill.write_text("message_logs:\n  window: {per_minute: lots}\n")
    code, text = run(["demo", "--scenario-file", str(drill), "--no-progress", "--output", str(tmp_path / "runs")], capsys)
    assert code == EXIT_BAD_PARAMETERS and str(drill) in text


def _bundle(root: Path, incident: str, name: str, summary: object, audit: str) -> Path:
    bundle = root / incident / name
    bundle.mkdir(parents=True)
    (bundle / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    (bundle / "audit.jsonl").write_text(audit)
    return bundle


def test_a_torn_audit_line_or_summary_does_not_stop_runs_or_review(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    good = {"runbook": "email_provider_failure", "incident": "INC-7", "status": "completed",
            "started_at": "2026-12-01T03:00:00+00:00", "operator": "alice",
            "diagnosis": {"cause": "smtp_auth_failure", "outcome": "cause", "explanation": "535", "unchecked": []}}
    entry = json.dumps({"ts": "2026-12-01T03:01:00+00:00", "action": "switch_email_provider", "decision": "applied",
                        "approval": {"by": "alice"}})
    _bundle(tmp_path, "INC-7", "20261201T030000Z-email_provider_failure", good,
            entry + "\n" + entry[: len(entry) // 2] + "\n" + "[1, 2]\n")
    _bundle(tmp_path, "INC-7", "20261201T031000Z-sms_delivery_failure", '{"runbook": "sms_deliv', "")
    _bundle(tmp_path, "INC-7", "20261201T032000Z-high_retry_volume", [1, 2, 3], "\xff not json\n")

    code, text = run(["runs", "--incident", "INC-7", "--output", str(tmp_path)], capsys)
    assert code == 0
    assert "email_provider_failure" in text and "switch_email_provider" in text
    assert "audit.jsonl line 2 is not readable" in text and "audit.jsonl line 3 is not readable" in text
    assert "sms_delivery_failure" in text and "summary.json is not readable" in text

    code, text = run(["review", "INC-7", "--output", str(tmp_path)], capsys)
    assert code == 0
    review = (tmp_path / "INC-7" / "review.md").read_text()
    assert "`smtp_auth_failure`" in review and "switch_email_provider" in review
    assert "**Record problems**" in review and "audit.jsonl line 2 is not readable" in review
    assert "summary.json is not readable" in review


def test_a_run_that_failed_after_its_diagnosis_is_not_an_all_clear_in_the_review(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runbooklib.review import compile_review

    summary = {"runbook": "email_provider_failure", "status": "failed", "started_at": "2026-12-01T03:00:00+00:00",
               "failed_cell": {"index": 22, "section": "Recovery confirmation", "error": "ValueError: x"},
               "diagnosis": {"cause": "healthy", "outcome": "healthy", "explanation": "every check passed",
                             "unchecked": []}}
    _bundle(tmp_path, "INC-8", "20261201T030000Z-email_provider_failure", summary, "")
    review = compile_review(tmp_path, "INC-8")
    found = review.markdown.split("## Summary", 1)[1].split("## Runs", 1)[0]
    assert "but the run then FAILED" in found and "ValueError: x" in found
    code, text = run(["runs", "--incident", "INC-8", "--output", str(tmp_path)], capsys)
    assert code == 0 and "failed" in text

"""Property-based tests (hypothesis): whatever a user types or writes into a file, the parameter validator, the
profile loader and every CLI command give either a valid run or a clear error — never a traceback.

"Clear" is checked, not assumed: a ConfigError says "bad parameters:" and names the parameter it is about,
and stays short (it never echoes a whole value or file); the CLI exits 0 or 2 (argparse: 2), and neither
"Traceback" nor the tool's own "internal error" line ever appears.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runbooklib import catalog
from runbooklib.cli import main
from runbooklib.errors import ConfigError
from runbooklib.params import declared_parameters, validate
from runbooklib.settings import load_profiles, profile_from_mapping

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "params" / "environments.example.yaml"
PRODUCTION = yaml.safe_load(ENVS.read_text())["production"]
EXAMPLES = 2000
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NAMES = sorted({p.name for slug in catalog.slugs() for p in declared_parameters(catalog.get(slug).params_cls)})

scalars = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
durations = st.from_regex(r"\A-?[0-9]{0,12}(d|h|m|s|ms|days)?([0-9]{1,3}[hms])?\Z", fullmatch=True)
approvals = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(
    ["switch_email_provider", "switch_email_provider@", "retry_failed_sms@0123abcd", "undo_pause_queue@zz",
     "replay_dlq@" + "a" * 70])), max_size=3)
typed_values = st.one_of(values, durations, approvals, st.sampled_from(
    ["demo", "production", "true", "no", "0", "60", "61", "1e3", "+15551234567", "a@b.co", "not an email",
     "INC-1", "../../etc", "smtp_backup", "", " ", "\x00", "é" * 70, "2026-12-01T03:00:00+00:00", "yesterday"]))
names = st.one_of(st.sampled_from(NAMES), st.text(max_size=30), st.integers(), st.none())
raw_parameters = st.dictionaries(names, typed_values, max_size=8)


def _clear(exc: ConfigError) -> None:
    text = str(exc)
    assert text.startswith("bad parameters:") or exc.parameter == "environments_file", text
    if exc.parameter and text.startswith("bad parameters:"):
        assert exc.parameter[:37] in text, (exc.parameter, text)
    assert len(text) < 4000 + 200 * text.count("\n"), "an error must not echo whole values"


@SETTINGS
@given(slug=st.sampled_from(catalog.slugs()), raw=raw_parameters)
def test_validate_gives_params_or_a_clear_error(slug: str, raw: dict[Any, Any]) -> None:
    spec = catalog.get(slug)
    try:
        params = validate(spec.params_cls, raw, actions=list(spec.approvable),
                          environments=["demo", "production"], scenarios=spec.scenarios())
    except ConfigError as exc:
        _clear(exc)
    else:
        assert isinstance(params, spec.params_cls)
        assert params.window_delta.total_seconds() > 0 and params.baseline_delta.total_seconds() > 0


profile_keys = st.sampled_from(sorted(PRODUCTION) + ["timeouts", "row_cap", "statement_timeout", "smpt", "redis"])
endpoint_values = st.one_of(values, st.fixed_dictionaries({}, optional={
    "host": st.text(max_size=20), "port": st.integers(min_value=-5, max_value=70000) | st.text(max_size=5),
    "url": st.text(max_size=30) | st.sampled_from(["https://lineup.app", "http://[::1", "http://x:0"]),
    "token_env": st.text(max_size=12), "connect": scalars, "read": scalars, "total": scalars,
    "region": st.text(max_size=10), "auth_token_env": st.text(max_size=10), "from_numbers": values,
    "waba_id": values, "phone_number_id": values, "access_token_env": st.text(max_size=10), "url_env": values,
    "prefix": values, "ses": values, "security": st.sampled_from(["starttls", "tls", "ssl"]),
    "verify_tls": values, "endpoint_url": st.text(max_size=20), "status_page_url": st.text(max_size=20),
}))


@SETTINGS
@given(changes=st.dictionaries(profile_keys, endpoint_values, max_size=5), drop=st.sets(st.sampled_from(sorted(PRODUCTION))))
def test_the_profile_loader_gives_a_profile_or_a_clear_error(changes: dict[str, Any], drop: set[str]) -> None:
    body = {k: v for k, v in {**PRODUCTION, **changes}.items() if k not in drop}
    try:
        profile = profile_from_mapping("prod", body, "envs.yaml:prod")
    except ConfigError as exc:
        assert str(exc).startswith("envs.yaml:prod") or "whatsapp." in str(exc), str(exc)
        assert len(str(exc)) < 2000
    else:
        assert profile.connect_timeout > 0 and profile.total_timeout > 0 and profile.row_cap >= 1


@settings(max_examples=EXAMPLES // 4, deadline=None, derandomize=True, database=None)
@given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_environments_file_gives_profiles_or_a_clear_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "envs.yaml"
        path.write_bytes(content)
        try:
            profiles = load_profiles(str(path))
        except ConfigError as exc:
            assert str(exc) and len(str(exc)) < 2000
        else:
            assert "demo" in profiles


_workdir = Path(tempfile.mkdtemp(prefix="runbook-properties-"))
(_workdir / "a-file").write_text("not a folder")
(_workdir / "good.yaml").write_text("window: 2h\ndry_run: true\n")
(_workdir / "list.yaml").write_text("- window\n- 2h\n")
(_workdir / "broken.yaml").write_text("window: [1h\n")
(_workdir / "latin1.yaml").write_bytes(b"operator: J\xf6rg\n")
(_workdir / "alias.yaml").write_text("a: &x 1h\nwindow: *x\n")
FILES = [str(_workdir / n) for n in ("good.yaml", "list.yaml", "broken.yaml", "latin1.yaml", "alias.yaml", "missing.yaml")]
FILES += [str(ROOT / "params" / "production.example.yaml"), str(ROOT / "params" / "demo.yaml"), str(_workdir)]
tokens = st.one_of(
    st.sampled_from(["--incident", "-p", "-f", "--output", "--scenario", "--scenario-file", "--webhook", "--no-progress",
                     "-h", "--parameter", "--parameters-file"]),
    st.sampled_from([*catalog.slugs(), "sms_failure", "INC-1", "INC 1", "../x", "", "-", "--", "DRILL"]),
    st.sampled_from([*NAMES, "windw", "scenario", "run_dir", "deadline", "sandbox"]),
    st.sampled_from(["1h", "0s", "99999999999d", "true", "maybe", "[a, b]", "production", "prod", str(ENVS),
                     "s3://Bad_Bucket/x", "s3://bucket/../x", "http://127.0.0.1:9/hook", "ftp://x", "smtp_auth_failure"]),
    st.sampled_from(FILES + [str(_workdir / "a-file" / "runs"), str(_workdir / "out"), "/proc/nope/runs"]),
    st.text(max_size=12),
)
commands = st.sampled_from(["list", "show", "run", "demo", "runs", "review"])


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors (2) and --help (0)
            code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(command=commands, rest=st.lists(tokens, max_size=8))
def test_every_cli_command_runs_or_says_clearly_why_not(command: str, rest: list[str]) -> None:
    argv = [command, *rest]
    if command in ("run", "demo"):
        argv.append("--check-only")  # a valid command is checked, not run: thousands of notebooks would not fit CI
    code, text = _cli(argv)
    assert "Traceback" not in text and "internal error" not in text, (argv, text)
    assert code in (0, 2), (argv, code, text)
    if code == 2:
        assert "runbook:" in text or "usage:" in text, (argv, text)


@pytest.mark.parametrize("argv", [
    ["run", "email_provider_failure", "--incident", "INC-1", "-p", "environments_file", str(ENVS), "-p",
     "environment", "production"],
    ["demo", "sms_delivery_failure", "--scenario", "rate_limited"],
])
def test_check_only_validates_without_running(argv: list[str], tmp_path: Path) -> None:
    """The CLI property test leans on --check-only: it must accept valid input and run nothing."""
    code, text = _cli([*argv, "--check-only", "--output", str(tmp_path / "runs")])
    assert code == 0 and "nothing was run" in text
    assert not (tmp_path / "runs").exists()


GOOD_SUMMARY: dict[str, Any] = {
    "runbook": "email_provider_failure", "incident": "INC-P", "environment": "demo", "operator": "alice",
    "status": "completed", "started_at": "2026-12-01T03:00:00+00:00",
    "window": {"since": "2026-12-01T02:00:00+00:00", "until": "2026-12-01T03:00:00+00:00", "length": "1h",
               "baseline": "24h"},
    "timings": {"wall_seconds": 9.5, "finished_at": "2026-12-01T03:00:09+00:00"},
    "findings": {"failure_rate": {"name": "failure_rate", "title": "Email failure rate", "status": "error",
                                  "summary": "message_logs could not be read", "at": "2026-12-01T03:00:02+00:00"}},
    "diagnosis": {"cause": "inconclusive", "outcome": "inconclusive", "explanation": "no all-clear",
                  "evidence": [], "others": [], "at": "2026-12-01T03:00:03+00:00",
                  "unchecked": [{"check": "failure_rate", "what": "the failure rate", "why": "db down",
                                 "by_hand": "SELECT 1", "needed": True, "status": "error"}]},
    "measurements": [{"metric": "failure_rate", "scope": "email", "value": 0.4, "basis": "last 1h",
                      "at": "2026-12-01T03:00:00+00:00"}],
    "impact": {"email": {"window": {"since": "2026-12-01T02:00:00+00:00", "until": "2026-12-01T03:00:00+00:00"},
                         "total": 10, "failed": 4, "delayed": 1,
                         "tenants": [{"tenant_id": "acme", "total": 10, "failed": 4, "delayed": 1}]}},
    "post_incident": {"title": "Post-incident", "items": [{"item": "Review", "answer": "why", "ok": False}]},
}
GOOD_AUDIT = json.dumps({"ts": "2026-12-01T03:00:05+00:00", "action": "switch_email_provider", "decision": "applied",
                         "approval": {"by": "alice", "source": "parameter"}, "plan_digest": "abc", "result": {}})
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=6)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


SUMMARY_PATHS = _paths(GOOD_SUMMARY)


@settings(max_examples=EXAMPLES // 10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(st.sampled_from(SUMMARY_PATHS), json_values), max_size=4),
       audit_lines=st.lists(st.one_of(st.just(GOOD_AUDIT), st.text(max_size=30),
                                      json_values.map(lambda v: json.dumps(v))), max_size=4))
def test_review_and_runs_read_around_any_damaged_record(changes: list[tuple[tuple[Any, ...], Any]],
                                                        audit_lines: list[str]) -> None:
    summary = json.loads(json.dumps(GOOD_SUMMARY))
    for path, value in changes:
        target: Any = summary
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change replaced a parent
    with tempfile.TemporaryDirectory() as folder:
        bundle = Path(folder) / "INC-P" / "20261201T030000Z-email_provider_failure"
        bundle.mkdir(parents=True)
        (bundle / "summary.json").write_text(json.dumps(summary))
        (bundle / "audit.jsonl").write_text("\n".join(audit_lines) + "\n")
        for argv in (["review", "INC-P", "--output", folder], ["runs", "--incident", "INC-P", "--output", folder]):
            code, text = _cli(argv)
            assert "Traceback" not in text and "internal error" not in text, (argv, summary, audit_lines, text)
            assert code == 0, (argv, text)

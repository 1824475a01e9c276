"""What a verdict rests on, per runbook: every needed check is one a `check_*` function records; a check that
breaks on an answer it does not know is a finding, not a crash; checks after the diagnosis are taken in."""

from __future__ import annotations

from pathlib import Path

import pytest

from runbooklib import catalog
from runbooklib.context import RunContext
from runbooklib.diagnosis import Diagnosis
from runbooklib.params import validate
from runbooklib.results import CheckResult
from runbooklib.settings import load_profiles

ENVS = Path(__file__).resolve().parents[2] / "params" / "environments.example.yaml"


def context_for(slug: str, tmp_path: Path, **raw: object) -> RunContext:
    spec = catalog.get(slug)
    profiles = load_profiles(str(ENVS))
    params = validate(spec.params_cls, {"environment": "production", "environments_file": str(ENVS), **raw},
                      actions=list(spec.approvable), environments=profiles)
    profile = profiles["production"]
    assert profile is not None
    return RunContext(spec, params, profile, run_dir=tmp_path / "run")


@pytest.mark.parametrize("slug", catalog.slugs())
def test_every_needed_check_is_recorded_by_a_check_function(slug: str, tmp_path: Path) -> None:
    spec = catalog.get(slug)
    recorded = {getattr(fn, "finding", None) for name, fn in vars(spec.module).items() if name.startswith("check_")}
    needed = {n.check for n in spec.needed(context_for(slug, tmp_path))}
    also = {"queue_metrics_api"}  # check_queues records it beside its own finding, before it reads BullMQ
    assert needed - also <= recorded, needed - recorded


@pytest.mark.parametrize("slug", catalog.slugs())
def test_every_check_function_is_guarded(slug: str) -> None:
    module = catalog.get(slug).module
    assert all(getattr(fn, "guarded", False) for name, fn in vars(module).items() if name.startswith("check_"))


def test_a_check_that_breaks_on_an_odd_answer_is_a_finding_not_a_crash(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from runbooklib.providers import ses
    from runbooklib.runbooks import email_provider_failure as email

    ctx = context_for("email_provider_failure", tmp_path)
    ctx.evidence.put(email.SES_CLIENTS, (object(), object()))

    def odd_answer(*args: object, **kwargs: object) -> CheckResult:
        raise KeyError("Max24HourSend")
    monkeypatch.setattr(ses, "check_quota", odd_answer)  # stands in for a parser meeting an answer it does not know
    result = email.check_ses_quota(ctx)
    assert result.status == "error" and result.name == "ses_quota" and "KeyError" in result.summary
    assert ctx.findings["ses_quota"] is result


def test_a_later_failing_check_takes_back_an_all_clear() -> None:
    healthy = Diagnosis("rb", "healthy", "every check passed")
    later = [CheckResult("queue_trend", "Queue trend", "fail", "backlog not draining: 10 → 5,000"),
             CheckResult("recovery", "Recovery", "error", "the metrics API could not be read")]
    amended = healthy.amended(later)
    assert amended.cause == "unknown" and "backlog not draining" in amended.explanation
    assert [u["check"] for u in amended.unchecked] == ["recovery"]
    cause = Diagnosis("rb", "smtp_auth_failure", "535").amended(later)
    assert cause.cause == "smtp_auth_failure" and [u["check"] for u in cause.unchecked] == ["recovery"]
    assert Diagnosis("rb", "healthy", "ok").amended([CheckResult("x", "X", "ok", "fine")]).cause == "healthy"


def test_by_hand_sql_quotes_the_tenant(tmp_path: Path) -> None:
    ctx = context_for("email_provider_failure", tmp_path, tenant_id="acme' OR '1'='1")
    sql = next(n.by_hand for n in catalog.get("email_provider_failure").needed(ctx) if n.check == "failure_rate")
    assert "tenant_id = 'acme'' OR ''1''=''1'" in sql

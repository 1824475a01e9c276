"""Email Bounce Watch: a deliberately small runbook declared outside `lib/` (see tests/test_extension.py).

It reuses the shared channel checks, has one cause and no actions. Registered by naming this module in
`$RUNBOOK_MODULES`; nothing in `lib/` knows it.
"""

from __future__ import annotations

from pathlib import Path

from runbooklib.catalog import Runbook
from runbooklib.context import RunContext
from runbooklib.diagnosis import Diagnosis, Match, Needed, Rule, diagnose
from runbooklib.errorcodes import classify_email_error
from runbooklib.params import CommonParams
from runbooklib.runbooks.channel_checks import ChannelChecks, guard_checks, sampling_needs
from runbooklib.runbooks.rules import incident_present, log_evidence

HERE = Path(__file__).resolve().parent
SLUG = "email_bounce_watch"
CAUSES = {"failures_elevated": "Email failures are elevated against the baseline; read the top errors"}


class Params(CommonParams):
    """Only the common parameters."""


CHECKS = ChannelChecks(channel="EMAIL", queue="email", label="Email", noun="mail", classify=classify_email_error)
check_failure_rate = CHECKS.check_failure_rate
check_top_errors = CHECKS.check_top_errors


def needed(ctx: RunContext) -> list[Needed]:
    """`healthy` rests on the failure rate and the top errors."""
    return [n for n in CHECKS.needed(ctx) if n.check in ("failure_rate", "top_errors")]


def _elevated(ctx: RunContext) -> Match | None:
    if not incident_present(ctx):
        return None
    return Match("email failures are elevated against the baseline", log_evidence(ctx))


def diagnose_bounces(ctx: RunContext) -> Diagnosis:
    """One rule: elevated or not."""
    result = diagnose(SLUG, [Rule("failures_elevated", lambda: _elevated(ctx))], CAUSES,
                      incident_present=incident_present(ctx),
                      incident_evidence=log_evidence(ctx), needed=needed(ctx), findings=ctx.findings)
    ctx.diagnosis = result
    ctx.write_summary()
    return result


guard_checks(globals())

RUNBOOK = Runbook(
    slug=SLUG, title="Email Bounce Watch", channels=("email",), params_cls=Params, actions=(), causes=CAUSES,
    dependencies=("database", "platform_api"), needed_fn=needed, time_needs_fn=sampling_needs,
    default_scenario="bounce_spike", number=50, notebook_path=HERE / f"{SLUG}.ipynb",
    scenarios_path=HERE / "scenarios" / SLUG,
)

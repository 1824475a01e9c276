"""The rule helpers every runbook's diagnosis shares: evidence from the checks, and the tables a runbook
concludes from.

A rule reads what the checks recorded (`ctx.findings`) and the typed evidence they left (`ctx.evidence`,
see `runbooks.log_facts`); it never queries anything itself, so it can be tested without a database or a
provider (`tests/lib/test_rules.py`). Every threshold is in `runbooklib.thresholds`.

A runbook concludes from two tables (`Conclusions`):

- error class → cause: every class its channel's classifier can give (`errorcodes`) names a cause, so an
  error the logs show rising is never left without one (`other` is the only exception: nothing known);
- provider state → cause: every not-OK state a provider check can report (`State`: the check, its
  classification, its status) either establishes a cause or is noted, with why it is not one; a noted state
  is shown beside the verdict and cited by `unknown` as what might explain it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runbooklib.context import RunContext
from runbooklib.diagnosis import SHARE, TENANT, Match, Rule
from runbooklib.results import CheckResult
from runbooklib.runbooks.log_facts import ERROR_CLASSES, TENANT_SPLIT, WINDOW_RATE, ErrorClasses, TenantSplit, WindowRate
from runbooklib.thresholds import CAUSE_SHARE, TENANT_MINORITY


def rate(row: dict[str, Any]) -> float:
    total = int(row.get("total") or 0)
    return (int(row.get("failed") or 0) / total) if total else 0.0


def finding(ctx: RunContext, name: str) -> CheckResult | None:
    return ctx.findings.get(name)


def passed(ctx: RunContext, name: str) -> bool:
    """The check ran in this run and found nothing wrong (what a checklist may tick on)."""
    found = ctx.findings.get(name)
    return found is not None and found.passed


def holding(ctx: RunContext, causes: Iterable[str]) -> list[str]:
    """Which of `causes` this run's diagnosis names: its cause first, then those listed beside it."""
    d = ctx.diagnosis
    if d is None:
        return []
    wanted = set(causes)
    return [c for c in (d.cause, *(o["cause"] for o in d.others)) if c in wanted]


# -- What the logs establish -------------------------------------------------------------------------
def window(ctx: RunContext) -> WindowRate | None:
    return ctx.evidence.find(WINDOW_RATE)


def error_classes(ctx: RunContext) -> ErrorClasses | None:
    return ctx.evidence.find(ERROR_CLASSES)


def tenant_split(ctx: RunContext) -> TenantSplit | None:
    return ctx.evidence.find(TENANT_SPLIT)


def channel_elevated(ctx: RunContext) -> bool:
    """The channel's failure rate in the window is elevated above its baseline (`stats.compare`)."""
    found = window(ctx)
    return found is not None and found.elevated


def elevated_tenants(ctx: RunContext) -> tuple[str, ...]:
    found = tenant_split(ctx)
    return found.elevated_tenants if found is not None else ()


def incident_present(ctx: RunContext) -> bool:
    """Failures are elevated in this run's window: the channel's, a tenant's against its own baseline, or an error
    class's (e.g. bounces, which are not counted as failed)."""
    if channel_elevated(ctx) or elevated_tenants(ctx):
        return True
    classes = error_classes(ctx)
    return classes is not None and any(c.elevated for c in classes.comparisons.values())


def ended(ctx: RunContext) -> str | None:
    """When failures were elevated in the window but its end is back at baseline: what says so (else None)."""
    found = window(ctx)
    if found is None or found.recent is None or not found.end_at_baseline or not incident_present(ctx):
        return None
    return found.recent.line()


def log_evidence(ctx: RunContext) -> list[str]:
    out = []
    failure_rate = finding(ctx, "failure_rate")
    if failure_rate is not None:
        out.append(f"message_logs: {failure_rate.summary}")
    errors = finding(ctx, "top_errors")
    classes = error_classes(ctx)
    if errors is not None and classes is not None and classes.dominant:
        out.append(f"message_logs: {errors.summary}")
    return out


def class_match(ctx: RunContext, classes: Iterable[str], explanation: str) -> Match | None:
    """Holds when failures are elevated and these error classes rose above their own baseline and carry at least
    `CAUSE_SHARE` of all the failures above baseline; ranked by the failures above baseline they explain."""
    found = error_classes(ctx)
    wanted = sorted(set(classes))
    if found is None or not wanted or not incident_present(ctx):
        return None
    together = found.comparison(wanted, " / ".join(wanted))
    share = found.excess_share(wanted)
    if not together.rose or share < CAUSE_SHARE:
        return None
    excess = sum(found.comparisons[c].excess for c in wanted if c in found.comparisons)
    return Match(f"{share:.0%} of the failures above baseline are {' / '.join(wanted)} errors ({together.failed:,} in the "
                 f"window against {together.expected:,.1f} expected) — {explanation}",
                 [together.line(), *log_evidence(ctx)], tier=SHARE, weight=excess)


def tenant_rule(ctx: RunContext, noun: str) -> Match | None:
    """A few tenants are elevated above their own baseline while the others together are not: each is named with
    its own top error. However small a tenant's share of the volume, it counts (its own baseline is the measure)."""
    split = tenant_split(ctx)
    if split is None or not split.elevated_tenants:
        return None
    many = len(split.elevated_tenants) >= max(TENANT_MINORITY * split.active, 1) and split.active > 1
    if many or split.active < 2 or (split.rest is not None and split.rest.elevated):
        return None
    named = []
    for tenant in split.elevated_tenants:
        cmp = split.comparison(tenant)
        figures = (f"{cmp.failed:,} of its {cmp.total:,} {noun} failed ({cmp.rate:.0%}) against {cmp.baseline_rate:.1%} "
                   f"at its baseline" if cmp is not None else "elevated")
        top = split.top_errors.get(tenant)
        named.append(f"{tenant} ({figures}{'; top error: ' + top if top else ''})")
    rest = (f"the other tenants fail at {split.rest.rate:.1%} (baseline {split.rest.baseline_rate:.1%})"
            if split.rest is not None else "no other tenant is elevated")
    lead = "tenant" if len(named) == 1 else f"{len(named)} tenants"
    checks = (finding(ctx, "tenant_split"), finding(ctx, "top_errors"))
    evidence = [f"{f.title}: {f.summary}" for f in checks if f is not None]
    evidence += [c.line() for c in split.comparisons if c.what.removeprefix("tenant ") in split.elevated_tenants]
    if split.rest is not None:
        evidence.append(split.rest.line())
    return Match(f"{lead} {'; '.join(named)} — while {rest}", evidence, tier=TENANT, weight=split.excess)


def figures(ctx: RunContext) -> list[dict[str, Any]]:
    """The comparisons a channel runbook's verdict rests on: the channel, the tenants that are elevated (or the
    busiest ones), the other tenants together, and every error class that rose."""
    out = []
    found = window(ctx)
    if found is not None:
        out.append(found.test.to_json() | {"what": "the channel's failure rate"
                                           + (" (against the quietest part of the baseline)" if found.reference else "")})
        if found.recent is not None:
            out.append(found.recent.to_json())
    split = tenant_split(ctx)
    if split is not None:
        shown = [c for c in split.comparisons if c.what.removeprefix("tenant ") in split.elevated_tenants]
        out += [c.to_json() for c in (shown or list(split.comparisons[:3]))]
        if split.rest is not None and shown:
            out.append(split.rest.to_json())
    classes = error_classes(ctx)
    if classes is not None:
        out += [classes.comparisons[c].to_json() for c in classes.risen()]
    return out


# -- The tables a runbook concludes from ----------------------------------------------------------------
@dataclass(frozen=True)
class State:
    """A not-OK state a provider check reports, and what it concludes.

    `cause` None means noted: shown beside the verdict (and cited by `unknown`) with `why` it is not a cause by
    itself. `needs_failures`: the state establishes its cause only while failures are elevated (otherwise it is
    noted). `blocking`: nothing can be sent while it lasts, so it ranks first; a state that does not block ranks
    by the failures above baseline that its cause's error classes explain."""

    check: str
    classification: str | None
    cause: str | None
    statuses: tuple[str, ...] = ("fail",)
    needs_failures: bool = False
    blocking: bool = True
    why: str = ""
    explains: tuple[str, ...] = ()
    """Error classes, beyond those of its cause, that this state accounts for (ranks it among the shares)."""


QUEUE_CHECK = "runbooklib.runbooks.channel_checks:check_queue"


def queue_states(check: str, who: str) -> tuple[State, State]:
    """What a channel's queue in the metrics API concludes: paused is `queue_paused` (nothing is sent), a deep
    backlog is noted (`who` — the provider — says why)."""
    return (State(check, "paused", "queue_paused", ("warn",)),
            State(check, "backlog", None, ("warn",), why=f"a deep queue on its own; the failure rate and {who} say why"))


@dataclass(frozen=True)
class Conclusions:
    """One runbook's tables: error class → cause, and every not-OK provider state it can see."""

    classes: Mapping[str, str]
    states: Sequence[State] = field(default_factory=tuple)
    sources: Mapping[str, str] = field(default_factory=dict)
    """Finding name → the check that reports it (`module:function`), whose `STATES` declare what it can report."""

    def classes_of(self, cause: str) -> list[str]:
        return sorted(c for c, named in self.classes.items() if named == cause)

    def state_causes(self) -> set[str]:
        return {s.cause for s in self.states if s.cause}

    def observed(self, ctx: RunContext, cause: str, lead: str) -> Match | None:
        """Holds when a provider check reports a state that establishes `cause`."""
        for state in (s for s in self.states if s.cause == cause):
            f = finding(ctx, state.check)
            if f is None or f.status not in state.statuses or f.classification != state.classification:
                continue
            if state.needs_failures and not incident_present(ctx):
                continue
            evidence = [f"{f.title}: {f.summary}", *log_evidence(ctx)]
            if state.blocking:
                return Match(f"{lead}: {f.summary}", evidence)
            classes = error_classes(ctx)
            weight = sum(classes.comparisons[c].excess for c in {*self.classes_of(cause), *state.explains}
                         if classes is not None and c in classes.comparisons)
            return Match(f"{lead}: {f.summary}", evidence, tier=SHARE, weight=weight)
        return None

    def logged(self, ctx: RunContext, cause: str, explanation: str) -> Match | None:
        """Holds when the error classes that name `cause` rose and carry a share of the failures (`class_match`)."""
        classes = self.classes_of(cause)
        return class_match(ctx, classes, explanation) if classes else None

    def rule(self, ctx: RunContext, cause: str, lead: str, explanation: str = "") -> Rule:
        """`cause` from the provider states that establish it, else from its error classes in the logs."""
        return Rule(cause, lambda: self.observed(ctx, cause, lead) or self.logged(ctx, cause, explanation or lead))

    def unconcluded(self, ctx: RunContext, causes: Iterable[str]) -> list[str]:
        """Provider states observed that name a cause which did not hold (neither named nor listed): an outage page
        while our failures are something else. They are true, and shown, but not why messages fail now."""
        held = set(causes)
        out = []
        for state in self.states:
            f = finding(ctx, state.check)
            if (state.cause is None or state.cause in held or f is None or f.status not in state.statuses
                    or f.classification != state.classification or (state.needs_failures and not incident_present(ctx))):
                continue
            out.append(f"{f.title}: {f.summary} — observed, but not what the failures show (not {state.cause})")
        return list(dict.fromkeys(out))

    def notes(self, ctx: RunContext) -> list[str]:
        """What the provider checks observed that establishes no cause here (noted states; states whose cause
        needs elevated failures when there are none), and error classes that rose but name no known cause."""
        out = []
        checks = {s.check for s in self.states}
        for name in sorted(checks):
            f = finding(ctx, name)
            if f is None or f.status not in ("fail", "warn"):
                continue
            state = next((s for s in self.states if s.check == name and f.status in s.statuses
                          and s.classification == f.classification), None)
            if state is None:
                out.append(f"{f.title}: {f.summary} (a state no rule knows)")
            elif state.cause is None:
                out.append(f"{f.title}: {f.summary}" + (f" — {state.why}" if state.why else ""))
            elif state.needs_failures and not incident_present(ctx):
                out.append(f"{f.title}: {f.summary} — no elevated failures, so not {state.cause} (yet)")
        classes = error_classes(ctx)
        if classes is not None:
            unknown = [c for c in classes.risen() if c not in self.classes]
            for cls in unknown:
                out.append(f"errors of class {cls} rose above their baseline but name no known cause: "
                           f"{classes.comparisons[cls].line()}")
        return out


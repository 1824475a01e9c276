"""What every channel runbook checks the same way, parameterised by channel and queue.

`ChannelChecks` holds the `message_logs` checks and charts (failure rate against the baseline,
counts by status, failures over time, top errors with their class, the tenant split), the queue
checks (metrics API, recovery trend) and the recovery failure rate; `CodedChannelChecks` adds the
checks of a channel whose provider reports numeric error codes. A runbook module binds one instance
to its channel and exposes its methods under the names its notebook uses. The rules are in
`runbooks.rules`, the action bases in `actions.bases`.
"""

from __future__ import annotations

import csv
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pandas as pd
from matplotlib.figure import Figure

from runbooklib import charts, queries
from runbooklib.actions.bases import MITIGATED_AT
from runbooklib.context import RunContext
from runbooklib.diagnosis import Needed
from runbooklib.errors import ConfigError, PlatformAPIError, QueryError
from runbooklib.evidence import Key, NotYet
from runbooklib.params import parse_duration
from runbooklib.redact import REDACTOR
from runbooklib.results import CheckResult, timed
from runbooklib.runbooks.log_facts import (
    ERROR_CLASSES,
    PEAK,
    TENANT_SPLIT,
    WINDOW_RATE,
    ErrorClasses,
    Peak,
    TenantSplit,
    WindowRate,
)
from runbooklib.runbooks.rules import rate
from runbooklib.schema import FAILED_STATUSES, STATUSES
from runbooklib.stats import CHANNEL, Comparison, compare, family_alpha
from runbooklib.thresholds import (
    BASELINE_SEGMENTS,
    MAX_TENANTS_NAMED,
    MIN_BASELINE_MESSAGES,
    MIN_TENANT_FAILURES,
    QUEUE_DRAINED,
    QUEUE_FAILED_WARN,
    QUEUE_GROWTH_MIN,
    QUEUE_WAITING_WARN,
    RECEIPTS_LOW,
    RECENT_MINUTES,
    SENT_AWAITING_SHARE,
    SIGNIFICANCE,
)

TOP_ERRORS = 10
TOP_TENANTS = 15
SAMPLE_ROWS = 20
TOP_CODES = 15
QUEUE_STATES: dict[str, dict[str, tuple[str, ...]]] = {"check_queue": {"paused": ("warn",), "backlog": ("warn",)}}
"""The states of a channel's queue the metrics API shows that are not OK (classification → statuses)."""
CLASS_ROWS = 500
"""Distinct errors (or codes) read to classify the window's and the baseline's failures (the table shows the top)."""
RECOVERY_WINDOW = timedelta(minutes=10)
TOP_ERRORS_FRAME: Key[pd.DataFrame] = Key("top_errors_frame", "check_top_errors", "the window's top errors")
ERROR_CODES_FRAME: Key[pd.DataFrame] = Key("error_codes_frame", "check_error_codes",
                                           "the window's failures by provider error code")
TENANT_FRAME: Key[pd.DataFrame] = Key("tenant_frame", "check_tenant_split", "the window's failures per tenant")
QUEUE_SAMPLES: Key[list[tuple[datetime, int]]] = Key("queue_samples", "check_queue_trend",
                                                     "the sampled queue backlog")


def not_run(ctx: RunContext, finding: str, check: str, title: str) -> Figure | None:
    """A chart saying `check` must run first when its finding is not on record in this run, else None: a plot
    that draws a check's result shows that dependency instead of an empty chart."""
    return None if finding in ctx.findings else charts.run_first(title, check)


def guard_checks(namespace: dict[str, Any], findings: Mapping[str, str] | None = None) -> None:
    """Wrap every `check_*` function of a runbook module so that an exception it did not expect (an answer of a
    shape it does not know, a bug) becomes a finding that could not check, not a crashed cell.

    `findings` names the finding of a check whose name is not its function's (`check_error_codes` → `top_errors`),
    so that a needed check that broke is reported as what it is, not as "not run"."""
    for attr, fn in list(namespace.items()):
        if attr.startswith("check_") and callable(fn) and not getattr(fn, "guarded", False):
            namespace[attr] = _guarded(fn, (findings or {}).get(attr, attr.removeprefix("check_")))


def _guarded(fn: Callable[..., CheckResult], name: str) -> Callable[..., CheckResult]:
    @functools.wraps(fn)
    def run(ctx: RunContext, *args: Any, **kwargs: Any) -> CheckResult:
        try:
            return fn(ctx, *args, **kwargs)
        except NotYet as exc:  # run out of order: say what to run first
            return ctx.record(CheckResult(name, name.replace("_", " "), "error", str(exc), classification="not_run"))
        except Exception as exc:  # a failing check is a result, never a crash
            title = name.replace("_", " ")
            return ctx.record(CheckResult(name, title, "error", REDACTOR.text(
                f"the check could not read what it got: {exc.__class__.__name__}: {str(exc)[:200]} (an answer of a "
                "shape it does not know, or a bug — check by hand)"), classification="check_broke"))
    run.guarded = True  # type: ignore[attr-defined]
    run.finding = name  # type: ignore[attr-defined]
    return run


def sampling_needs(params: Any, slot: float) -> dict[str, float]:
    """A channel runbook's deliberate waits: `recovery_samples` queue samples, `recovery_interval` apart."""
    samples = int(params.recovery_samples)
    interval = parse_duration(params.recovery_interval).total_seconds()
    return {f"{samples} queue sample{'s' if samples > 1 else ''}": (samples - 1) * interval + samples * slot}


def window_sql(ctx: RunContext) -> str:
    """The window as a PostgreSQL interval, for the by-hand SQL a responder is pointed to."""
    return f"NOW() - INTERVAL '{int(ctx.params.window_delta.total_seconds())} seconds'"


def bucket_seconds(ctx: RunContext) -> int:
    """About 60 buckets over the window, never below one minute."""
    return max(60, int(ctx.params.window_delta.total_seconds() // 60) // 60 * 60)


def _risen(classes: ErrorClasses) -> str:
    """'; risen above their baseline: rate_limited (412 vs 3.1 expected), …' (empty when none rose)."""
    risen = classes.risen()
    if not risen:
        return "; no error class above its baseline"
    return "; risen above their baseline: " + ", ".join(
        f"{c} ({classes.comparisons[c].failed:,} vs {classes.comparisons[c].expected:,.1f} expected)" for c in risen[:4])


def _quietest(ctx: RunContext, buckets: pd.DataFrame, seconds: int,
              base: dict[str, Any]) -> tuple[tuple[datetime, datetime], dict[str, int], dict[str, Any]] | None:
    """When the baseline as a whole is significantly above its quietest segment (an incident that began before the
    baseline did: a slow burn), that segment — (its bounds, its counts, the whole baseline) — else None."""
    full = buckets[buckets["total"] >= MIN_BASELINE_MESSAGES] if not buckets.empty else buckets
    if len(full) < 2:
        return None
    rates = full["failed"] / full["total"]
    quiet = full.loc[rates.idxmin()]
    counts = {"failed": int(quiet["failed"]), "total": int(quiet["total"]), "problems": int(quiet["problems"]),
              "queued": 0}
    whole = compare("the baseline", int(base.get("failed") or 0), int(base.get("total") or 0), counts["failed"],
                    counts["total"])
    if not whole.rose:
        return None
    start = datetime.fromtimestamp(int(quiet["bucket"]) * seconds, UTC)
    bounds = (max(start, ctx.baseline_since), min(start + timedelta(seconds=seconds), ctx.since))
    whole_total = max(int(base.get("total") or 0), 1)  # the receipts' share stays the whole baseline's
    counts["delivered"] = round(int(base.get("delivered") or 0) * counts["total"] / whole_total)
    return bounds, counts, base


def reference_params(ctx: RunContext, **extra: Any) -> dict[str, Any]:
    """Bound values for the period the window is compared with: the baseline, or its quietest segment when the
    baseline was itself elevated (`WindowRate.reference`)."""
    found = ctx.evidence.find(WINDOW_RATE)
    params = ctx.baseline_params(**extra)
    if found is not None and found.reference is not None:
        params.update(since=found.reference[0], until=found.reference[1])
    return params


def db_error(ctx: RunContext, name: str, title: str, exc: Exception) -> CheckResult:
    """A message_logs check that could not run (no database URL, database down, query failed): it establishes
    nothing, so it is `error`, never a pass."""
    return ctx.record(CheckResult(name, title, "error", f"message_logs could not be read: {exc}",
                                  classification="config" if isinstance(exc, ConfigError) else "database"))


@dataclass(frozen=True)
class ChannelChecks:
    """The shared checks of one channel (`EMAIL`, `SMS`, `WHATSAPP`) and its queue."""

    channel: str
    queue: str
    label: str
    noun: str
    classify: Callable[[str | None, str | None], str]

    def needed(self, ctx: RunContext) -> list[Needed]:
        """What every channel runbook's `healthy` rests on: message_logs (rate, errors, tenants) and the queue."""
        where = f"channel = '{self.channel}' AND created_at > {window_sql(ctx)}" + (
            " AND tenant_id = '" + ctx.params.tenant_id.replace("'", "''") + "'" if ctx.by_tenant else "")
        return [
            Needed("failure_rate", f"the {self.label} failure rate in message_logs",
                   f"SELECT status, COUNT(*) FROM message_logs WHERE {where} GROUP BY status;"),
            Needed("status_counts", f"{self.label} messages by status (only known statuses)",
                   f"SELECT status, COUNT(*) FROM message_logs WHERE {where} GROUP BY status;"),
            Needed("top_errors", f"the errors of failing {self.label} messages",
                   f"SELECT metadata->>'error', COUNT(*) FROM message_logs WHERE {where} AND status = 'FAILED' "
                   "GROUP BY 1 ORDER BY 2 DESC LIMIT 10;"),
            Needed("tenant_split", f"{self.label} failures per tenant",
                   f"SELECT tenant_id, COUNT(*) FILTER (WHERE status = 'FAILED'), COUNT(*) FROM message_logs WHERE "
                   f"{where} GROUP BY tenant_id ORDER BY 2 DESC;"),
            Needed(f"{self.queue}_queue", f"the {self.queue} queue (Lineup metrics API)",
                   f"curl -H 'Authorization: Bearer …' {ctx.profile.platform_api_url}/api/v1/system-metrics/queues "
                   f"| jq '.[] | select(.queue==\"{self.queue}\")'"),
        ]

    # -- Symptoms --------------------------------------------------------------------------------
    def check_queue(self, ctx: RunContext) -> CheckResult:
        """The channel's entry of GET /api/v1/system-metrics/queues."""
        name, title = f"{self.queue}_queue", f"{self.label} queue (Lineup metrics API)"
        with timed() as ms:
            try:
                entry = ctx.api.queue(self.queue)
            except (PlatformAPIError, ConfigError) as exc:
                cls = "config" if isinstance(exc, ConfigError) else "platform_api"
                return ctx.record(CheckResult(name, title, "error", f"the queue metrics could not be read: {exc}",
                                              classification=cls, duration_ms=ms()))
        if entry is None:
            return ctx.record(CheckResult(name, title, "error", f"the metrics API does not list a {self.queue!r} queue",
                                          classification="platform_api", duration_ms=ms()))
        facts = {k: v for k, v in entry.items() if k != "queue"}
        waiting = int(entry.get("waiting", 0) or 0)
        failed = int(entry.get("failed", 0) or 0)
        ctx.facts["queue_waiting"] = waiting
        ctx.measure("queue_depth", waiting + int(entry.get("delayed", 0) or 0), scope=self.queue, basis="metrics API")
        status = "warn" if waiting >= QUEUE_WAITING_WARN or failed >= QUEUE_FAILED_WARN else "ok"
        summary = f"{waiting:,} waiting, {int(entry.get('active', 0) or 0):,} active, {failed:,} failed"
        if entry.get("paused"):
            return ctx.record(CheckResult(name, title, "warn", summary + "; queue is PAUSED: nothing is being sent",
                                          classification="paused", facts=facts, duration_ms=ms()))
        return ctx.record(CheckResult(name, title, status, summary, facts=facts, duration_ms=ms(),
                                      classification="backlog" if status == "warn" else None))

    def check_failure_rate(self, ctx: RunContext) -> CheckResult:
        """Failure rate in the window against the baseline window before it (or, when the baseline was itself
        elevated, against its quietest segment), and the end of the window on its own: have the failures ended?"""
        name, title = "failure_rate", f"{self.label} failure rate vs baseline"
        stmt = queries.failure_totals(by_tenant=ctx.by_tenant)
        segment = max(3600, int(ctx.params.baseline_delta.total_seconds() // BASELINE_SEGMENTS))
        recent_since = ctx.until - min(timedelta(minutes=RECENT_MINUTES), ctx.params.window_delta / 4)
        with timed() as ms:
            try:
                window = ctx.db.one(stmt, ctx.window_params(channel=self.channel))
                base = ctx.db.one(stmt, ctx.baseline_params(channel=self.channel))
                buckets = ctx.db.fetch(queries.failure_buckets(segment, by_tenant=ctx.by_tenant),
                                       ctx.baseline_params(channel=self.channel))
                recent = ctx.db.one(stmt, ctx.window_params(channel=self.channel, since=recent_since))
            except (QueryError, ConfigError) as exc:
                return db_error(ctx, name, title, exc)
        failed, total = int(window.get("failed") or 0), int(window.get("total") or 0)
        if total == 0:
            return ctx.record(self._no_messages(ctx, name, title, int(base.get("total") or 0), ms()))
        reference = _quietest(ctx, buckets, segment, base)
        if reference is not None:
            base = {**base, **reference[1]}
        now_rate, base_rate = rate(window), rate(base)
        base_failed, base_total = int(base.get("failed") or 0), int(base.get("total") or 0)
        test = compare(f"{self.label} failure rate", failed, total, base_failed, base_total)
        # of the messages that have an outcome: a message still QUEUED (a backlog behind an outage) says nothing yet
        latest = compare(f"{self.label} failing or retrying, the last {int((ctx.until - recent_since).total_seconds() // 60)}"
                         " minutes", int(recent.get("problems") or 0),
                         int(recent.get("total") or 0) - int(recent.get("queued") or 0), int(base.get("problems") or 0),
                         base_total - int(base.get("queued") or 0))
        found = ctx.evidence.put(WINDOW_RATE, WindowRate(
            total, failed, now_rate, base_total, base_rate, delivered=int(window.get("delivered") or 0),
            baseline_delivered=int(base.get("delivered") or 0), elevated=test.elevated, baseline_failed=base_failed,
            comparison=test, reference=reference[0] if reference is not None else None, recent=latest))
        ctx.measure("failure_rate", now_rate, scope=self.channel.lower(), basis=f"last {ctx.params.window}",
                    at=ctx.until)
        facts: dict[str, Any] = {"window_total": total, "window_failed": failed, "window_rate": round(now_rate, 4),
                 "baseline_total": base_total, "baseline_failed": base_failed,
                 "baseline_rate": round(base_rate, 4), "bounced": int(window.get("bounced") or 0),
                 "failures_per_minute": round(failed / (ctx.params.window_delta.total_seconds() / 60), 2),
                 "retrying": int(window.get("retrying") or 0), "delivered": int(window.get("delivered") or 0)}
        facts.update(p_value=test.to_json()["p_value"], expected=round(test.expected, 1), test=test.verdict)
        against = (f"the quietest {segment // 3600} h of the {ctx.params.baseline} before (the baseline as a whole was "
                   f"already elevated: {rate(reference[2]):.1%})" if reference is not None
                   else f"the {ctx.params.baseline} before")
        text = (f"{failed:,} of {total:,} failed in the last {ctx.params.window} ({now_rate:.1%}) vs "
                f"{base_rate:.1%} in {against} ({test.expected:,.1f} expected; {test.verdict})")
        if test.elevated and found.end_at_baseline:
            text += f"; ended: the last minutes are back at baseline ({latest.rate:.1%} failing or retrying)"
        if test.elevated:
            return ctx.record(CheckResult(name, title, "fail", "elevated: " + text, classification="elevated",
                                          facts=facts, duration_ms=ms()))
        status = "warn" if test.rose else "ok"
        return ctx.record(CheckResult(name, title, status, text, facts=facts, duration_ms=ms()))

    def _no_messages(self, ctx: RunContext, name: str, title: str, baseline_total: int, ms: float) -> CheckResult:
        """No message of the channel in the window: no failure rate to measure, so never a pass."""
        scope = f"for tenant {ctx.params.tenant_id} " if ctx.by_tenant else ""
        if baseline_total == 0:
            text = (f"no messages {scope}in the window or baseline ({self.label.lower()}): nothing to measure"
                    + (" — check the tenant id" if ctx.by_tenant else ""))
        else:
            text = (f"no {self.label.lower()} messages {scope}were created in the last {ctx.params.window}, though "
                    f"{baseline_total:,} were in the {ctx.params.baseline} before: no failure rate to measure — are "
                    "messages being created and logged at all?")
        ctx.evidence.put(WINDOW_RATE, WindowRate(0, 0, 0.0, baseline_total, 0.0))
        return CheckResult(name, title, "error", text, classification="no_data",
                           facts={"window_total": 0, "baseline_total": baseline_total}, duration_ms=ms)

    # -- Checks: message_logs -------------------------------------------------------------------------
    def check_status_counts(self, ctx: RunContext) -> CheckResult:
        """The spec's query: the channel's messages by status in the window, with one sample error each."""
        name, title = "status_counts", f"{self.label} messages by status"
        with timed() as ms:
            try:
                frame = ctx.db.fetch(queries.status_counts(by_tenant=ctx.by_tenant),
                                     ctx.window_params(channel=self.channel))
            except (QueryError, ConfigError) as exc:
                return db_error(ctx, name, title, exc)
        counts = dict(zip(frame["status"], frame["count"], strict=True)) if not frame.empty else {}
        summary = ", ".join(f"{s} {int(c):,}" for s, c in counts.items()) or f"no {self.noun} in the window"
        by_status = {str(k): int(v) for k, v in counts.items()}
        strange = ", ".join(f"{k!r} {v:,}" for k, v in by_status.items() if k not in STATUSES)
        if strange:  # a failure rate counts FAILED only: statuses it does not know may hide failures
            text = (f"message_logs holds statuses this runbook does not know: {strange[:300]}; the failure rate "
                    f"counts only {', '.join(FAILED_STATUSES)} of {', '.join(STATUSES)}, so it cannot be trusted")
            return ctx.record(CheckResult(name, title, "error", text, classification="unknown_status",
                                          facts={"by_status": by_status}, table=frame, duration_ms=ms()))
        return ctx.record(CheckResult(name, title, "ok" if counts else "warn", summary,
                                      facts={"by_status": {k: int(v) for k, v in counts.items()}}, table=frame,
                                      duration_ms=ms()))

    def plot_failures_over_time(self, ctx: RunContext) -> Figure:
        """Failed, bounced and retrying messages per time bucket over the window."""
        size = bucket_seconds(ctx)
        try:
            frame = ctx.db.fetch(queries.status_over_time(size, by_tenant=ctx.by_tenant),
                                 ctx.window_params(channel=self.channel))
        except (QueryError, ConfigError) as exc:
            frame = pd.DataFrame(columns=["bucket", "status", "count"])
            db_error(ctx, "failures_over_time", "Failures over time", exc)
        failed = frame[frame["status"] == "FAILED"]["count"] if not frame.empty else pd.Series(dtype=int)
        ctx.evidence.put(PEAK, Peak(float(failed.max() / (size / 60)) if len(failed) else 0.0))
        return charts.plot_status_over_time(frame, size,
                                            title=f"{self.label} failures over the last {ctx.params.window} (UTC)")

    def check_top_errors(self, ctx: RunContext) -> CheckResult:
        """The most common errors, each with its class; every class compared with its own count in the baseline."""
        name, title = "top_errors", f"Top {self.label.lower()} errors"
        messages = ctx.evidence.get(WINDOW_RATE)  # the denominators: check_failure_rate runs first
        with timed() as ms:
            try:
                frame = ctx.db.fetch(queries.top_errors(by_tenant=ctx.by_tenant),
                                     ctx.window_params(channel=self.channel, limit=CLASS_ROWS))
                base = ctx.db.fetch(queries.top_errors(by_tenant=ctx.by_tenant),
                                    reference_params(ctx, channel=self.channel, limit=CLASS_ROWS))
            except (QueryError, ConfigError) as exc:
                return db_error(ctx, name, title, exc)
        baseline_counts = self._class_counts(base, "error")
        if frame.empty:
            ctx.evidence.put(ERROR_CLASSES, ErrorClasses(baseline_counts=baseline_counts, messages=messages.total,
                                                         baseline_messages=messages.baseline_total))
            return ctx.record(CheckResult(name, title, "ok", "no errors recorded in the window", table=frame,
                                          duration_ms=ms()))
        frame["class"] = [self.classify(e, c) for e, c in zip(frame["error"], frame["error_code"], strict=True)]
        by_class = frame.groupby("class")["count"].sum().sort_values(ascending=False)
        total = int(frame["count"].sum())
        shares = {str(k): int(v) / total for k, v in by_class.items()}
        top_class = str(by_class.index[0])
        classes = ErrorClasses(total, shares, top_class, counts={str(k): int(v) for k, v in by_class.items()},
                               baseline_counts=baseline_counts, messages=messages.total,
                               baseline_messages=messages.baseline_total)
        ctx.evidence.put(ERROR_CLASSES, classes)
        facts = {"classes": {str(k): int(v) for k, v in by_class.items()}, "dominant_class": top_class,
                 "dominant_share": round(shares[top_class], 3), "risen": classes.risen(),
                 "baseline_classes": baseline_counts}
        summary = (f"{total:,} errors; most common class {top_class} ({shares[top_class]:.0%}): "
                   f"{REDACTOR.text(str(frame['error'].iloc[0]))}" + _risen(classes))
        ctx.evidence.put(TOP_ERRORS_FRAME, frame.head(TOP_ERRORS))
        return ctx.record(CheckResult(name, title, "warn" if classes.risen() else "ok", summary, facts=facts,
                                      table=frame[["error", "error_code", "class", "count", "tenants",
                                                   "last_seen"]].head(TOP_ERRORS),
                                      duration_ms=ms()))

    def _class_counts(self, frame: pd.DataFrame, text: str) -> dict[str, int]:
        """Error class → count, from a frame of errors (`text` column) and their codes."""
        if frame.empty:
            return {}
        counts: dict[str, int] = {}
        for error, code, n in zip(frame[text], frame["error_code"], frame["count"], strict=True):
            cls = self.classify(error, code)
            counts[cls] = counts.get(cls, 0) + int(n)
        return counts

    def plot_top_errors(self, ctx: RunContext) -> Figure:
        """The top errors as bars."""
        title = f"Top {self.label.lower()} errors in the window"
        if (first := not_run(ctx, "top_errors", "check_top_errors", title)) is not None:
            return first
        frame = ctx.evidence.find(TOP_ERRORS_FRAME)
        return charts.plot_top_errors(frame if frame is not None else pd.DataFrame(columns=["error", "count"]),
                                      title=title)

    def check_tenant_split(self, ctx: RunContext) -> CheckResult:
        """Is it one tenant or all? Each tenant's failure rate against its own baseline (a thin one: the channel's),
        however small its share of the volume; most failures first."""
        name, title = "tenant_split", "Failures by tenant"
        with timed() as ms:
            try:
                frame = ctx.db.fetch(queries.tenant_rates(), ctx.window_params(
                    by_tenant=False, channel=self.channel, baseline_since=ctx.baseline_since, limit=ctx.profile.row_cap))
                counts = ctx.db.one(queries.tenant_count(), ctx.window_params(by_tenant=False, channel=self.channel))
            except (QueryError, ConfigError) as exc:
                return db_error(ctx, name, title, exc)
        tenants, failing = int(counts.get("tenants") or 0), int(counts.get("failing_tenants") or 0)
        total_failed, total = int(counts.get("failed") or 0), int(counts.get("total") or 0)
        tests = self._tenant_tests(frame)
        elevated = tuple(c.what.removeprefix("tenant ") for c in sorted(tests, key=lambda c: -c.excess) if c.elevated)
        by_tenant = {c.what.removeprefix("tenant "): c for c in tests}
        frame["rate"] = (frame["failed"] / frame["total"].where(frame["total"] > 0)).fillna(0).round(4) if not frame.empty else []
        if not frame.empty:
            frame["baseline_rate"] = [round(by_tenant[t].baseline_rate, 4) if t in by_tenant else None
                                      for t in frame["tenant_id"]]
            frame["p_value"] = [by_tenant[t].to_json()["p_value"] if t in by_tenant else None for t in frame["tenant_id"]]
            frame["elevated"] = [t in elevated for t in frame["tenant_id"]]
        ctx.evidence.put(TENANT_FRAME, frame)
        shown = frame.head(TOP_TENANTS)
        self.record_impact(ctx, shown, counts)
        facts: dict[str, Any] = {"tenants": tenants, "failing_tenants": failing, "elevated_tenants": list(elevated)}
        active = int((frame["total"] > 0).sum()) if not frame.empty else 0
        rest = self._rest(frame, elevated) if elevated else None
        top_errors = {t: self.tenant_top_error(ctx, t) for t in elevated[:MAX_TENANTS_NAMED]}
        top_errors = {t: e for t, e in top_errors.items() if e}
        if frame.empty or total_failed == 0:
            ctx.evidence.put(TENANT_SPLIT, TenantSplit(tenants, failing, comparisons=tuple(tests), active=active))
            return ctx.record(CheckResult(name, title, "ok", f"{tenants} tenants, none failing", facts=facts,
                                          table=shown, duration_ms=ms()))
        top = frame.iloc[0]
        share = int(top["failed"]) / total_failed
        rest_total, rest_failed = total - int(top["total"]), total_failed - int(top["failed"])
        rest_rate = rest_failed / rest_total if rest_total else 0.0
        facts.update(top_tenant=str(top["tenant_id"]), top_tenant_share=round(share, 3),
                     top_tenant_rate=round(float(top["rate"]), 4), rest_rate=round(rest_rate, 4))
        ctx.evidence.put(TENANT_SPLIT, TenantSplit(tenants, failing, str(top["tenant_id"]), share, float(top["rate"]),
                                                   rest_rate, comparisons=tuple(tests), elevated_tenants=elevated,
                                                   active=active, rest=rest, top_errors=top_errors))
        if elevated:
            named = ", ".join(f"{t} ({by_tenant[t].rate:.0%} vs {by_tenant[t].baseline_rate:.1%})"
                              for t in elevated[:MAX_TENANTS_NAMED])
            more = f" and {len(elevated) - MAX_TENANTS_NAMED} more" if len(elevated) > MAX_TENANTS_NAMED else ""
            summary = (f"{len(elevated)} of {active} tenants above their own baseline: {named}{more}; the others "
                       + (f"{rest.rate:.1%} (baseline {rest.baseline_rate:.1%})" if rest is not None else "none"))
            return ctx.record(CheckResult(name, title, "warn", summary, facts=facts, table=shown, duration_ms=ms(),
                                          classification="tenants_elevated"))
        summary = (f"{failing} of {tenants} tenants have failures, none above its own baseline; {top['tenant_id']} has "
                   f"{share:.0%} of them ({float(top['rate']):.0%} of its {self.noun} fail; the rest {rest_rate:.1%})")
        return ctx.record(CheckResult(name, title, "ok", summary, facts=facts, table=shown, duration_ms=ms()))

    def _tenant_tests(self, frame: pd.DataFrame) -> list[Comparison]:
        """Each tenant with messages in the window against its own baseline (or the channel's, when its own has
        fewer than `MIN_BASELINE_MESSAGES`), at a significance shared across the tenants tested (Bonferroni)."""
        if frame.empty:
            return []
        active = frame[frame["total"] > 0]
        alpha = family_alpha(len(active), SIGNIFICANCE)
        channel_failed, channel_total = int(frame["baseline_failed"].sum()), int(frame["baseline_total"].sum())
        out = []
        for row in active.itertuples(index=False):
            own = int(row.baseline_total) >= MIN_BASELINE_MESSAGES
            out.append(compare(f"tenant {row.tenant_id}", int(row.failed), int(row.total),
                               int(row.baseline_failed) if own else channel_failed,
                               int(row.baseline_total) if own else channel_total,
                               min_failures=MIN_TENANT_FAILURES, alpha=alpha,
                               baseline_source="own" if own else CHANNEL))
        return out

    @staticmethod
    def _rest(frame: pd.DataFrame, elevated: tuple[str, ...]) -> Comparison:
        """Every tenant but the elevated ones, together, against their baseline."""
        others = frame[~frame["tenant_id"].isin(list(elevated))]
        return compare("the other tenants", int(others["failed"].sum()), int(others["total"].sum()),
                       int(others["baseline_failed"].sum()), int(others["baseline_total"].sum()))

    def tenant_top_error(self, ctx: RunContext, tenant: str) -> str:
        """One tenant's most common error in the window, with its class and share of the tenant's errors."""
        frame = ctx.db.fetch(queries.top_errors(by_tenant=True),
                             {**ctx.window_params(by_tenant=False, channel=self.channel, limit=5), "tenant_id": tenant})
        if frame.empty:
            return ""
        top = frame.iloc[0]
        share = int(top["count"]) / max(int(frame["count"].sum()), 1)
        return (f"{REDACTOR.text(str(top['error']))[:160]} (class {self.classify(top['error'], top['error_code'])}, "
                f"{share:.0%} of its errors)")

    def record_impact(self, ctx: RunContext, frame: pd.DataFrame, counts: dict[str, Any]) -> None:
        """The channel's messages failed and delayed in the window, per tenant (the busiest by failures, then
        the rest together), for the review's impact section."""
        rows: list[dict[str, Any]] = [{"tenant_id": str(r["tenant_id"]), "total": int(r["total"]), "failed": int(r["failed"]),
                 "delayed": int(r["delayed"])} for r in frame.to_dict("records")]
        totals = {k: int(counts.get(k) or 0) for k in ("total", "failed", "delayed")}
        rest = {k: totals[k] - sum(int(r[k]) for r in rows) for k in totals}
        if any(rest.values()):
            rows.append({"tenant_id": "(other tenants)", **rest})
        impact = ctx.extra.setdefault("impact", {})
        impact[self.channel.lower()] = {"window": {"since": ctx.since.isoformat(timespec="seconds"),
                                                   "until": ctx.until.isoformat(timespec="seconds")},
                                        **totals, "tenants": rows}

    def plot_tenant_split(self, ctx: RunContext) -> Figure:
        """Failed vs other messages per tenant."""
        title = f"{self.label} failures by tenant (window)"
        if (first := not_run(ctx, "tenant_split", "check_tenant_split", title)) is not None:
            return first
        frame = ctx.evidence.find(TENANT_FRAME)
        empty = pd.DataFrame(columns=["tenant_id", "total", "failed"])
        return charts.plot_tenant_split(frame.head(TOP_TENANTS) if frame is not None else empty, title=title)

    def failure_sample(self, ctx: RunContext) -> pd.DataFrame:
        """A capped sample of the newest failures (recipients masked)."""
        try:
            frame = ctx.db.fetch(queries.failure_sample(by_tenant=ctx.by_tenant),
                                 ctx.window_params(channel=self.channel, limit=SAMPLE_ROWS))
        except (QueryError, ConfigError) as exc:
            return pd.DataFrame({"error": [str(exc)]})
        return frame.map(lambda v: REDACTOR.text(v) if isinstance(v, str) else v)

    # -- Recovery confirmation ------------------------------------------------------------------------
    def check_queue_trend(self, ctx: RunContext) -> CheckResult:
        """Sample the queue depth a few times: is the backlog draining?"""
        name, title = "queue_trend", f"{self.label} queue depth trend"
        interval = parse_duration(ctx.params.recovery_interval).total_seconds()
        samples: list[tuple[datetime, int]] = []
        with timed() as ms:
            for i in range(ctx.params.recovery_samples):
                if i:
                    time.sleep(interval)
                try:
                    entry = ctx.api.queue(self.queue)
                except (PlatformAPIError, ConfigError) as exc:
                    return ctx.record(CheckResult(name, title, "error", f"sample {i + 1}: {exc}",
                                                  classification="platform_api", duration_ms=ms()))
                if entry is None:
                    return ctx.record(CheckResult(name, title, "error", f"sample {i + 1}: the metrics API does not "
                                                  f"list a {self.queue!r} queue", classification="platform_api",
                                                  duration_ms=ms()))
                samples.append((datetime.now(UTC), int(entry.get("waiting", 0) or 0) + int(entry.get("delayed", 0) or 0)))
        ctx.evidence.put(QUEUE_SAMPLES, samples)
        for at, depth in samples:
            ctx.measure("queue_depth", depth, scope=self.queue, basis="sample", at=at)
        depths = [d for _, d in samples]
        facts = {"samples": depths, "interval_seconds": interval}
        if len(depths) < 2:
            return ctx.record(CheckResult(name, title, "warn", f"one sample only: {depths[0]:,} waiting", facts=facts,
                                          duration_ms=ms()))
        change = depths[-1] - depths[0]
        if depths[-1] < QUEUE_DRAINED or change < 0:
            return ctx.record(CheckResult(name, title, "ok", f"backlog draining: {depths[0]:,} → {depths[-1]:,}",
                                          facts=facts, duration_ms=ms()))
        status = "warn" if change <= max(QUEUE_GROWTH_MIN, depths[0] // 10) else "fail"
        return ctx.record(CheckResult(name, title, status, f"backlog not draining: {depths[0]:,} → {depths[-1]:,}",
                                      classification="backlog", facts=facts, duration_ms=ms()))

    def plot_queue_trend(self, ctx: RunContext) -> Figure:
        """The sampled backlog."""
        title = f"{self.label} queue backlog (waiting + delayed)"
        if (first := not_run(ctx, "queue_trend", "check_queue_trend", title)) is not None:
            return first
        samples = ctx.evidence.find(QUEUE_SAMPLES) or []
        return charts.plot_samples([d for _, d in samples], [t for t, _ in samples], title=title, ylabel="jobs")

    def check_recovery(self, ctx: RunContext) -> CheckResult:
        """Failure rate of messages created since the mitigation (or in the last 10 minutes) against the baseline."""
        name, title = "recovery_failure_rate", "Failure rate since mitigation vs baseline"
        mitigated_at = ctx.evidence.find(MITIGATED_AT)
        since = mitigated_at or datetime.now(UTC) - RECOVERY_WINDOW
        label = "since the mitigation" if mitigated_at else "in the last 10 minutes"
        try:
            row = ctx.db.one(queries.failure_totals(by_tenant=ctx.by_tenant),
                             ctx.window_params(channel=self.channel, since=since,
                                               until=datetime.now(UTC) + timedelta(seconds=1)))
        except (QueryError, ConfigError) as exc:
            return db_error(ctx, name, title, exc)
        window = ctx.evidence.find(WINDOW_RATE)
        now_rate, base = rate(row), window.baseline_rate if window else 0.0
        total, failed = int(row.get("total") or 0), int(row.get("failed") or 0)
        test = compare(f"{self.label} failure rate {label}", failed, total,
                       window.test.baseline_failed if window else 0, window.baseline_total if window else 0)
        facts = {"since": since.isoformat(timespec="seconds"), "total": total, "failed": failed,
                 "delivered": int(row.get("delivered") or 0), "rate": round(now_rate, 4), "baseline_rate": round(base, 4)}
        if total == 0:
            return ctx.record(CheckResult(name, title, "warn", f"no {self.noun} created {label} yet", facts=facts))
        ctx.measure("failure_rate", now_rate, scope=self.channel.lower(), basis=label.removeprefix("in the "))
        text = f"{failed:,} of {total:,} failed {label} ({now_rate:.1%}) vs baseline {base:.1%}"
        if test.rose:
            return ctx.record(CheckResult(name, title, "fail", "not recovered: " + text,
                                          classification="not_recovered", facts=facts))
        return ctx.record(CheckResult(name, title, "ok", "back to normal: " + text, facts=facts))


class CodeInfo(Protocol):
    """What a provider's error-code table says of one code (see runbooklib.errorcodes)."""

    @property
    def cls(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def title(self) -> str: ...


CATEGORIES = ("transient", "permanent", "consent", "config")


@dataclass(frozen=True)
class CodedChannelChecks(ChannelChecks):
    """Checks for a channel whose providers report numeric error codes (Twilio, Graph API)."""

    code_info: Callable[[Any], CodeInfo] = lambda code: None  # type: ignore[assignment,return-value]
    provider: str = ""

    def check_error_codes(self, ctx: RunContext) -> CheckResult:
        """Every failure classified by its provider error code into a class and a retry category; every class
        compared with its own count in the baseline."""
        name, title = "top_errors", f"{self.label} failures by {self.provider} error code"
        messages = ctx.evidence.get(WINDOW_RATE)  # the denominators: check_failure_rate runs first
        with timed() as ms:
            try:
                frame = ctx.db.fetch(queries.error_code_counts(by_tenant=ctx.by_tenant),
                                     ctx.window_params(channel=self.channel, limit=CLASS_ROWS))
                base = ctx.db.fetch(queries.error_code_counts(by_tenant=ctx.by_tenant),
                                    reference_params(ctx, channel=self.channel, limit=CLASS_ROWS))
            except (QueryError, ConfigError) as exc:
                return db_error(ctx, name, title, exc)
        baseline_counts = self._class_counts(base, "sample_error")
        if frame.empty:
            ctx.evidence.put(ERROR_CLASSES, ErrorClasses(baseline_counts=baseline_counts, messages=messages.total,
                                                         baseline_messages=messages.baseline_total))
            return ctx.record(CheckResult(name, title, "ok", "no failures recorded in the window", table=frame,
                                          duration_ms=ms()))
        info = [self.code_info(c) for c in frame["error_code"]]
        frame.insert(1, "class", [i.cls for i in info])
        frame.insert(2, "category", [i.category for i in info])
        frame.insert(3, "meaning", [i.title for i in info])
        total = int(frame["count"].sum())
        by_class = frame.groupby("class")["count"].sum().sort_values(ascending=False)
        by_category = {c: int(frame[frame["category"] == c]["count"].sum()) for c in CATEGORIES}
        shares = {str(k): int(v) / total for k, v in by_class.items()}
        top = str(by_class.index[0])
        classes = ErrorClasses(total, shares, top, by_category, counts={str(k): int(v) for k, v in by_class.items()},
                               baseline_counts=baseline_counts, messages=messages.total,
                               baseline_messages=messages.baseline_total)
        ctx.evidence.put(ERROR_CLASSES, classes)
        ctx.evidence.put(ERROR_CODES_FRAME, frame.head(TOP_CODES))
        summary = (f"{total:,} failures; most common class {top} ({shares[top]:.0%}); by retry category: "
                   + ", ".join(f"{c} {n:,}" for c, n in by_category.items() if n) + _risen(classes))
        return ctx.record(CheckResult(name, title, "warn" if classes.risen() else "ok", summary,
                                      facts={"classes": {str(k): int(v) for k, v in by_class.items()},
                                             "categories": by_category, "dominant_class": top,
                                             "risen": classes.risen(), "baseline_classes": baseline_counts},
                                      table=frame[["error_code", "class", "category", "meaning", "count",
                                                   "tenants"]].head(TOP_CODES),
                                      duration_ms=ms()))

    def tenant_top_error(self, ctx: RunContext, tenant: str) -> str:
        """One tenant's most common error code in the window, with its meaning, class and share."""
        frame = ctx.db.fetch(queries.error_code_counts(by_tenant=True),
                             {**ctx.window_params(by_tenant=False, channel=self.channel, limit=5), "tenant_id": tenant})
        if frame.empty:
            return ""
        top = frame.iloc[0]
        info = self.code_info(top["error_code"])
        share = int(top["count"]) / max(int(frame["count"].sum()), 1)
        return f"{top['error_code'] or '(no code)'} {info.title} (class {info.cls}, {share:.0%} of its errors)"

    def plot_failures_by_category(self, ctx: RunContext) -> Figure:
        """Failures per time bucket, coloured by retry category."""
        size = bucket_seconds(ctx)
        try:
            frame = ctx.db.fetch(queries.error_codes_over_time(size, by_tenant=ctx.by_tenant),
                                 ctx.window_params(channel=self.channel))
        except (QueryError, ConfigError) as exc:
            db_error(ctx, "failures_over_time", "Failures over time", exc)
            frame = pd.DataFrame(columns=["bucket", "error_code", "count"])
        if frame.empty:
            frame = pd.DataFrame(columns=["bucket", "category", "count"])
        else:
            frame["category"] = [self.code_info(c).category for c in frame["error_code"]]
            frame = frame.groupby(["bucket", "category"], as_index=False)["count"].sum()
        return charts.plot_over_time(frame, size, key="category", order=CATEGORIES, colours=charts.CLASS_COLOURS,
                                     title=f"{self.label} failures over the last {ctx.params.window} by retry category (UTC)",
                                     empty=f"no {self.label} failures in the window")

    def plot_top_error_codes(self, ctx: RunContext) -> Figure:
        """The top error codes as bars, labelled with their meaning."""
        title = f"Top {self.label} error codes in the window"
        if (first := not_run(ctx, "top_errors", "check_error_codes", title)) is not None:
            return first
        frame = ctx.evidence.find(ERROR_CODES_FRAME)
        if frame is None or frame.empty:
            return charts.plot_top_errors(pd.DataFrame(columns=["error", "count"]), title=title)
        labelled = pd.DataFrame({"error": [f"{c} {m}" for c, m in zip(frame["error_code"], frame["meaning"],
                                                                      strict=True)], "count": frame["count"]})
        return charts.plot_top_errors(labelled.head(10), title=title)

    def write_recipient_review(self, ctx: RunContext, *, name: str, title: str, codes: list[str],
                               filename: str) -> CheckResult:
        """A review list of recipients whose messages failed with `codes` (masked), written to the run bundle."""
        try:
            frame = ctx.db.fetch(queries.failed_recipients(by_tenant=ctx.by_tenant),
                                 ctx.window_params(channel=self.channel, codes=codes, limit=ctx.profile.row_cap))
        except (QueryError, ConfigError) as exc:
            return db_error(ctx, name, title, exc)
        if frame.empty:
            return ctx.record(CheckResult(name, title, "ok", "no such failures in the window"))
        frame["recipient"] = [REDACTOR.text(str(r)) for r in frame["recipient"]]
        frame["meaning"] = [self.code_info(c).title for c in frame["error_code"]]
        with (ctx.run_dir / filename).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["tenant_id", "recipient_masked", "error_code", "meaning", "failures", "last_seen",
                             "message_id"])
            for row in frame.itertuples(index=False):
                writer.writerow([row.tenant_id, row.recipient, row.error_code, row.meaning, row.count,
                                 row.last_seen.isoformat() if hasattr(row.last_seen, "isoformat") else row.last_seen,
                                 row.message_id])
        per_tenant = {str(k): int(v) for k, v in frame.groupby("tenant_id")["recipient"].nunique().items()}
        ctx.extra[name] = {"file": filename, "recipients": len(frame), "per_tenant": per_tenant}
        ctx.write_summary()
        return ctx.record(CheckResult(name, title, "warn", f"{len(frame):,} recipients listed in {filename}",
                                      facts={"recipients": len(frame), "per_tenant": per_tenant, "file": filename},
                                      table=frame[["tenant_id", "recipient", "error_code", "meaning", "count"]].head(20)))

    def check_delivery_receipts(self, ctx: RunContext) -> CheckResult:
        """The share of recent messages with a DELIVERED receipt against the baseline's: are receipts arriving
        again? Messages still SENT (accepted by the provider, no receipt yet) are told apart from failures, so
        receipts that come back late are a lag, not a failure."""
        name, title = "delivery_receipts", "Delivery receipts (DELIVERED) vs baseline"
        since = ctx.evidence.find(MITIGATED_AT) or ctx.until - min(ctx.params.window_delta, timedelta(minutes=15))
        try:
            row = ctx.db.one(queries.failure_totals(by_tenant=ctx.by_tenant),
                             ctx.window_params(channel=self.channel, since=since, until=datetime.now(UTC)))
        except (QueryError, ConfigError) as exc:
            return db_error(ctx, name, title, exc)
        total, delivered = int(row.get("total") or 0), int(row.get("delivered") or 0)
        sent, failed = int(row.get("sent") or 0), int(row.get("failed") or 0)
        window = ctx.evidence.find(WINDOW_RATE)
        base = (window.baseline_delivered / window.baseline_total) if window and window.baseline_total else 0.0
        share = delivered / total if total else 0.0
        facts = {"since": since.isoformat(timespec="seconds"), "messages": total, "delivered": delivered, "sent": sent,
                 "failed": failed, "delivered_share": round(share, 4), "baseline_delivered_share": round(base, 4)}
        if total == 0:
            return ctx.record(CheckResult(name, title, "warn", f"no {self.noun} created since {since:%H:%M} UTC",
                                          facts=facts))
        text = (f"{share:.0%} of the {total:,} {self.noun} since {since:%H:%M} UTC delivered vs {base:.0%} at baseline "
                f"({sent:,} sent, awaiting a receipt; {failed:,} failed)")
        if not base or share >= RECEIPTS_LOW * base:
            return ctx.record(CheckResult(name, title, "ok", "receipts arriving: " + text, facts=facts))
        failing = compare("recent failures", failed, total, window.test.baseline_failed if window else 0,
                          window.baseline_total if window else 0)
        if sent / total >= SENT_AWAITING_SHARE and not failing.rose:
            return ctx.record(CheckResult(name, title, "warn", "receipts lag: accepted, not yet confirmed — " + text,
                                          classification="receipts_lagging", facts=facts))
        return ctx.record(CheckResult(name, title, "fail", "receipts not back: " + text,
                                      classification="not_recovered", facts=facts))

"""Runbook 4, High Retry Volume: BullMQ queues and the DLQ, retry patterns in message_logs, gated
queue mitigations (pause, fewer attempts, poison jobs to the DLQ, controlled DLQ replay, cleaning)."""

from __future__ import annotations

import csv
import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from runbooklib import channels, charts, queries
from runbooklib.actions import Action, Plan, canonical
from runbooklib.actions.bases import MITIGATED_AT
from runbooklib.catalog import Runbook
from runbooklib.checklist import Checklist
from runbooklib.context import RunContext
from runbooklib.diagnosis import Diagnosis, Match, Needed, Rule, diagnose
from runbooklib.errorcodes import CONSENT, PERMANENT, RATE_LIMIT_CLASSES, TRANSIENT, category_of, class_category
from runbooklib.errors import ConfigError, MitigationFailed, PlatformAPIError, QueryError, QueueError
from runbooklib.evidence import Key
from runbooklib.params import CommonParams, param, parse_duration
from runbooklib.queues import DLQ, QUEUES, SOURCE_QUEUES, QueueAdmin, check_redis
from runbooklib.redact import REDACTOR
from runbooklib.results import CheckResult, timed
from runbooklib.runbooks.channel_checks import db_error, guard_checks, not_run
from runbooklib.runbooks.rules import finding, holding, passed
from runbooklib.schema import STATUSES
from runbooklib.stats import Comparison, compare
from runbooklib.thresholds import (
    AMPLIFICATION_GROWTH,
    AMPLIFICATION_RATIO,
    AMPLIFIED_MESSAGES,
    MIN_CLASS_FAILURES,
    MULTIPLE_ERRORS,
    MULTIPLE_SHARE,
    POISON_MAX_MESSAGES,
    POISON_MAX_SHARE,
    POISON_RETRIES,
    QUEUE_FAILED_WARN,
    SYSTEMIC_SHARE,
)

SLUG = "high_retry_volume"
TITLE = "High Retry Volume"
DEFAULT_SCENARIO = "systemic_provider_failure"
DEMO_PARAMETERS = {"recovery_interval": "1s"}
ACTIONS = ("pause_queue", "reduce_retry_attempts", "move_poison_to_dlq", "replay_dlq", "clean_failed_jobs",
           "resume_queue")
DEPENDENCIES = ("database", "platform_api", "redis")
CAUSES = {
    "healthy": "Queues drain, retries at their usual level, the DLQ is not growing.",
    "queue_stalled": "A queue's backlog grows while nothing is active: no worker is taking jobs.",
    "dlq_growing": "The dead-letter queue keeps growing: jobs are still being exhausted.",
    "poison_messages": "A few messages fail at every attempt while the rest go through.",
    "systemic_provider_failure": "One error dominates across every retry: a provider problem (see the channel's runbook).",
    "retry_amplification": "Retries grow faster than new sends: the retry loop amplifies the problem.",
    "multiple_root_causes": "Failures spread over several different errors: more than one cause.",
    "queue_paused": "A queue is paused: its jobs wait and nothing is sent.",
    "unknown": "Retries are elevated but no known pattern matched the evidence.",
}
PROVIDER_SIDE = {"systemic_provider_failure", "retry_amplification", "queue_stalled", "dlq_growing", "queue_paused"}
"""Causes whose failed messages become deliverable again once the provider, the workers or the queue are back:
they must be re-driven, never deleted."""
MITIGATES = {"pause_queue": {"systemic_provider_failure", "retry_amplification"},
             "reduce_retry_attempts": {"systemic_provider_failure", "retry_amplification"},
             "move_poison_to_dlq": {"poison_messages"}, "replay_dlq": {"healthy"}, "resume_queue": {"queue_paused"}}
"""Action → the causes it can fix (docs/cause-codes.md says why); `clean_failed_jobs` removes only jobs whose failure
is permanent, and never while a provider-side cause holds."""
SCENARIO_DEFAULTS: dict[str, Any] = {
    "runbook": SLUG,
    "message_logs": {"channel": "SMS", "provider": "twilio", "baseline": {"per_hour": 240, "bounce_rate": 0.0},
                     "window": {"per_minute": 20}},
    "bullmq": {"enabled": True},
}
FAILED_SAMPLE = 500
REVIEW_FILE = "failed_jobs_review.csv"


@dataclass(frozen=True)
class Params(CommonParams):
    """Parameters of the High Retry Volume notebook (common ones first)."""

    queue: str = param("", "queue to act on: email, sms or whatsapp (empty: the one with most failed jobs)")
    retry_attempts: int = param(1, "attempts per job while retries are reduced (1-10)", declared="int")
    replay_batches: tuple[str, ...] = param(["1%", "10%", "50%", "100%"], "DLQ replay batches, cumulative share of the DLQ",
                                            declared="list")
    replay_max_failure_rate: float = param(0.2, "stop the replay when a batch fails more than this share",
                                           declared="float")

    @staticmethod
    def check_values(values: dict[str, Any]) -> list[tuple[str, str]]:
        problems = []
        if values["queue"] and values["queue"] not in SOURCE_QUEUES:
            problems.append(("queue", f"{values['queue']!r}; allowed: {', '.join(SOURCE_QUEUES)} (or empty)"))
        if not 1 <= int(values["retry_attempts"]) <= 10:
            problems.append(("retry_attempts", "must be between 1 and 10"))
        if not 0 < float(values["replay_max_failure_rate"]) <= 1:
            problems.append(("replay_max_failure_rate", "must be above 0 and at most 1"))
        try:
            fractions = _fractions(tuple(values["replay_batches"]))
            if fractions != sorted(fractions) or fractions[-1] != 1.0:
                problems.append(("replay_batches", "must grow and end at 100%, e.g. [1%, 10%, 50%, 100%]"))
        except ValueError as exc:
            problems.append(("replay_batches", str(exc)))
        return problems



@dataclass(frozen=True)
class BullState:
    """What check_queues read from BullMQ: where failures are, the DLQ, and which queues are paused."""

    busiest_failed_queue: str
    dlq_size: int
    failed_jobs: int
    paused: tuple[str, ...] = ()
    completed: dict[str, int] = field(default_factory=dict)
    """Completed jobs per source queue: how much of the traffic goes through."""
    failed: dict[str, int] = field(default_factory=dict)
    """Failed jobs per source queue."""

    def to_facts(self) -> dict[str, Any]:
        return {"busiest_failed_queue": self.busiest_failed_queue, "dlq_size": self.dlq_size,
                "failed_jobs": self.failed_jobs, "paused_queues": list(self.paused)}


@dataclass(frozen=True)
class ErrorGroup:
    """The window's failing and retrying messages of one error on one channel, per message: how many, at how many
    retry levels, how many retried again and again, and against the same error's count in the baseline."""

    channel: str
    error: str
    messages: int
    retry_levels: int
    repeat: int
    """Messages with this error retried `POISON_RETRIES` times or more."""
    max_retry: int
    retries: int
    """Retries these messages took (the sum of their retry_count)."""
    comparison: Comparison
    cls: str = "other"
    """The error's class by its channel's classifier (`errorcodes`)."""

    def poison(self, poison_max: float) -> bool:
        """A few specific messages failing every attempt: most of this error's messages were retried again and
        again, and there are few of them (the rest of the traffic behaves differently)."""
        return (self.repeat > 0 and self.repeat >= 0.5 * self.messages and self.messages <= poison_max
                and self.max_retry >= POISON_RETRIES)

    def describe(self) -> str:
        return (f"{self.messages:,} {self.channel} message(s) with {REDACTOR.text(self.error)[:120]!r} "
                f"({self.repeat:,} retried {POISON_RETRIES}+ times, up to {self.max_retry})")


@dataclass(frozen=True)
class RetryPatterns:
    """What check_retry_patterns found in message_logs, per message and per error: retries per first attempt against
    the baseline, each error's messages against its own baseline, and the few messages retried again and again."""

    retry_ratio: float = 0.0
    """Retries per first attempt in the window, poison messages left out."""
    baseline_retry_ratio: float = 0.0
    problems: Comparison | None = None
    """Failing, bounced and retrying messages in the window against the baseline."""
    groups: tuple[ErrorGroup, ...] = ()
    retried_messages: int = 0
    """Messages retried at least once, poison messages left out."""
    messages: int = 0

    @property
    def problems_elevated(self) -> bool:
        return self.problems is not None and self.problems.elevated

    @property
    def poison_max(self) -> float:
        """How many messages 'a few' can be in this window (`POISON_MAX_MESSAGES`, `POISON_MAX_SHARE`)."""
        return min(POISON_MAX_MESSAGES, max(POISON_MAX_SHARE * self.messages, 3))

    @property
    def poison_groups(self) -> list[ErrorGroup]:
        return [g for g in self.groups if g.poison(self.poison_max)]

    @property
    def sweeping(self) -> list[ErrorGroup]:
        """The errors that are not poison, most failures above baseline first."""
        return sorted((g for g in self.groups if not g.poison(self.poison_max)),
                      key=lambda g: (-g.comparison.excess, g.channel, g.error))

    @property
    def total_excess(self) -> float:
        return sum(g.comparison.excess for g in self.sweeping)

    def share(self, group: ErrorGroup) -> float:
        total = self.total_excess
        return group.comparison.excess / total if total else 0.0

    @property
    def top(self) -> ErrorGroup | None:
        found = self.sweeping
        return found[0] if found else None

    def to_facts(self) -> dict[str, Any]:
        top = self.top
        return {"retry_ratio": self.retry_ratio, "baseline_retry_ratio": self.baseline_retry_ratio,
                "problems_elevated": self.problems_elevated, "retried_messages": self.retried_messages,
                "top_error": REDACTOR.text(top.error) if top else "", "top_error_channel": top.channel if top else "",
                "top_error_share": round(self.share(top), 4) if top else 0.0,
                "top_error_retry_levels": top.retry_levels if top else 0,
                "poison_messages": sum(g.messages for g in self.poison_groups),
                "errors_risen": sum(1 for g in self.sweeping if g.comparison.rose)}


BULL_STATE: Key[BullState] = Key("bull_state", "check_queues", "the BullMQ queue counts")
RETRY_PATTERNS: Key[RetryPatterns] = Key("retry_patterns", "check_retry_patterns", "the retry patterns in message_logs")
QUEUE_ADMIN: Key[QueueAdmin] = Key("queue_admin", "a BullMQ check", "the run's BullMQ admin")
GROWTH_SAMPLES: Key[list[dict[str, Any]]] = Key("growth_samples", "check_queue_growth", "the sampled queue counts")
FAILED_JOBS: Key[list[dict[str, Any]]] = Key("failed_jobs", "check_failed_jobs", "the failed jobs read from BullMQ")
RETRY_DISTRIBUTION: Key[pd.DataFrame] = Key("retry_distribution", "check_retry_patterns",
                                            "messages by status and retry count")
REPEAT_OFFENDERS: Key[pd.DataFrame] = Key("repeat_offenders", "check_retry_patterns",
                                          "the messages retried five times or more")
REVIEW_WRITTEN: Key[str] = Key("failed_jobs_review", "review_failed_jobs", "the failed jobs' review list")
"""The review list's file name, once written into the run bundle."""

def _fractions(batches: tuple[str, ...]) -> list[float]:
    out = []
    for text in batches:
        value = str(text).strip().rstrip("%")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{text!r} is not a percentage; use e.g. 10%") from None
        if not 0 < number <= 100:
            raise ValueError(f"{text!r} must be between 0% and 100%")
        out.append(number / 100)
    if not out:
        raise ValueError("give at least one batch, e.g. [100%]")
    return out


def _params(ctx: RunContext) -> Params:
    assert isinstance(ctx.params, Params)
    return ctx.params


def needed(ctx: RunContext) -> list[Needed]:
    """`healthy` rests on Redis answering, every queue read from BullMQ (counts, growth over samples, failed
    jobs), the spec's metrics API and the retry pattern in message_logs."""
    since = f"NOW() - INTERVAL '{int(ctx.params.window_delta.total_seconds())} seconds'"
    return [
        Needed("redis", "Redis (BullMQ)", "redis-cli -u \"$RUNBOOK_REDIS_URL\" PING"),
        Needed("queues", "the BullMQ queues and the DLQ", "bull-board, or redis-cli: HGETALL bull:<queue>:meta; "
               "LLEN bull:<queue>:wait; ZCARD bull:<queue>:failed; LLEN bull:communication-dlq:wait"),
        Needed("queue_metrics_api", "the queues and the DLQ (Lineup metrics API)",
               f"curl -H 'Authorization: Bearer …' {ctx.profile.platform_api_url}/api/v1/system-metrics/queues"),
        Needed("queue_growth", "queue and DLQ growth over samples", "repeat the queue counts a few times a minute apart"),
        Needed("failed_jobs", "the failed jobs and their reasons", "bull-board → each queue → Failed"),
        Needed("retry_patterns", "the retry pattern in message_logs",
               f"SELECT status, retry_count, COUNT(*) FROM message_logs WHERE created_at > {since} "
               "GROUP BY status, retry_count ORDER BY retry_count DESC;"),
    ]


def time_needs(params: Params, slot: float) -> dict[str, float]:
    """Queue samples twice (growth, recovery: each at least 2, `recovery_interval` apart) and the DLQ replay's
    settling per batch."""
    samples = max(2, int(params.recovery_samples))
    interval = parse_duration(params.recovery_interval).total_seconds()
    return {f"2 × {samples} queue samples": 2 * ((samples - 1) * interval + samples * slot),
            f"DLQ replay, {len(params.replay_batches)} batches settling": len(params.replay_batches) * _settle(params)}


def _settle(params: Params) -> float:
    """How long a replay batch may take to settle (completed or failed)."""
    return max(10.0, parse_duration(params.recovery_interval).total_seconds() * 10)


def _admin(ctx: RunContext) -> QueueAdmin:
    """The run's BullMQ admin (raises ConfigError when no Redis URL is configured or set)."""
    if not ctx.evidence.has(QUEUE_ADMIN):
        ctx.evidence.put(QUEUE_ADMIN, QueueAdmin(ctx.profile.resolve_redis_url(), prefix=ctx.profile.bullmq_prefix,
                                                 timeout=ctx.profile.read_timeout,
                                                 total_timeout=ctx.profile.total_timeout, budget=ctx.budget))
    return ctx.evidence.get(QUEUE_ADMIN)


def _no_queues(ctx: RunContext, name: str, title: str, exc: Exception) -> CheckResult:
    """A queue check that could not read BullMQ (no Redis URL, Redis down or silent): could not check."""
    cls = "config" if isinstance(exc, ConfigError) else "redis"
    return ctx.record(CheckResult(name, title, "error", f"BullMQ could not be read: {exc}", classification=cls))


# -- Symptoms / Checks: queues ----------------------------------------------------------------------
def check_redis_health(ctx: RunContext) -> CheckResult:
    """PING the BullMQ Redis with short timeouts (fails fast instead of hanging in a reconnect loop)."""
    try:
        admin = _admin(ctx)
    except ConfigError as exc:
        return ctx.record(CheckResult("redis", "Redis (BullMQ)", "error", str(exc), classification="config"))
    return ctx.record(check_redis(admin.url, timeout=min(ctx.profile.connect_timeout, 3.0), within=admin.dependency))


def check_queues(ctx: RunContext) -> CheckResult:
    """Every queue from BullMQ directly and from the Lineup metrics API, side by side."""
    name, title = "queues", "Queues: BullMQ and the metrics API"
    with timed() as ms:
        api, api_error = _metrics_api(ctx)  # the spec's check, read whether or not Redis answers
        try:
            bull = {q: _admin(ctx).counts(q) for q in QUEUES}
        except (QueueError, ConfigError) as exc:
            return _no_queues(ctx, name, title, exc)
    rows = []
    for q in QUEUES:
        c, a = bull[q], api.get(q, {})
        rows.append({"queue": q, "paused": c["paused"], "waiting": c["waiting"] + c["prioritized"], "active": c["active"],
                     "delayed": c["delayed"], "failed": c["failed"], "completed": c["completed"],
                     "api_waiting": a.get("waiting"), "api_failed": a.get("failed")})
    frame = pd.DataFrame(rows)
    _measure_queues(ctx, bull, basis="BullMQ")
    source = frame[frame["queue"] != DLQ]
    busiest = str(source.sort_values("failed", ascending=False).iloc[0]["queue"])
    paused = [q for q in QUEUES if bull[q]["paused"]]
    ctx.evidence.put(BULL_STATE, BullState(busiest, int(bull[DLQ]["backlog"]), int(source["failed"].sum()),
                                           tuple(q for q in paused if q != DLQ),
                                           {q: int(bull[q]["completed"]) for q in SOURCE_QUEUES},
                                           {q: int(bull[q]["failed"]) for q in SOURCE_QUEUES}))
    summary = (f"{int(source['waiting'].sum()):,} waiting, {int(source['active'].sum()):,} active, "
               f"{int(source['failed'].sum()):,} failed; DLQ {bull[DLQ]['backlog']:,}"
               + (f"; PAUSED: {', '.join(paused)}" if paused else "") + (f"; metrics API: {api_error}" if api_error else ""))
    status = "warn" if paused or int(source["failed"].sum()) >= QUEUE_FAILED_WARN or api_error else "ok"
    return ctx.record(CheckResult(name, title, status, summary, table=frame, duration_ms=ms(),
                                  classification="paused" if paused else None,
                                  facts={"dlq": bull[DLQ]["backlog"], "paused": paused}))


def _metrics_api(ctx: RunContext) -> tuple[dict[str, dict[str, Any]], str]:
    """The spec's check, `GET /api/v1/system-metrics/queues`, kept as its own finding: (queues by name, error)."""
    name, title = "queue_metrics_api", "Queues (Lineup metrics API)"
    try:
        api = {q["queue"]: q for q in ctx.api.queue_metrics()}
    except (PlatformAPIError, ConfigError) as exc:
        ctx.record(CheckResult(name, title, "error", f"the queue metrics could not be read: {exc}",
                               classification="config" if isinstance(exc, ConfigError) else "platform_api"))
        return {}, str(exc)
    missing = [q for q in QUEUES if q not in api]
    if missing:
        ctx.record(CheckResult(name, title, "error", f"the metrics API does not list {', '.join(missing)}",
                               classification="platform_api"))
        return api, f"does not list {', '.join(missing)}"
    dlq = api[DLQ]
    ctx.record(CheckResult(name, title, "ok", f"{len(api)} queues listed; DLQ {int(dlq.get('waiting', 0) or 0):,} waiting",
                           facts={"queues": sorted(api)}))
    return api, ""


def _measure_queues(ctx: RunContext, counts: dict[str, dict[str, Any]], *, basis: str) -> None:
    at = datetime.now(UTC)
    for q in QUEUES:
        if q == DLQ:
            ctx.measure("dlq_size", counts[q]["backlog"], scope=DLQ, basis=basis, at=at)
        else:
            ctx.measure("queue_depth", counts[q]["backlog"], scope=q, basis=basis, at=at)


def _sample(ctx: RunContext) -> tuple[list[dict[str, dict[str, Any]]], float]:
    """Counts of every queue, `recovery_samples` times (at least 2), `recovery_interval` apart.

    Raises QueueError (Redis down or silent) or ConfigError (no Redis URL)."""
    p = _params(ctx)
    interval = parse_duration(p.recovery_interval).total_seconds()
    samples: list[dict[str, dict[str, Any]]] = []
    for i in range(max(2, p.recovery_samples)):
        if i:
            time.sleep(interval)
        samples.append({q: _admin(ctx).counts(q) for q in QUEUES})
        _measure_queues(ctx, samples[-1], basis="sample")
    return samples, interval


def check_queue_growth(ctx: RunContext) -> CheckResult:
    """Sample every queue a few times: is a backlog growing with nothing active? is the DLQ growing?"""
    name, title = "queue_growth", "Queue and DLQ growth over samples"
    try:
        samples, interval = _sample(ctx)
    except (QueueError, ConfigError) as exc:
        return _no_queues(ctx, name, title, exc)
    ctx.evidence.put(GROWTH_SAMPLES, samples)
    first, last = samples[0], samples[-1]
    # stalled: nothing completes while jobs wait — the backlog grows (no worker, or workers hung on their jobs), or
    # jobs sit waiting with nothing active at all (no worker on a quiet queue)
    stalled = [q for q in SOURCE_QUEUES if not last[q]["paused"] and last[q]["completed"] <= first[q]["completed"]
               and (last[q]["backlog"] > first[q]["backlog"]
                    or (last[q]["waiting"] > 0 and all(s[q]["active"] == 0 for s in samples)))]
    dlq_growth = last[DLQ]["backlog"] - first[DLQ]["backlog"]
    ctx.facts.update(stalled_queues=",".join(stalled), dlq_growth=dlq_growth)
    facts = {"samples": len(samples), "interval_seconds": interval, "stalled": stalled, "dlq_growth": dlq_growth,
             "backlog": {q: [s[q]["backlog"] for s in samples] for q in QUEUES}}
    if stalled:
        moves = ", ".join(f"{q} {first[q]['backlog']} → {last[q]['backlog']} ({last[q]['active']} active)"
                          for q in stalled)
        return ctx.record(CheckResult(name, title, "fail", f"jobs waiting and nothing completing: {moves}",
                                      classification="stalled", facts=facts))
    if dlq_growth > 0:
        return ctx.record(CheckResult(name, title, "fail", f"DLQ grew by {dlq_growth:,} in {len(samples)} samples",
                                      classification="dlq_growing", facts=facts))
    return ctx.record(CheckResult(name, title, "ok", "no queue growing with nothing active; DLQ steady", facts=facts))


def plot_queue_growth(ctx: RunContext) -> Figure:
    title = "Backlog (waiting + delayed) per sample"
    if (first := not_run(ctx, "queue_growth", "check_queue_growth", title)) is not None:
        return first
    samples = ctx.evidence.find(GROWTH_SAMPLES) or []
    return charts.plot_series({q: [s[q]["backlog"] for s in samples] for q in QUEUES},
                              title=title, xlabel="sample", ylabel="jobs")


def check_failed_jobs(ctx: RunContext) -> CheckResult:
    """Failed jobs grouped by failedReason, with attempts made and age; a capped sample is kept."""
    name, title = "failed_jobs", "Failed jobs by reason"
    now_ms = datetime.now(UTC).timestamp() * 1000
    records = []
    try:
        for q in SOURCE_QUEUES:
            for job in _admin(ctx).jobs(q, ["failed"], limit=FAILED_SAMPLE):
                records.append({"queue": q, **job, "exhausted": job["attemptsMade"] >= job["attempts"],
                                "age_minutes": round((now_ms - (job["finishedOn"] or now_ms)) / 60000, 1),
                                "message_id": str((job["data"] or {}).get("message_id", ""))})
    except (QueueError, ConfigError) as exc:
        return _no_queues(ctx, name, title, exc)
    ctx.evidence.put(FAILED_JOBS, records)
    if not records:
        return ctx.record(CheckResult(name, title, "ok", "no failed jobs"))
    frame = pd.DataFrame(records)
    grouped = (frame.groupby(["queue", "failedReason"])
               .agg(jobs=("id", "count"), exhausted=("exhausted", "sum"), max_attempts=("attemptsMade", "max"),
                    oldest_minutes=("age_minutes", "max"))
               .reset_index().sort_values("jobs", ascending=False))
    repeated = frame[frame["message_id"] != ""].groupby("message_id")["id"].count()
    facts = {"failed_sampled": len(records), "reasons": len(grouped), "exhausted": int(frame["exhausted"].sum()),
             "messages_failing_in_several_jobs": int((repeated > 1).sum())}
    ctx.facts.update(failed_reasons=len(grouped), exhausted_jobs=facts["exhausted"])
    top = grouped.iloc[0]
    summary = (f"{len(records):,} failed jobs (sampled), {len(grouped)} distinct reasons; most: {top['jobs']:,} × "
               f"{top['failedReason']} ({top['queue']})")
    return ctx.record(CheckResult(name, title, "warn", summary, facts=facts, table=grouped.head(15)))


# -- Checks: message_logs ---------------------------------------------------------------------------
def check_retry_patterns(ctx: RunContext) -> CheckResult:
    """The spec's query (status × retry_count); per error, its messages against its own baseline and how often they
    were retried; retries per first attempt against the baseline."""
    name, title = "retry_patterns", "Retry patterns in message_logs"
    window = {"since": ctx.since, "until": ctx.until}
    before = {"since": ctx.baseline_since, "until": ctx.since}
    try:
        dist = ctx.db.fetch(queries.retry_distribution(), window)
        errors = ctx.db.fetch(queries.errors_by_retry(), window)
        base_errors = ctx.db.fetch(queries.errors_by_retry(), before)
        now = ctx.db.one(queries.retry_volume(), window)
        base = ctx.db.one(queries.retry_volume(), before)
        offenders = ctx.db.fetch(queries.repeat_offenders(POISON_RETRIES), {**window, "limit": 50})
    except (QueryError, ConfigError) as exc:
        return db_error(ctx, name, title, exc)
    ctx.evidence.put(RETRY_DISTRIBUTION, dist)
    strange = sorted({str(x) for x in dist["status"]} - set(STATUSES)) if not dist.empty else []
    if strange:  # failing and retrying are counted by status: statuses it does not know may hide them
        return ctx.record(CheckResult(name, title, "error", f"message_logs holds statuses this runbook does not know: "
                                      f"{', '.join(map(repr, strange))[:300]}; retries and failures are counted by "
                                      f"{', '.join(STATUSES)}, so the pattern cannot be trusted",
                                      classification="unknown_status", table=dist))
    messages, base_messages = int(now.get("messages") or 0), int(base.get("messages") or 0)
    groups = _groups(errors, base_errors, messages, base_messages)
    draft = RetryPatterns(groups=groups, messages=messages)
    poison = draft.poison_groups
    poison_retries = sum(g.retries for g in poison)
    poison_messages = sum(g.messages for g in poison)
    retried = int(dist[dist["retry_count"] > 0]["count"].sum()) if not dist.empty else 0
    first = int(now.get("first_attempts") or 0)
    ratio_now = max(int(now.get("retries") or 0) - poison_retries, 0) / max(first, 1)
    ratio_base = int(base.get("retries") or 0) / max(int(base.get("first_attempts") or 0), 1)
    problems = compare("failing or retrying messages (every channel)", int(now.get("problems") or 0), messages,
                       int(base.get("problems") or 0), base_messages)
    patterns = RetryPatterns(retry_ratio=ratio_now, baseline_retry_ratio=ratio_base, problems=problems, groups=groups,
                             retried_messages=max(retried - poison_messages, 0), messages=messages)
    ctx.evidence.put(RETRY_PATTERNS, patterns)
    ctx.evidence.put(REPEAT_OFFENDERS, offenders)
    ctx.measure("retry_ratio", ratio_now, scope="all channels", basis=f"last {ctx.params.window}", at=ctx.until)
    top = patterns.top
    facts = {"retries_per_first_attempt": round(ratio_now, 3), "baseline": round(ratio_base, 3),
             "failing_share": round(problems.rate, 4), "baseline_failing_share": round(problems.baseline_rate, 4),
             "failing_or_retrying": problems.failed, "problems_test": problems.verdict,
             "top_error_share": round(patterns.share(top), 3) if top else 0.0,
             "errors_risen": sum(1 for g in patterns.sweeping if g.comparison.rose),
             "poison_messages": poison_messages, "messages_retried_5_plus": len(offenders)}
    summary = (f"{ratio_now:.2f} retries per first attempt (baseline {ratio_base:.2f}); {problems.failed:,} failing or "
               f"retrying ({problems.verdict})" + (f"; top error {patterns.share(top):.0%} of the rise: "
                                                   f"{REDACTOR.text(top.error)[:120]}" if top and top.comparison.rose else "")
               + (f"; poison: {'; '.join(g.describe() for g in poison)}" if poison else ""))
    status = "warn" if ratio_now > max(2 * ratio_base, 0.1) or poison or problems.elevated else "ok"
    return ctx.record(CheckResult(name, title, status, summary, facts=facts, table=dist))


def _classify(channel: str, error: str, code: str | None) -> str:
    try:
        return channels.get(channel).classify(error, code)
    except KeyError:  # a channel this version does not know
        return "other"


def _groups(errors: pd.DataFrame, base_errors: pd.DataFrame, messages: int, base_messages: int) -> tuple[ErrorGroup, ...]:
    """Per (channel, error): the window's messages by retry level, against the same error in the baseline."""
    if errors.empty:
        return ()
    base = base_errors.groupby(["channel", "error"])["count"].sum() if not base_errors.empty else pd.Series(dtype=int)
    out = []
    for (channel, error), frame in errors.groupby(["channel", "error"]):
        count = int(frame["count"].sum())
        repeat = int(frame[frame["retry_count"] >= POISON_RETRIES]["count"].sum())
        retries = int((frame["retry_count"] * frame["count"]).sum())
        before = int(base.get((channel, error), 0))
        codes = [c for c in frame["error_code"] if isinstance(c, str) and c]
        out.append(ErrorGroup(str(channel), str(error), count, int(frame["retry_count"].nunique()), repeat,
                              int(frame["retry_count"].max()), retries,
                              compare(f"{channel} error {str(error)[:80]}", count, messages, before, base_messages,
                                      min_failures=MIN_CLASS_FAILURES),
                              _classify(str(channel), str(error), codes[0] if codes else None)))
    return tuple(sorted(out, key=lambda g: (-g.messages, g.channel, g.error)))


def plot_retry_heatmap(ctx: RunContext) -> Figure:
    """Messages by status × retry_count (the spec's query) as a heat map."""
    title = f"Messages by status and retry count (last {ctx.params.window})"
    if (first := not_run(ctx, "retry_patterns", "check_retry_patterns", title)) is not None:
        return first
    dist = ctx.evidence.find(RETRY_DISTRIBUTION)
    return charts.plot_heatmap(dist if dist is not None else pd.DataFrame(columns=["status", "retry_count", "count"]),
                               rows="status", columns="retry_count", xlabel="retry_count", title=title)


# -- Diagnosis --------------------------------------------------------------------------------------
def _channel_runbook(channel: str) -> str:
    """The runbook that declares `channel` (EMAIL, SMS, WHATSAPP) as its only one; the channel if none does."""
    from runbooklib import catalog

    return next((r.slug for r in catalog.all_runbooks() if r.channels == (channel.lower(),)), channel)


def _growth_rule(ctx: RunContext, classification: str, lead: str) -> Match | None:
    f = finding(ctx, "queue_growth")
    if f is not None and f.classification == classification:
        return Match(f"{lead}: {f.summary}", [f"{f.title}: {f.summary}"] + _evidence(ctx, "queues", "failed_jobs"))
    return None


def _patterns(ctx: RunContext) -> RetryPatterns:
    """What check_retry_patterns found; with nothing found, figures that make no rule hold."""
    return ctx.evidence.find(RETRY_PATTERNS) or RetryPatterns()


def _evidence(ctx: RunContext, *names: str) -> list[str]:
    return [f"{f.title}: {f.summary}" for f in (finding(ctx, n) for n in names) if f is not None]


def _poison_job_groups(ctx: RunContext) -> dict[tuple[str, str], list[str]]:
    """A few failed jobs that exhausted their attempts with the same reason, one a retry never fixes (a crash on the
    payload, a permanent provider error), while the rest of their queue behaves differently (goes through, or fails
    for another reason): (queue, reason) → job ids."""
    bull = ctx.evidence.find(BULL_STATE)
    groups: dict[tuple[str, str], list[str]] = {}
    recent = ctx.params.window_delta.total_seconds() / 60
    for job in ctx.evidence.find(FAILED_JOBS) or []:
        reason = str(job.get("failedReason") or "")
        if (job["exhausted"] and float(job.get("age_minutes") or 0) <= recent
                and category_of(reason, job["queue"])[1] in ("unknown", PERMANENT, CONSENT)):
            groups.setdefault((job["queue"], reason), []).append(job["id"])
    jobs = {q: (bull.completed.get(q, 0) + bull.failed.get(q, 0)) if bull is not None else 0 for q in SOURCE_QUEUES}
    return {k: ids for k, ids in groups.items()
            if len(ids) <= min(POISON_MAX_MESSAGES, POISON_MAX_SHARE * jobs.get(k[0], 0))}


def _poison(ctx: RunContext) -> Match | None:
    """A few specific messages fail at every attempt while the rest of the traffic behaves differently: per message in
    message_logs (an error's messages are few, most retried again and again), or per job in BullMQ (a few jobs
    exhausted by a crash on their payload while their queue's other jobs complete)."""
    groups = _patterns(ctx).poison_groups
    jobs = _poison_job_groups(ctx)
    if not groups and not jobs:
        return None
    parts = [g.describe() for g in groups]
    parts += [f"{len(ids)} {queue} job(s) exhausted by {REDACTOR.text(reason)[:120]!r}" for (queue, reason), ids in jobs.items()
              if not any(g.error and (g.error in reason or reason in g.error) for g in groups)]
    return Match("a few messages fail at every attempt while the rest go through: " + "; ".join(parts),
                 _evidence(ctx, "retry_patterns", "failed_jobs"))


def _systemic(ctx: RunContext) -> Match | None:
    """One error carries most of the failures above baseline, at every retry level."""
    p = _patterns(ctx)
    top = p.top
    if top is None or not p.problems_elevated or not top.comparison.rose:
        return None
    share = p.share(top)
    if top.cls in RATE_LIMIT_CLASSES and _amplification(ctx) is not None:
        return None  # a rate limit fed by retries without backoff: the retry loop is the problem, not the provider
    if class_category(top.channel, top.cls) in (PERMANENT, CONSENT):
        return None  # filtered content, invalid numbers, STOP replies: the messages, not the provider
    if share >= SYSTEMIC_SHARE and top.retry_levels >= 2:
        return Match(f"one error carries {share:.0%} of the failures above baseline at {top.retry_levels} retry levels "
                     f"({REDACTOR.text(top.error)[:120]}) — run the {_channel_runbook(top.channel)} runbook",
                     [top.comparison.line(), *_evidence(ctx, "retry_patterns", "failed_jobs")])
    return None


def _amplification(ctx: RunContext) -> Match | None:
    """Retries outnumber new sends, well above the baseline, across many messages (not a handful of poison ones)."""
    p = _patterns(ctx)
    now, base = p.retry_ratio, p.baseline_retry_ratio
    if now >= max(AMPLIFICATION_GROWTH * base, AMPLIFICATION_RATIO) and p.retried_messages >= AMPLIFIED_MESSAGES:
        top = p.top
        fed = (f"; the retries are feeding a rate limit ({REDACTOR.text(top.error)[:100]})"
               if top is not None and top.cls in RATE_LIMIT_CLASSES and top.comparison.rose else "")
        return Match(f"{now:.2f} retries per first attempt against {base:.2f} at baseline, across "
                     f"{p.retried_messages:,} retried messages{fed}", _evidence(ctx, "retry_patterns"))
    return None


def _multiple(ctx: RunContext) -> Match | None:
    """Several different errors rose above their baseline, each a real share of the failures above baseline."""
    p = _patterns(ctx)
    risen = [g for g in p.sweeping if g.comparison.rose and p.share(g) >= MULTIPLE_SHARE]
    if len(risen) >= MULTIPLE_ERRORS and p.problems_elevated:
        return Match(f"{len(risen)} different errors each carry {MULTIPLE_SHARE:.0%}+ of the failures above baseline: "
                     + "; ".join(f"{REDACTOR.text(g.error)[:60]} ({g.channel}, {p.share(g):.0%})" for g in risen[:5]),
                     [g.comparison.line() for g in risen[:5]] + _evidence(ctx, "failed_jobs"))
    return None


def _paused(ctx: RunContext) -> Match | None:
    bull = ctx.evidence.find(BULL_STATE)
    if bull is None or not bull.paused:
        return None
    return Match(f"{', '.join(bull.paused)} {'is' if len(bull.paused) == 1 else 'are'} paused: their jobs wait and "
                 "nothing is sent", _evidence(ctx, "queues", "queue_growth"))


def _figures(ctx: RunContext) -> list[dict[str, Any]]:
    p = ctx.evidence.find(RETRY_PATTERNS)
    if p is None:
        return []
    out = [p.problems.to_json()] if p.problems is not None else []
    return out + [g.comparison.to_json() | {"what": f"{g.channel}: {REDACTOR.text(g.error)[:80]}"}
                  for g in p.sweeping[:5] if g.comparison.rose]


def diagnose_retries(ctx: RunContext) -> Diagnosis:
    """Name the pattern; others that also hold are listed (a few poison messages inside a systemic failure too)."""
    rules = [
        Rule("queue_stalled", lambda: _growth_rule(ctx, "stalled", "a queue is stalled")),
        Rule("systemic_provider_failure", lambda: _systemic(ctx)),
        Rule("multiple_root_causes", lambda: _multiple(ctx)),
        Rule("retry_amplification", lambda: _amplification(ctx)),
        Rule("queue_paused", lambda: _paused(ctx)),
        Rule("poison_messages", lambda: _poison(ctx)),
        Rule("dlq_growing", lambda: _growth_rule(ctx, "dlq_growing", "the DLQ keeps growing")),
    ]
    p = _patterns(ctx)
    growth = finding(ctx, "queue_growth")
    present = (p.problems_elevated or _amplification(ctx) is not None or _poison(ctx) is not None
               or (growth is not None and growth.status == "fail"))
    result = diagnose(SLUG, rules, CAUSES, incident_present=present,
                      incident_evidence=_evidence(ctx, "retry_patterns", "queues"), needed=needed(ctx),
                      findings=ctx.findings, figures=_figures(ctx))
    ctx.diagnosis = result
    ctx.write_summary()
    return result


# -- Mitigation -------------------------------------------------------------------------------------
def _target_queue(ctx: RunContext) -> str:
    """The queue to act on: the one given, else the channel of the error the retries are about, else the one with
    the most failed jobs."""
    if _params(ctx).queue:
        return _params(ctx).queue
    top = _patterns(ctx).top
    if top is not None and top.comparison.rose and top.channel.lower() in SOURCE_QUEUES:
        return top.channel.lower()
    bull = ctx.evidence.find(BULL_STATE)
    return bull.busiest_failed_queue if bull else "sms"


class PauseQueue(Action):
    """Pause a queue (BullMQ meta flag; jobs stay waiting, active ones finish); undo resumes it."""

    name = "pause_queue"
    title = "Pause the queue"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.queue = _target_queue(ctx)

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is None or d.cause not in MITIGATES[self.name]:
            return False, f"diagnosis is {d.cause if d else 'not made'}: the retry loop is not amplifying a problem"
        return True, f"{d.cause}: stop the retry loop on {self.queue} until the root cause is fixed"

    def plan(self) -> Plan:
        if _admin(self.ctx).is_paused(self.queue):
            return Plan(self.name, f"pause {self.queue}", blocked=f"{self.queue} is already paused")
        counts = _admin(self.ctx).counts(self.queue)
        return Plan(self.name, f"pause {self.queue} ({counts['backlog']:,} waiting jobs stay queued; "
                               f"{counts['active']:,} active finish)",
                    steps=[{"bullmq": "pause", "queue": self.queue, "from": "running", "to": "paused"}])

    def resources(self, plan: Plan) -> list[str]:
        return [f"queue:{self.queue}"]

    def verify_by_hand(self, plan: Plan) -> str:
        return f"whether {self.queue} is paused (BullMQ meta key bull:{self.queue}:meta, field paused)"

    def apply(self, plan: Plan) -> dict[str, Any]:
        _admin(self.ctx).pause(self.queue)
        return {"paused": self.queue}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        ok = _admin(self.ctx).is_paused(self.queue)
        return ok, f"{self.queue} is {'paused' if ok else 'NOT paused'} (meta flag)"

    @property
    def can_undo(self) -> bool:
        return True

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        _admin(self.ctx).resume(self.queue)
        if _admin(self.ctx).is_paused(self.queue):
            raise MitigationFailed(f"{self.queue} is still paused")
        return {"resumed": self.queue}


def pause_queue(ctx: RunContext) -> PauseQueue:
    return PauseQueue(ctx)


class ReduceRetryAttempts(Action):
    """Temporarily give new jobs fewer attempts (platform queue config, assumed endpoint); undo restores."""

    name = "reduce_retry_attempts"
    title = "Reduce retry attempts"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.queue = _target_queue(ctx)

    def needed(self) -> tuple[bool, str]:
        return PauseQueue(self.ctx).needed()

    def plan(self) -> Plan:
        current = int(self.ctx.api.queue_config(self.queue)["attempts"])
        wanted = _params(self.ctx).retry_attempts
        if current <= wanted:
            return Plan(self.name, self.title, blocked=f"{self.queue} already gives {current} attempts (≤ {wanted})")
        return Plan(self.name, f"{self.queue}: {current} → {wanted} attempts for new jobs",
                    steps=[{"call": f"PATCH /api/v1/communication/queues/{self.queue}", "queue": self.queue,
                            "from": current, "to": wanted}])

    def resources(self, plan: Plan) -> list[str]:
        return [f"queue:{self.queue}:config"]

    def verify_by_hand(self, plan: Plan) -> str:
        step = plan.steps[0]
        return f"the attempts of {self.queue} (GET /api/v1/communication/queues/{self.queue}): {step['from']} or {step['to']}"

    def apply(self, plan: Plan) -> dict[str, Any]:
        try:
            self.ctx.api.set_queue_attempts(self.queue, plan.steps[0]["to"])
        except PlatformAPIError as exc:
            raise MitigationFailed(str(exc)) from exc
        return {"attempts": plan.steps[0]["to"]}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        now = int(self.ctx.api.queue_config(self.queue)["attempts"])
        return now == plan.steps[0]["to"], f"{self.queue} now gives {now} attempts"

    @property
    def can_undo(self) -> bool:
        return True

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        self.ctx.api.set_queue_attempts(self.queue, plan.steps[0]["from"])
        return {"attempts": plan.steps[0]["from"]}


def reduce_retry_attempts(ctx: RunContext) -> ReduceRetryAttempts:
    return ReduceRetryAttempts(ctx)


def _poison_jobs(ctx: RunContext) -> dict[str, list[str]]:
    """The failed jobs of the poison messages, by queue: jobs whose message is one of the messages retried again and
    again, or whose failure reason is a poison error. Never any other failed job."""
    poison = _patterns(ctx).poison_groups
    offenders = ctx.evidence.find(REPEAT_OFFENDERS)
    errors = {g.error for g in poison} | {reason for _, reason in _poison_job_groups(ctx)}
    messages = ({str(m) for m, e in zip(offenders["id"], offenders["error"], strict=True) if e in errors}
                if offenders is not None and not offenders.empty else set())
    out: dict[str, list[str]] = {}
    for job in ctx.evidence.find(FAILED_JOBS) or []:
        reason = str(job.get("failedReason") or "")
        if job["message_id"] in messages or any(e and (e in reason or reason in e) for e in errors if reason):
            out.setdefault(job["queue"], []).append(job["id"])
    return out


class MovePoisonToDlq(Action):
    """Move poison jobs to communication-dlq: DLQ copy first, read back, then remove (crash-safe)."""

    name = "move_poison_to_dlq"
    title = "Move poison jobs to the DLQ"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if not holding(self.ctx, MITIGATES[self.name]):
            return False, f"diagnosis is {d.cause if d else 'not made'}: no poison messages to set aside"
        return True, "poison jobs fail at every attempt and keep the retry loop busy"

    def plan(self) -> Plan:
        jobs = _poison_jobs(self.ctx)
        if not jobs:
            return Plan(self.name, self.title, blocked="no failed job of the poison messages was found (by message id "
                                                       "or failure reason)")
        steps = [{"bullmq": "move_to_dlq", "queue": q, "jobs": len(ids), "job_ids": sorted(ids)} for q, ids in jobs.items()]
        return Plan(self.name, f"move {sum(len(v) for v in jobs.values())} poison jobs to {DLQ}", steps=steps)

    def resources(self, plan: Plan) -> list[str]:
        return [f"queue:{s['queue']}" for s in plan.steps] + [f"queue:{DLQ}"]

    def verify_by_hand(self, plan: Plan) -> str:
        return (f"for each planned job id (summary.json), that it is in {DLQ} (data.sourceJobId) or still in its queue "
                "— a crash-safe move never leaves it in neither; a re-run finishes a half-done move")

    def apply(self, plan: Plan) -> dict[str, Any]:
        reports = {s["queue"]: _admin(self.ctx).move_to_dlq(s["queue"], s["job_ids"]).to_json() for s in plan.steps}
        return {"by_queue": reports}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        in_dlq = {j["data"].get("sourceJobId") for j in _admin(self.ctx).dlq_jobs()}
        left = [(s["queue"], i) for s in plan.steps for i in s["job_ids"] if _admin(self.ctx).job(s["queue"], i)]
        missing = [i for s in plan.steps for i in s["job_ids"] if i not in in_dlq]
        if left or missing:
            return False, f"{len(left)} jobs still in their queue, {len(missing)} not in the DLQ"
        return True, f"{sum(len(s['job_ids']) for s in plan.steps)} jobs are in the DLQ and gone from their queues"


def move_poison_to_dlq(ctx: RunContext) -> MovePoisonToDlq:
    return MovePoisonToDlq(ctx)


def _message_id(dlq_job: dict[str, Any]) -> str:
    data = dlq_job.get("data")
    inner = data.get("data") if isinstance(data, dict) else None
    return str(inner.get("message_id", "")) if isinstance(inner, dict) else ""


class ReplayDlq(Action):
    """Replay the DLQ in growing batches; stop on failures; skip messages already delivered."""

    name = "replay_dlq"
    title = "Replay the DLQ at a controlled rate"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def needed(self) -> tuple[bool, str]:
        bull = self.ctx.evidence.find(BULL_STATE)
        size = bull.dlq_size if bull else 0
        d = self.ctx.diagnosis
        if not size:
            return False, "the DLQ is empty"
        if d is None or d.cause != "healthy":
            return False, f"diagnosis is {d.cause if d else 'not made'}: address the root cause before replaying"
        return True, f"{size:,} jobs wait in the DLQ and the system is healthy again"

    def _delivered(self, jobs: list[dict[str, Any]]) -> set[str]:
        ids = [_message_id(j) for j in jobs]
        ids = [i for i in ids if i]
        if not ids:
            return set()
        frame = self.ctx.db.fetch(queries.delivered_ids(), {"ids": ids})
        return set(map(str, frame["id"])) if not frame.empty else set()

    def plan(self) -> Plan:
        """Every DLQ job of this window whose failure was transient (a provider or carrier hiccup, a rate limit: gone
        now that the system is healthy) is replayed; a job whose failure was permanent, that names no known provider
        error (a poison payload), or that arrived before the window (stale: an old reminder may do harm) stays in the
        DLQ for review."""
        jobs = _admin(self.ctx).dlq_jobs()
        delivered = self._delivered(jobs)
        p = _params(self.ctx)
        since_ms = self.ctx.since.timestamp() * 1000
        stale = sorted(j["id"] for j in jobs if float(j.get("timestamp") or 0) < since_ms)
        skip = sorted(j["id"] for j in jobs if _message_id(j) in delivered and j["id"] not in set(stale))
        review = sorted(j["id"] for j in jobs
                        if j["id"] not in set(skip) | set(stale) and not _replayable(j)) + stale
        replay = [j["id"] for j in jobs if j["id"] not in set(skip) | set(review)]
        by_id = {j["id"]: j for j in jobs}
        if not replay and not skip:
            return Plan(self.name, "nothing to replay", details={"left_for_review": review, "older_than_window": stale},
                        blocked=(f"no DLQ job of this window to replay: {len(stale):,} arrived before it (stale: review "
                                 "them, or widen the window to replay them), "
                                 f"{len(review) - len(stale):,} failed for a reason a replay does not fix"))
        targets = sorted({str((by_id[i]["data"] or {}).get("sourceQueue")) for i in replay})
        payloads = hashlib.sha256(canonical([[i, by_id[i]["name"], by_id[i]["data"]] for i in replay + skip]).encode())
        return Plan(self.name, f"replay {len(replay):,} DLQ jobs (listed by id) in batches {', '.join(p.replay_batches)}; "
                               f"remove {len(skip):,} whose message is already delivered"
                               + (f"; leave {len(review):,} for review (permanent or unknown failures, or older than "
                                  "the window)" if review else ""),
                    details={"left_for_review": review, "older_than_window": stale},
                    steps=[{"bullmq": "replay", "dlq": DLQ, "job_ids": replay, "jobs": len(replay), "to_queues": targets,
                            "payloads_sha256": payloads.hexdigest(),  # names, data and source of every listed job
                            "remove_delivered_ids": skip, "batches": list(p.replay_batches),
                            "stop_above_failure_rate": p.replay_max_failure_rate}])

    def resources(self, plan: Plan) -> list[str]:
        return [f"queue:{DLQ}"] + [f"queue:{q}" for q in plan.steps[0]["to_queues"]]

    def verify_by_hand(self, plan: Plan) -> str:
        return (f"for each planned DLQ job id (summary.json): still in {DLQ}, or replayed as replay-<id> in its source "
                "queue; a re-run replays only the ones still in the DLQ")

    def apply(self, plan: Plan) -> dict[str, Any]:
        p = _params(self.ctx)
        started = datetime.now(UTC)
        step = plan.steps[0]
        skip = set(step["remove_delivered_ids"])
        report = _admin(self.ctx).replay(
            batches=_fractions(tuple(p.replay_batches)), max_failure_rate=p.replay_max_failure_rate,
            delivered=lambda job: job["id"] in skip, settle_seconds=_settle(p),
            job_ids=list(step["job_ids"]) + sorted(skip))
        self.ctx.evidence.put(MITIGATED_AT, started)
        return report.to_json()

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        if result.get("stopped"):
            return False, str(result["stopped"])
        return True, f"replayed {result['replayed']:,}, skipped {result['skipped_delivered']:,} delivered"


def _replayable(dlq_job: dict[str, Any]) -> bool:
    """Whether a DLQ job failed for a transient, known reason (its provider's code or the email patterns say so)."""
    found = dlq_job.get("data")
    data: dict[str, Any] = found if isinstance(found, dict) else {}
    cls, category = category_of(str(data.get("failedReason") or ""), str(data.get("sourceQueue") or ""))
    return category == TRANSIENT and cls != "other"


def replay_dlq(ctx: RunContext) -> ReplayDlq:
    return ReplayDlq(ctx)


def review_failed_jobs(ctx: RunContext) -> CheckResult:
    """Write the failed jobs (reason, attempts, message id) to the run bundle before anything is cleaned."""
    name, title = "failed_jobs_review", "Failed jobs: review list"
    if not passed(ctx, "failed_jobs"):
        return ctx.record(CheckResult(name, title, "error", "the failed jobs could not be read in this run: no review "
                                      "list was written (and nothing can be cleaned)", classification="redis"))
    jobs = ctx.evidence.find(FAILED_JOBS) or []
    with (ctx.run_dir / REVIEW_FILE).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["queue", "job_id", "name", "message_id", "failed_reason", "attempts_made", "attempts",
                         "age_minutes"])
        for j in jobs:
            writer.writerow([j["queue"], j["id"], j["name"], j["message_id"], j["failedReason"], j["attemptsMade"],
                             j["attempts"], j["age_minutes"]])
    ctx.evidence.put(REVIEW_WRITTEN, REVIEW_FILE)
    ctx.extra["failed_jobs_review"] = {"file": REVIEW_FILE, "jobs": len(jobs)}
    ctx.write_summary()
    return ctx.record(CheckResult(name, title, "ok" if not jobs else "warn",
                                  f"{len(jobs):,} failed jobs written to {REVIEW_FILE}", facts={"jobs": len(jobs)}))


class CleanFailedJobs(Action):
    """Remove permanently failed jobs, only after the review list is in the run record."""

    name = "clean_failed_jobs"
    title = "Clean permanently failed jobs"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def _permanent(self) -> list[dict[str, Any]]:
        """The reviewed failed jobs that exhausted their attempts with a permanent or consent failure (an invalid
        number, an unsubscribed recipient, a refused message): no retry, now or later, can deliver them."""
        poison = {i for ids in _poison_jobs(self.ctx).values() for i in ids} if holding(
            self.ctx, {"poison_messages"}) else set()  # those go to the DLQ for review, not away
        return [j for j in self.ctx.evidence.get(FAILED_JOBS)
                if j["exhausted"] and j["id"] not in poison
                and category_of(str(j.get("failedReason") or ""), j["queue"])[1] in (PERMANENT, CONSENT)]

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is None:
            return False, "no diagnosis yet: run the Diagnosis cell first"
        if d.cause in PROVIDER_SIDE:
            return False, (f"diagnosis is {d.cause}: failed jobs will be deliverable once it is fixed — re-drive them "
                           "then (the DLQ replay), never delete them")
        exhausted = [j for j in self.ctx.evidence.get(FAILED_JOBS) if j["exhausted"]]
        permanent = self._permanent()
        if not permanent:
            return False, (f"no failed job with a permanent failure ({len(exhausted):,} exhausted ones failed for "
                           "transient or unknown reasons: move or replay them instead)" if exhausted
                           else "no permanently failed jobs")
        return True, f"{len(permanent):,} failed jobs exhausted their attempts with a permanent failure"

    def plan(self) -> Plan:
        if not self.ctx.evidence.has(REVIEW_WRITTEN):
            return Plan(self.name, self.title, blocked="write the review list first (review_failed_jobs)")
        by_queue: dict[str, list[str]] = {}
        for j in self._permanent():
            by_queue.setdefault(j["queue"], []).append(j["id"])
        if not by_queue:
            return Plan(self.name, self.title, blocked="no job in the review list exhausted its attempts with a "
                                                       "permanent failure")
        total = sum(len(ids) for ids in by_queue.values())
        return Plan(self.name, f"remove exactly {total:,} reviewed failed jobs with a permanent failure (by id) from "
                               f"{', '.join(by_queue)}; failed jobs not in the review list {REVIEW_FILE}, and those "
                               "that failed for a transient or unknown reason, are left alone",
                    steps=[{"bullmq": "remove_failed", "queue": q, "job_ids": sorted(ids), "jobs": len(ids)}
                           for q, ids in sorted(by_queue.items())])

    def resources(self, plan: Plan) -> list[str]:
        return [f"queue:{s['queue']}" for s in plan.steps]

    def verify_by_hand(self, plan: Plan) -> str:
        return f"which of the planned job ids (summary.json, and {REVIEW_FILE}) are still in their queue's failed set"

    def apply(self, plan: Plan) -> dict[str, Any]:
        reports = {s["queue"]: _admin(self.ctx).remove_failed(s["queue"], list(s["job_ids"])) for s in plan.steps}
        return {"removed": {q: len(r["removed"]) for q, r in reports.items()},
                "left_alone": {q: {"not_failed": r["not_failed"], "gone": r["gone"]} for q, r in reports.items()}}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        left = {s["queue"]: [i for i in s["job_ids"] if (_admin(self.ctx).job(s["queue"], i) or {}).get("failedReason")
                             and i not in result["left_alone"][s["queue"]]["not_failed"]] for s in plan.steps}
        removed = sum(result["removed"].values())
        if any(left.values()):
            return False, f"planned failed jobs still there: {({q: len(v) for q, v in left.items() if v})}"
        return True, f"removed {removed:,} reviewed failed jobs; none outside the review list was touched"


def clean_failed_jobs(ctx: RunContext) -> CleanFailedJobs:
    return CleanFailedJobs(ctx)


class ResumeQueue(Action):
    """Resume the paused queues (BullMQ meta flag); undo pauses them again. Only when a paused queue is the cause:
    never while the failure that it was paused for still shows."""

    name = "resume_queue"
    title = "Resume the paused queue"

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        bull = ctx.evidence.find(BULL_STATE)
        self.queues = [_params(ctx).queue] if _params(ctx).queue else list(bull.paused if bull else ())

    def needed(self) -> tuple[bool, str]:
        d = self.ctx.diagnosis
        if d is None or d.cause not in MITIGATES[self.name]:
            return False, f"diagnosis is {d.cause if d else 'not made'}: no paused queue holds the messages back"
        return True, f"{', '.join(self.queues)} paused: messages wait and nothing is sent"

    def plan(self) -> Plan:
        paused = [q for q in self.queues if _admin(self.ctx).is_paused(q)]
        if not paused:
            return Plan(self.name, "resume", blocked=f"{', '.join(self.queues) or 'no queue'} is not paused")
        counts = {q: _admin(self.ctx).counts(q)["backlog"] for q in paused}
        return Plan(self.name, "resume " + ", ".join(f"{q} ({n:,} waiting jobs go out)" for q, n in counts.items()),
                    steps=[{"bullmq": "resume", "queue": q, "from": "paused", "to": "running"} for q in paused],
                    details={"note": "find out why it was paused before resuming: a provider outage or a deploy"})

    def resources(self, plan: Plan) -> list[str]:
        return [f"queue:{s['queue']}" for s in plan.steps]

    def verify_by_hand(self, plan: Plan) -> str:
        return "whether " + ", ".join(s["queue"] for s in plan.steps) + " are paused (bull:<queue>:meta, field paused)"

    def apply(self, plan: Plan) -> dict[str, Any]:
        for step in plan.steps:
            _admin(self.ctx).resume(step["queue"])
        self.ctx.evidence.put(MITIGATED_AT, datetime.now(UTC))
        return {"resumed": [s["queue"] for s in plan.steps]}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        still = [s["queue"] for s in plan.steps if _admin(self.ctx).is_paused(s["queue"])]
        return not still, (f"still paused: {', '.join(still)}" if still else f"{', '.join(result['resumed'])} running")

    @property
    def can_undo(self) -> bool:
        return True

    def undo(self, plan: Plan, result: dict[str, Any]) -> dict[str, Any]:
        for step in plan.steps:
            _admin(self.ctx).pause(step["queue"])
        return {"paused": [s["queue"] for s in plan.steps]}


def resume_queue(ctx: RunContext) -> ResumeQueue:
    return ResumeQueue(ctx)


# -- Recovery confirmation --------------------------------------------------------------------------
def check_recovery(ctx: RunContext) -> CheckResult:
    """Sampled again after mitigation: backlog stabilising, DLQ not growing, retries back to normal."""
    name, title = "recovery", "Queues after mitigation"
    try:
        samples, _ = _sample(ctx)
    except (QueueError, ConfigError) as exc:
        return _no_queues(ctx, name, title, exc)
    growing = [q for q in SOURCE_QUEUES if samples[-1][q]["backlog"] > samples[0][q]["backlog"]]
    dlq = samples[-1][DLQ]["backlog"] - samples[0][DLQ]["backlog"]
    facts = {"backlog": {q: [s[q]["backlog"] for s in samples] for q in QUEUES}}
    if growing or dlq > 0:
        return ctx.record(CheckResult(name, title, "fail", f"still growing: {', '.join(growing) or ''}"
                                      + (f" DLQ +{dlq}" if dlq > 0 else ""), classification="not_recovered", facts=facts))
    return ctx.record(CheckResult(name, title, "ok", "backlogs stable or shrinking; DLQ not growing", facts=facts))


# -- Post-incident ----------------------------------------------------------------------------------
def post_incident(ctx: RunContext) -> Checklist:
    """DLQ contents, permanently failed jobs, and a retry-strategy recommendation from the error classes."""
    bull = ctx.evidence.find(BULL_STATE)
    size = bull.dlq_size if bull else 0
    review = ctx.extra.get("failed_jobs_review")
    patterns = _patterns(ctx)
    share = patterns.share(patterns.top) if patterns.top else 0.0
    if ctx.diagnosis is not None and ctx.diagnosis.cause == "systemic_provider_failure":
        advice = ("one provider error dominated every retry: retries only added load — cap attempts lower and use "
                  "exponential backoff with a longer first delay; pause the queue when the provider is down")
    elif ctx.diagnosis is not None and ctx.diagnosis.cause == "poison_messages":
        advice = ("a few messages failed at every attempt: fail them at once (UnrecoverableError) on validation errors "
                  "and send them to the DLQ after the first permanent failure")
    else:
        advice = f"top error share {share:.0%}: the current retry strategy looks adequate"
    dlq_read = passed(ctx, "queues")
    dlq = f"{size:,} jobs in {DLQ} at the start of this run" if dlq_read else "the DLQ could not be read in this run"
    checklist = Checklist("Post-incident", [
        ("Review DLQ contents", dlq, dlq_read and size == 0),
        ("Clean up permanently failed messages",
         f"review list {review['file']} ({review['jobs']:,} jobs)" if review else "no review list written in this run",
         bool(review)),
        ("Adjust retry strategy if needed", advice, ctx.diagnosis is not None and ctx.diagnosis.healthy),
    ])
    ctx.extra["post_incident"] = checklist.to_json()
    ctx.write_summary()
    return checklist


guard_checks(globals(), {"check_redis_health": "redis", "check_recovery": "recovery"})

RUNBOOK = Runbook(
    slug=SLUG, title=TITLE, channels=("email", "sms", "whatsapp"), params_cls=Params, actions=ACTIONS, causes=CAUSES,
    dependencies=DEPENDENCIES, needed_fn=needed, time_needs_fn=time_needs, default_scenario=DEFAULT_SCENARIO,
    number=4, demo_parameters=DEMO_PARAMETERS, scenario_defaults=SCENARIO_DEFAULTS, scope="every channel (DLQ)",
)
"""This runbook, declared once: the catalog discovers it; the CLI, the run context and the review read it."""

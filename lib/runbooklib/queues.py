"""BullMQ queues in Redis, driven through the Python `bullmq` package as an admin console would.

Queues: one per channel (`runbooklib.channels`) and the dead-letter queue `communication-dlq`, key prefix `bull`.
The DLQ is an application pattern, not a BullMQ feature: a DLQ job holds the source queue, source
job id, name, data, failedReason, attemptsMade and the source job's `timestamp` (`sourceTimestamp`),
under the deterministic id `<source queue>-<source job id>`. That id can be taken by another job (a
job id reused after a counter reset, a producer-chosen jobId): then the copy goes under
`<source queue>-<source job id>-<source timestamp>` (then `...-2`, `...-3`), and the move reports the
collision. A DLQ job is the copy of a source job only when it is verified to be: same source queue,
job id, name, data, attemptsMade and timestamp (a copy from before `sourceTimestamp` was recorded:
same name, data, failedReason and attemptsMade).

Moving is crash-safe: for each job, look for its verified copy under the deterministic id and the
collision ids; if there is none, add it under the first free one and read it back; only then
remove the source job. Stopped at any point, a re-run finds the copy and finishes the move without
losing or duplicating a job. Replaying re-adds a DLQ job to its source queue under
`replay-<DLQ job id>` (taken by another job: `replay-<DLQ job id>-<DLQ job timestamp>`, then
`...-2`) with fresh attempts, reads it back, then removes it from the DLQ; a re-run that finds the
replayed job (same name and data, added after the DLQ job) only removes the DLQ job. Removing
failed jobs removes only listed jobs still in `failed`.

bullmq's own connection retries for minutes against a dead Redis, so every call here goes
through a client with short timeouts and no retries, and a health check PINGs first. Socket
timeouts bound each read only, so every call also has a total deadline (`asyncio.wait_for`, which
cancels it cleanly), and once Redis did not answer, later calls of the same `QueueAdmin` fail at
once (`Dependency`). Every failure is a `QueueError`. bullmq is async; this module runs it on one
private event-loop thread so that notebook cells and the gate can call it synchronously.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runbooklib.channels import NAMES
from runbooklib.deadline import Dependency, RunBudget
from runbooklib.errors import QueueError
from runbooklib.results import CheckResult, timed

PREFIX = "bull"
DLQ = "communication-dlq"
SOURCE_QUEUES = NAMES
"""One queue per channel (declared in `runbooklib.channels`), each moving exhausted jobs to the DLQ."""
QUEUES = (*SOURCE_QUEUES, DLQ)
STATES = ("waiting", "active", "delayed", "failed", "completed", "prioritized", "waiting-children")
CALL_TIMEOUT = 30.0
MAX_COLLISIONS = 100
"""Ids past the deterministic one that a move or replay tries before it leaves the job in place."""
T = TypeVar("T")


class _LoopThread:
    """One private asyncio loop in a daemon thread; `run()` waits for a coroutine's result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="runbook-queues")
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        """The coroutine's result; `TimeoutError` (and the coroutine cancelled) once `timeout` has passed."""
        async def bounded() -> T:
            return await asyncio.wait_for(coro, timeout)
        future = asyncio.run_coroutine_threadsafe(bounded(), self.loop)
        try:
            return future.result(timeout + 5)  # wait_for ends it first; this only guards a blocked loop
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


_LOOP: _LoopThread | None = None
_LOOP_LOCK = threading.Lock()


def run(coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
    """Run a coroutine on the queues' loop thread and return its result."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = _LoopThread()
    return _LOOP.run(coro, timeout)


def client(url: str, *, timeout: float = 3.0) -> aioredis.Redis:
    """A Redis client that fails fast: short timeouts, no retries."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                   retry=Retry(NoBackoff(), 0), retry_on_timeout=False, decode_responses=True)


def check_redis(url: str, *, timeout: float = 2.0, name: str = "redis", within: Dependency | None = None) -> CheckResult:
    """PING with short timeouts (instead of hanging in bullmq's reconnect loop); version and eviction policy.

    `within` is Redis as a run's dependency: a Redis that does not answer is marked down, so the queue
    checks after this one fail at once."""
    title = "Redis (BullMQ)"
    within = within or Dependency("Redis", timeout * 4, QueueError)

    stage = {"now": "PING"}

    async def probe() -> dict[str, Any]:
        conn = client(url, timeout=timeout)
        try:
            await conn.ping()
            stage["now"] = "INFO (after PING answered)"
            info = await conn.info("server")
            stage["now"] = "CONFIG GET (after PING answered)"
            policy = await conn.config_get("maxmemory-policy")
            return {"version": info.get("redis_version"), "maxmemory_policy": policy.get("maxmemory-policy")}
        finally:
            await conn.aclose()

    with timed() as ms:
        try:
            seconds = within.allowance("PING")
            facts = run(probe(), timeout=seconds)
        except QueueError as exc:  # known down earlier (a finding), or the run's time is up (could not check)
            return CheckResult(name, title, "fail" if within.down else "error", str(exc), classification="unreachable",
                               duration_ms=ms())
        except TimeoutError:
            within.trip(f"gave no answer within {seconds:g}s")
            return CheckResult(name, title, "fail", f"Redis does not answer: no reply to {stage['now']} within "
                               f"{seconds:g}s", classification="unreachable", duration_ms=ms())
        except (RedisError, OSError) as exc:
            within.trip(f"could not be reached ({exc.__class__.__name__})")
            return CheckResult(name, title, "fail", f"Redis does not answer {stage['now']}: {exc.__class__.__name__}: "
                               f"{exc}", classification="unreachable", duration_ms=ms())
    if facts.get("maxmemory_policy") not in (None, "noeviction"):
        return CheckResult(name, title, "warn", f"Redis {facts['version']} answers, but maxmemory-policy is "
                           f"{facts['maxmemory_policy']}: Redis may evict BullMQ keys (use noeviction)",
                           facts=facts, duration_ms=ms())
    return CheckResult(name, title, "ok", f"Redis {facts['version']} answers; maxmemory-policy noeviction",
                       facts=facts, duration_ms=ms())


@dataclass
class MoveReport:
    """What a DLQ move did, job by job: moved, finished (its verified DLQ copy already there), gone,
    skipped (busy or not verified), and collisions: source job id -> the DLQ id its copy is under,
    for copies that could not take the deterministic id because another job holds it."""

    moved: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    collisions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"moved": len(self.moved), "finished_earlier_move": len(self.finished), "already_gone": len(self.gone),
                "skipped": self.skipped, "collisions": self.collisions}


@dataclass
class ReplayReport:
    """What a DLQ replay did, batch by batch; `missing`: DLQ job ids not (or no longer) in the DLQ;
    `already_replayed`: DLQ jobs an interrupted replay had re-added, now only removed from the DLQ;
    `collisions`: DLQ job id -> the id it was replayed under when `replay-<id>` held another job."""

    batches: list[dict[str, Any]] = field(default_factory=list)
    replayed: list[str] = field(default_factory=list)
    skipped_delivered: list[str] = field(default_factory=list)
    stopped: str | None = None
    missing: list[str] = field(default_factory=list)
    already_replayed: list[str] = field(default_factory=list)
    collisions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"batches": self.batches, "replayed": len(self.replayed), "skipped_delivered": len(self.skipped_delivered),
                "stopped": self.stopped, "missing": self.missing, "already_replayed": len(self.already_replayed),
                "collisions": self.collisions}


def dlq_id(source: str, job_id: str) -> str:
    """The deterministic DLQ id of a source job (see `collision_ids` when another job holds it)."""
    return f"{source}-{job_id}"


def replay_id(dlq_job_id: str) -> str:
    return f"replay-{dlq_job_id}"


def collision_ids(base: str, stamp: int) -> Iterator[str]:
    """The ids tried, in order, when `base` is held by another job: `<base>-<stamp>`, then `-2`, `-3`..."""
    yield f"{base}-{stamp}"
    for n in range(2, MAX_COLLISIONS + 1):
        yield f"{base}-{stamp}-{n}"


def is_dlq_copy(copy: Any, source: str, job: Any) -> bool:
    """Whether DLQ job `copy` is the copy of source job `job` (a bullmq Job) of queue `source`."""
    held = copy.data
    if not isinstance(held, dict):
        return False
    same = (held.get("sourceQueue") == source and str(held.get("sourceJobId")) == str(job.id)
            and held.get("name") == job.name and held.get("data") == job.data
            and held.get("attemptsMade") == job.attemptsMade)
    if "sourceTimestamp" in held:
        return same and held["sourceTimestamp"] == job.timestamp
    return same and held.get("failedReason") == job.failedReason  # a copy from before sourceTimestamp


async def _find_slot(queue: Any, base: str, stamp: int, verified: Callable[[Any], bool]) -> tuple[str | None, bool]:
    """Where one job's copy is or goes in `queue`: `(id, True)` for a copy `verified` accepts under
    `base` or a collision id; else `(id, False)`, the id to add it under (`base` if free, else the
    first free collision id); `(None, False)` when all are held by other jobs.

    The collision ids are searched even when `base` is free (the job that held it may be gone since
    an interrupted move put the copy under a collision id), up to the first free one."""
    from bullmq import Job

    held = await Job.fromId(queue, base)
    if held is not None and verified(held):
        return base, True
    free = base if held is None else None
    for candidate in collision_ids(base, stamp):
        held = await Job.fromId(queue, candidate)
        if held is None:
            return free or candidate, False
        if verified(held):
            return candidate, True
    return free, False


class QueueAdmin:
    """Admin operations on the BullMQ queues of one Redis (synchronous; async bullmq underneath)."""

    def __init__(self, url: str, *, prefix: str = PREFIX, timeout: float = 5.0, total_timeout: float | None = None,
                 budget: RunBudget | None = None) -> None:
        self.url, self.prefix, self.timeout = url, prefix, timeout
        self._conn: aioredis.Redis | None = None
        self._queues: dict[str, Any] = {}
        self.dependency = Dependency("Redis", total_timeout or 2 * timeout, QueueError, budget=budget or RunBudget())
        """Every call's total deadline; known down after one that did not answer."""

    def _queue(self, name: str) -> Any:
        from bullmq import Queue

        if self._conn is None:
            self._conn = client(self.url, timeout=self.timeout)
        if name not in self._queues:
            self._queues[name] = Queue(name, {"connection": self._conn, "prefix": self.prefix})
        return self._queues[name]

    def _run(self, fn: Callable[[], Awaitable[T]], what: str = "Redis call") -> T:
        """One BullMQ/Redis call within the dependency's deadline; every failure becomes a `QueueError`."""
        seconds = self.dependency.allowance(what)

        async def call() -> T:
            return await fn()
        try:
            return run(call(), timeout=seconds)
        except TimeoutError as exc:  # asyncio's, from wait_for: the call was cancelled
            self.dependency.trip(f"gave no answer within {seconds:g}s")
            raise QueueError(f"{what}: no answer from Redis within {seconds:g}s (total deadline)") from exc
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            self.dependency.trip(f"could not be reached ({exc.__class__.__name__})")
            raise QueueError(f"{what}: Redis could not be reached: {exc.__class__.__name__}: {exc}") from exc
        except RedisError as exc:
            raise QueueError(f"{what}: Redis answered with an error: {exc}") from exc

    def close(self) -> None:
        async def close() -> None:
            if self._conn is not None:
                await self._conn.aclose()
        try:
            run(close(), timeout=self.timeout)
        except (TimeoutError, RedisError, OSError):
            pass  # a Redis that stopped answering: the connection is dropped either way
        self._queues.clear()
        self._conn = None

    # -- reading ------------------------------------------------------------------------------------
    def counts(self, name: str) -> dict[str, Any]:
        """Job counts per state, plus `paused` (meta flag) and `backlog` (waiting + prioritized + delayed)."""
        q = self._queue(name)

        async def read() -> dict[str, Any]:
            counts: dict[str, Any] = dict(await q.getJobCounts(*STATES))
            counts["paused"] = bool(await q.isPaused())
            counts["legacy_paused_list"] = int(await q.client.llen(q.toKey("paused")))
            return counts
        out = self._run(read)
        out["backlog"] = sum(int(out.get(k, 0)) for k in ("waiting", "prioritized", "delayed")) + out["legacy_paused_list"]
        return out

    def jobs(self, name: str, states: list[str], *, limit: int = 100) -> list[dict[str, Any]]:
        """Up to `limit` jobs in `states` (a list: a bare string silently matches nothing in bullmq)."""
        q = self._queue(name)
        found = self._run(lambda: q.getJobs(list(states), 0, max(0, limit - 1), False))
        return [job_record(j) for j in found]

    def job(self, name: str, job_id: str) -> dict[str, Any] | None:
        found = self._run(lambda: self._queue(name).getJob(job_id))
        return job_record(found) if found is not None else None

    def is_paused(self, name: str) -> bool:
        return bool(self._run(lambda: self._queue(name).isPaused()))

    # -- changing -----------------------------------------------------------------------------------
    def pause(self, name: str) -> None:
        self._run(lambda: self._queue(name).pause())

    def resume(self, name: str) -> None:
        self._run(lambda: self._queue(name).resume())

    def add(self, name: str, job_name: str, data: Any, opts: dict[str, Any] | None = None) -> str:
        job = self._run(lambda: self._queue(name).add(job_name, data, opts or {}))
        return str(job.id)

    def move_to_dlq(self, source: str, job_ids: list[str], *, dlq: str = DLQ) -> MoveReport:
        """Move failed jobs to the DLQ, crash-safe and idempotent (see the module docstring)."""
        report = MoveReport()
        for job_id in job_ids:
            self._run(lambda job_id=job_id: self._move_one(source, job_id, dlq, report))  # type: ignore[misc]
        return report

    async def _move_one(self, source: str, job_id: str, dlq: str, report: MoveReport) -> None:
        from bullmq import Job

        src, target = self._queue(source), self._queue(dlq)
        job = await Job.fromId(src, job_id)
        if job is None:
            report.gone.append(job_id)
            return

        def verified(copy: Any) -> bool:
            return is_dlq_copy(copy, source, job)
        base = dlq_id(source, job_id)
        target_id, found = await _find_slot(target, base, int(job.timestamp), verified)
        if target_id is None:
            report.skipped[job_id] = (f"DLQ id {base} and its {MAX_COLLISIONS} collision ids are held by other jobs; "
                                      "source left in place")
            return
        if not found:
            await target.add(job.name, {
                "sourceQueue": source, "sourceJobId": job_id, "name": job.name, "data": job.data,
                "failedReason": job.failedReason, "attemptsMade": job.attemptsMade,
                "sourceTimestamp": int(job.timestamp), "movedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            }, {"jobId": target_id, "removeOnComplete": False, "removeOnFail": False})
            copy = await Job.fromId(target, target_id)
            if copy is None or not verified(copy):  # an add under a held id adds nothing: another job got there first
                report.skipped[job_id] = f"DLQ copy {target_id} not read back as this job after add; source left in place"
                return
        if target_id != base:
            report.collisions[job_id] = target_id
        try:
            await job.remove()
        except (RedisError, OSError):
            raise  # Redis itself failed: `_run` maps it
        except Exception as exc:  # bullmq raises when a worker holds the job's lock
            report.skipped[job_id] = f"source job not removed ({exc}); DLQ copy kept, a re-run finishes it"
            return
        (report.finished if found else report.moved).append(job_id)

    def dlq_jobs(self, *, dlq: str = DLQ, limit: int = 10_000) -> list[dict[str, Any]]:
        """DLQ jobs (waiting; the DLQ has no worker), oldest first."""
        q = self._queue(dlq)
        found = self._run(lambda: q.getJobs(["waiting", "prioritized", "delayed", "paused"], 0, limit - 1, True))
        return [job_record(j) for j in found]

    def replay(self, *, batches: list[float], max_failure_rate: float, delivered: Callable[[dict[str, Any]], bool],
               attempts: int = 3, settle_seconds: float = 30.0, dlq: str = DLQ, limit: int = 10_000,
               job_ids: list[str] | None = None) -> ReplayReport:
        """Replay DLQ jobs to their source queues in growing batches (fractions of the jobs, cumulative).

        `job_ids`: replay exactly these DLQ jobs, in this order (batches are fractions of those found
        in the DLQ; the others are `missing`), and touch no other; None: every DLQ job, oldest first.
        Each batch is re-added with fresh attempts, then its outcome is awaited (completed or failed,
        up to `settle_seconds`); the replay stops when the batch's failure rate exceeds
        `max_failure_rate`. Jobs whose message is already delivered (`delivered(dlq_job)`) are
        removed from the DLQ without being replayed. Each job is read again just before it is
        replayed: one gone meanwhile is `missing`, not replayed.
        """
        report = ReplayReport()
        if job_ids is None:
            pending = self.dlq_jobs(dlq=dlq, limit=limit)
        else:
            pending = []
            for job_id in dict.fromkeys(job_ids):  # a listed id replays once
                found = self.job(dlq, job_id)
                if found is None:
                    report.missing.append(job_id)
                else:
                    pending.append(found)
        total = len(pending)
        done = 0
        for fraction in batches:
            upto = total if fraction >= 1 else max(1, int(round(total * fraction)))
            batch, pending = pending[: max(0, upto - done)], pending[max(0, upto - done):]
            if not batch:
                continue
            done += len(batch)
            added: list[tuple[str, str]] = []
            for listed in batch:
                job = self.job(dlq, listed["id"])
                if job is None:
                    report.missing.append(listed["id"])
                    continue
                if delivered(job):
                    self._run(lambda job=job: self._queue(dlq).remove(job["id"]))  # type: ignore[misc]
                    report.skipped_delivered.append(job["id"])
                    continue
                target = self._run(lambda job=job: self._replay_one(dlq, job, attempts, report),  # type: ignore[misc]
                                   f"replay of DLQ job {job['id']}")
                if target is not None:
                    added.append(target)
            outcome = self._settle(added, settle_seconds)
            if outcome["unsettled"]:
                report.batches.append({"fraction": fraction, "size": len(batch), "replayed": len(added), **outcome})
                report.stopped = (f"batch {len(report.batches)}: {outcome['unsettled']} replayed jobs neither completed "
                                  f"nor failed within {settle_seconds:g}s (are workers running?): stopped; "
                                  f"{len(pending)} jobs stay in the DLQ")
                break
            failures = outcome["failed"]
            rate = failures / len(added) if added else 0.0
            report.batches.append({"fraction": fraction, "size": len(batch), "replayed": len(added), **outcome,
                                   "failure_rate": round(rate, 3)})
            if added and rate > max_failure_rate:
                report.stopped = (f"batch {len(report.batches)} failed {rate:.0%} > {max_failure_rate:.0%}: stopped; "
                                  f"{len(pending)} jobs stay in the DLQ")
                break
        return report

    async def _replay_one(self, dlq: str, job: dict[str, Any], attempts: int,
                          report: ReplayReport) -> tuple[str, str] | None:
        """Re-add one DLQ job to its source queue, then remove it from the DLQ; `(source, id)` of the job
        added, None when an earlier, interrupted replay had added it already (only the DLQ job is removed)."""
        from bullmq import Job

        held = job["data"] if isinstance(job["data"], dict) else {}
        source, name, payload = str(held.get("sourceQueue")), str(held.get("name") or job["name"]), held.get("data")
        stamp = int(job["timestamp"] or 0)
        queue = self._queue(source)

        def verified(replayed: Any) -> bool:  # a replay of this DLQ job is added after it
            return bool(replayed.name == name and replayed.data == payload and int(replayed.timestamp or 0) >= stamp)
        base = replay_id(job["id"])
        target_id, found = await _find_slot(queue, base, stamp, verified)
        if target_id is None:
            raise QueueError(f"replay of DLQ job {job['id']}: {base} and its {MAX_COLLISIONS} collision ids are held "
                             "by other jobs; the DLQ job stays")
        if not found:
            await queue.add(name, payload, {"jobId": target_id, "attempts": attempts, "removeOnComplete": False,
                                            "removeOnFail": False})
            back = await Job.fromId(queue, target_id)
            if back is None or not verified(back):
                raise QueueError(f"replay of DLQ job {job['id']}: {target_id} not read back as its replay after add; "
                                 "the DLQ job stays")
        if target_id != base:
            report.collisions[job["id"]] = target_id
        await self._queue(dlq).remove(job["id"])
        if found:
            report.already_replayed.append(job["id"])
            return None
        report.replayed.append(job["id"])
        return source, target_id

    def _settle(self, added: list[tuple[str, str]], settle_seconds: float) -> dict[str, int]:
        """Wait until every replayed job is completed or failed (or time is up); count the outcomes."""
        deadline = time.monotonic() + settle_seconds
        states: dict[str, str] = {}
        while True:
            for source, job_id in added:
                if states.get(job_id) in ("completed", "failed"):
                    continue
                states[job_id] = str(self._run(lambda s=source, j=job_id: self._queue(s).getJobState(j)))  # type: ignore[misc]
            if all(states.get(j) in ("completed", "failed") for _, j in added) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        values = list(states.values())
        return {"completed": values.count("completed"), "failed": values.count("failed"),
                "unsettled": len(values) - values.count("completed") - values.count("failed")}

    def clean_failed(self, name: str, *, grace_ms: int = 0, limit: int = 10_000) -> int:
        """Remove failed jobs older than `grace_ms`; returns how many."""
        removed = self._run(lambda: self._queue(name).clean(grace_ms, limit, "failed"))
        return len(removed) if isinstance(removed, list) else int(removed or 0)

    def remove_failed(self, name: str, job_ids: list[str]) -> dict[str, list[str]]:
        """Remove exactly the listed jobs of queue `name` that are still failed.

        Returns `removed`, `not_failed` (now waiting, active, completed...: left alone) and `gone`
        (no such job). The state is read just before each removal (BullMQ has no remove-if-failed): a
        job that a worker takes in between is locked and not removed (`not_failed`); one retried to
        waiting in that instant (one round trip) would be removed."""
        out: dict[str, list[str]] = {"removed": [], "not_failed": [], "gone": []}
        for job_id in dict.fromkeys(job_ids):
            outcome = self._run(lambda job_id=job_id: self._remove_if_failed(name, job_id),  # type: ignore[misc]
                                f"removal of failed job {job_id}")
            out[outcome].append(job_id)
        return out

    async def _remove_if_failed(self, name: str, job_id: str) -> str:
        from bullmq import Job

        queue = self._queue(name)
        job = await Job.fromId(queue, job_id)
        if job is None:
            return "gone"
        state = str(await queue.getJobState(job_id))
        if state == "unknown":
            return "gone"
        if state != "failed":
            return "not_failed"
        try:
            await job.remove()
        except (RedisError, OSError):
            raise  # Redis itself failed: `_run` maps it
        except Exception:  # bullmq raises when a worker holds the job's lock: it left failed since
            return "not_failed"
        return "removed"


def job_record(job: Any) -> dict[str, Any]:
    """The fields of a bullmq Job a runbook reads."""
    return {"id": str(job.id), "name": job.name, "data": job.data, "attemptsMade": int(job.attemptsMade or 0),
            "attempts": int((job.opts or {}).get("attempts", 1) or 1), "failedReason": job.failedReason,
            "timestamp": job.timestamp, "finishedOn": job.finishedOn}

"""The BullMQ part of the sandbox: a Redis (given, or started on loopback), queues seeded with real
jobs failed by a real worker, a DLQ, workers that keep processing, and live growth where a
scenario asks for it (a stalled queue, a growing DLQ)."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from runbooklib.queues import DLQ, SOURCE_QUEUES, QueueAdmin, client, run
from runbooklib.sandbox.bull import FAIL, FAIL_TIMES, seed_jobs, start_worker, stop_worker
from runbooklib.sandbox.redis_server import RedisServer
from runbooklib.schema import message_logs

GROWTH_PERIOD = 0.5
HUNG_CONCURRENCY = 20
"""Jobs a sandbox worker takes at once (`bull.start_worker`)."""


class BullSandbox:
    """Seeds and runs the queues of one scenario (`bullmq` section, see docs/scenarios.md)."""

    def __init__(self, spec: dict[str, Any], *, redis_url: str | None, writer: sa.Engine, scenario: str) -> None:
        self.spec = spec
        self.given_url = redis_url
        self.writer = writer
        self.scenario = scenario
        self.server: RedisServer | None = None
        self.url = redis_url or ""
        self.admin: QueueAdmin | None = None
        self.workers: list[Any] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BullSandbox:
        if self.given_url:
            run(_flush(self.given_url))  # a Redis handed to the sandbox is the sandbox's to wipe
        else:
            self.server = RedisServer().start()
            self.url = self.server.url
        self.admin = QueueAdmin(self.url)
        attempts = self.spec["attempts"]
        for group in self.spec["jobs"]:
            queue = group["queue"]
            seed_jobs(self.url, queue, self._jobs(group), attempts=int(attempts.get(queue, 3)),
                      work=group.get("work", True))
        for group in self.spec["dlq"]:
            self._seed_dlq(group)
        for queue in self.spec["paused"]:
            self.admin.pause(queue)
        stalled, hung = self.spec["stalled_queue"], self.spec["hung_queue"]
        self.workers = [start_worker(self.url, q, hung=q == hung) for q in SOURCE_QUEUES if q != stalled]
        if hung:
            self._saturate(hung)
        if self.spec["dlq_growth_per_sample"] or self.spec["stalled_growth_per_sample"]:
            self._thread = threading.Thread(target=self._grow, daemon=True, name="sandbox-bull-growth")
            self._thread.start()
        return self

    def _jobs(self, group: dict[str, Any]) -> list[dict[str, Any]]:
        prefix = group.get("message_prefix") or f"{self.scenario}-{group['queue']}"
        out = []
        for i in range(int(group["count"])):
            data: dict[str, Any] = {"message_id": f"{prefix}-{i}", "tenant_id": "acme"}
            if group.get("fail"):
                data[FAIL] = group["fail"]
            if group.get("fail_times"):
                data[FAIL] = group.get("fail") or "Temporary failure, try again"
                data[FAIL_TIMES] = int(group["fail_times"])
            out.append({"name": f"send-{group['queue']}", "data": data})
        return out

    def _seed_dlq(self, group: dict[str, Any]) -> None:
        """Failed jobs moved to the DLQ; `delivered` of them have their message DELIVERED in message_logs."""
        assert self.admin is not None
        queue = group["queue"]
        jobs = self._jobs({**group, "message_prefix": f"{self.scenario}-dlq-{queue}"})
        seed_jobs(self.url, queue, jobs, attempts=1)
        failed = self.admin.jobs(queue, ["failed"], limit=100_000)
        mine = [j for j in failed if str(j["data"].get("message_id", "")).startswith(f"{self.scenario}-dlq-{queue}")]
        self.admin.move_to_dlq(queue, [j["id"] for j in mine])
        age = float(group.get("age_minutes") or 0)
        prefix = f"{self.scenario}-dlq-{queue}"
        for job in self.admin.dlq_jobs():
            if job["data"].get("data", {}).get(FAIL):
                # the cause is fixed by the time anyone replays: the replayed job will succeed
                run(_strip_failure(self.url, job["id"]))
            if age and str(job["data"].get("data", {}).get("message_id", "")).startswith(prefix):
                run(_age(self.url, job["id"], age))
        delivered = [j["data"]["message_id"] for j in jobs[: int(group.get("delivered", 0))]]
        if delivered:
            now = datetime.now(UTC).replace(tzinfo=None) if self.writer.dialect.name == "sqlite" else datetime.now(UTC)
            with self.writer.begin() as conn:
                conn.execute(message_logs.insert(), [{
                    "id": mid, "tenant_id": "acme", "channel": queue.upper(), "status": "DELIVERED", "provider": "sandbox",
                    "recipient": None, "template": None, "created_at": now, "updated_at": now, "retry_count": 1,
                    "metadata": {"note": "re-sent by hand after the DLQ move"}} for mid in delivered])

    def _saturate(self, queue: str) -> None:
        """Give a hung queue's workers as many jobs as they take at once, and a few more that wait: from the start,
        its jobs stay active, nothing completes, and new jobs pile up behind them."""
        assert self.admin is not None
        for _ in range(HUNG_CONCURRENCY + 5):
            self.admin.add(queue, f"send-{queue}", {"message_id": uuid.uuid4().hex})
        deadline = time.monotonic() + 10
        while self.admin.counts(queue)["active"] < HUNG_CONCURRENCY and time.monotonic() < deadline:
            time.sleep(0.05)

    def _grow(self) -> None:
        assert self.admin is not None
        stalled = self.spec["stalled_queue"] or self.spec["hung_queue"]
        per_tick_dlq = max(1, int(self.spec["dlq_growth_per_sample"])) if self.spec["dlq_growth_per_sample"] else 0
        per_tick_stalled = int(self.spec["stalled_growth_per_sample"])
        while not self._stop.wait(GROWTH_PERIOD):
            try:
                for _ in range(per_tick_dlq):
                    self.admin.add(DLQ, "send-sms", {"sourceQueue": "sms", "sourceJobId": uuid.uuid4().hex,
                                                     "name": "send-sms", "data": {"message_id": uuid.uuid4().hex},
                                                     "failedReason": "Twilio 30008: Unknown error", "attemptsMade": 3})
                if stalled:
                    for _ in range(per_tick_stalled):
                        self.admin.add(stalled, f"send-{stalled}", {"message_id": uuid.uuid4().hex})
            except Exception:  # the sandbox is being torn down
                return

    def platform_metrics(self) -> list[dict[str, Any]]:
        """What the Lineup metrics API would report for these queues, from BullMQ itself."""
        assert self.admin is not None
        out = []
        for name in (*SOURCE_QUEUES, DLQ):
            c = self.admin.counts(name)
            out.append({"queue": name, "waiting": c["waiting"] + c["prioritized"], "active": c["active"],
                        "delayed": c["delayed"], "failed": c["failed"], "completed": c["completed"],
                        "paused": c["paused"]})
        return out

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for worker in self.workers:
            stop_worker(worker, 0.5 if worker.name == self.spec["hung_queue"] else 5.0)
        self.workers = []
        if self.admin is not None:
            self.admin.close()
        if self.server is not None:
            self.server.stop()


async def _flush(url: str) -> None:
    conn = client(url)
    try:
        await conn.flushdb()
    finally:
        await conn.aclose()


async def _age(url: str, dlq_job_id: str, minutes: float) -> None:
    """Date a DLQ job back: it arrived `minutes` ago (last month's incident)."""
    conn = client(url)
    try:
        when = int((datetime.now(UTC).timestamp() - minutes * 60) * 1000)
        await conn.hset(f"bull:{DLQ}:{dlq_job_id}", "timestamp", str(when))
    finally:
        await conn.aclose()


async def _strip_failure(url: str, dlq_job_id: str) -> None:
    """Rewrite a DLQ job's data so that its replay succeeds (the scenario's root cause is fixed)."""
    import json

    conn = client(url)
    try:
        key = f"bull:{DLQ}:{dlq_job_id}"
        data = json.loads(await conn.hget(key, "data") or "{}")
        data.get("data", {}).pop(FAIL, None)
        await conn.hset(key, "data", json.dumps(data))
    finally:
        await conn.aclose()

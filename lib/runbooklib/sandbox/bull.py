"""Seed BullMQ queues for the sandbox and tests: real jobs, failed by a real Worker."""

from __future__ import annotations

import asyncio
from typing import Any

from runbooklib.queues import PREFIX, client, run

FAIL = "_fail"
"""Job data key: the error the sandbox worker raises for this job (absent: the job completes)."""


async def _process(job: Any, token: str) -> Any:
    reason = (job.data or {}).get(FAIL)
    if reason:
        raise RuntimeError(reason)
    return {"ok": True}


def seed_jobs(url: str, queue: str, jobs: list[dict[str, Any]], *, attempts: int = 3, work: bool = True,
              timeout: float = 120.0, prefix: str = PREFIX) -> dict[str, int]:
    """Add `jobs` ({"name", "data"}) to `queue`; with `work`, run a worker until every job settled.

    Jobs whose data has `_fail` fail at every attempt (poison); the others complete.
    """
    async def seed() -> dict[str, int]:
        from bullmq import Queue, Worker

        conn = client(url)
        q = Queue(queue, {"connection": conn, "prefix": prefix})
        opts = {"attempts": attempts, "backoff": 0, "removeOnFail": False, "removeOnComplete": False}
        before = await q.getJobCounts("completed", "failed")
        settled_before = before["completed"] + before["failed"]
        for start in range(0, len(jobs), 500):
            await q.addBulk([{"name": j["name"], "data": j["data"], "opts": opts} for j in jobs[start:start + 500]])
        counts: dict[str, int] = {}
        if work and jobs:
            worker = Worker(queue, _process, {"connection": url, "concurrency": 50, "prefix": prefix})
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                counts = await q.getJobCounts("completed", "failed", "waiting", "active", "delayed")
                if counts["completed"] + counts["failed"] >= settled_before + len(jobs):
                    break
                await asyncio.sleep(0.05)
            await worker.close()
        counts = dict(await q.getJobCounts("completed", "failed", "waiting", "active", "delayed"))
        await conn.aclose()
        return counts

    return run(seed(), timeout=timeout + 30)


def start_worker(url: str, queue: str, *, prefix: str = PREFIX) -> Any:
    """A worker on the queues' loop thread (for replays in the sandbox); stop it with `stop_worker`."""
    async def start() -> Any:
        from bullmq import Worker

        return Worker(queue, _process, {"connection": url, "concurrency": 20, "prefix": prefix})
    return run(start())


def stop_worker(worker: Any, *, grace: float = 15.0) -> None:
    """Close a worker, letting its jobs finish; after `grace` seconds, force it (bullmq 3.4's close() has been
    seen waiting out the 30 s call timeout on a loaded machine, its fetch task never finishing)."""
    try:
        run(worker.close(), timeout=grace)
    except TimeoutError:
        run(worker.close(force=True))

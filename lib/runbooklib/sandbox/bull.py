"""Seed BullMQ queues for the sandbox and tests: real jobs, failed by a real Worker."""

from __future__ import annotations

import asyncio
from typing import Any

from runbooklib.queues import PREFIX, client, run

FAIL = "_fail"
"""Job data key: the error the sandbox worker raises for this job (absent: the job completes)."""
FAIL_TIMES = "_fail_times"
"""Job data key: raise `FAIL` only at the first this-many attempts, then complete (a transient failure)."""


async def close_worker(worker: Any, grace: float = 5.0) -> None:
    """Close a worker, letting its jobs finish; past `grace` seconds, cancel the tasks it still waits on.

    bullmq 3.4's `Worker.close()` waits for every in-flight task and shields itself from cancellation. About
    one close in a hundred (measured: 3 of 338 in a 90 s loop) never returns: one fetch task sits in
    `waitForJob` with its cancel pending inside the blocking BZPOPMIN read (bullmq issues a BZPOPMIN after
    closing began; cf. taskforcesh/bullmq#3025 for Node, #4670 for Python). Cancelling the worker's tasks
    releases it at once. The sandbox's workers run throwaway jobs, so cutting that short loses nothing.
    """
    closing = asyncio.ensure_future(worker.close())
    done, _ = await asyncio.wait({closing}, timeout=grace)
    if not done:
        worker.cancelProcessing()
        done, _ = await asyncio.wait({closing}, timeout=grace)
    if not done:
        raise TimeoutError(f"BullMQ worker did not close within {2 * grace:.0f} s")
    closing.result()


async def _process(job: Any, token: str) -> Any:
    data = job.data or {}
    reason = data.get(FAIL)
    times = data.get(FAIL_TIMES)
    if reason and (times is None or int(job.attemptsMade or 0) < int(times)):
        raise RuntimeError(reason)
    return {"ok": True}


async def _hang(job: Any, token: str) -> Any:
    """A worker that takes a job and never finishes it (a hung connection, a deadlock): the job stays active."""
    await asyncio.sleep(24 * 3600)
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
            await close_worker(worker)
        counts = dict(await q.getJobCounts("completed", "failed", "waiting", "active", "delayed"))
        await conn.aclose()
        return counts

    return run(seed(), timeout=timeout + 30)


def start_worker(url: str, queue: str, *, prefix: str = PREFIX, hung: bool = False) -> Any:
    """A worker on the queues' loop thread (for replays in the sandbox); stop it with `stop_worker`. A `hung` worker
    takes jobs and never finishes them."""
    async def start() -> Any:
        from bullmq import Worker

        return Worker(queue, _hang if hung else _process, {"connection": url, "concurrency": 20, "prefix": prefix})
    return run(start())


def stop_worker(worker: Any, grace: float = 5.0) -> None:
    run(close_worker(worker, grace))

"""Benchmark: jobs per second of a 10,000-job DLQ move and replay on a real redis-server.

    .venv/bin/python benchmarks/dlq_throughput.py [--jobs 10000]

Starts its own redis-server on a free loopback port (or uses REDIS_URL), seeds N failed jobs with a
real BullMQ worker, then times `QueueAdmin.move_to_dlq` (crash-safe, one job at a time: read, add
to the DLQ, read back, remove) and `QueueAdmin.replay` (batches 1% → 10% → 50% → rest, each batch
awaited until a worker has completed it). Prints the figures; exits non-zero if accounting is off.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runbooklib.queues import QueueAdmin  # noqa: E402
from runbooklib.sandbox.bull import seed_jobs, start_worker, stop_worker  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        from tests.services import RedisServer

        server = RedisServer().start()
        url = server.url
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    admin = QueueAdmin(url, prefix=prefix)
    try:
        started = time.perf_counter()
        jobs = [{"name": "send-sms", "data": {"message_id": f"m{i}", "body": "x" * 200}} for i in range(args.jobs)]
        seed_jobs(url, "sms", jobs, work=False, prefix=prefix)
        ids = [j["id"] for j in admin.jobs("sms", ["waiting"], limit=args.jobs)]
        seeded = time.perf_counter() - started

        started = time.perf_counter()
        report = admin.move_to_dlq("sms", ids)
        move = time.perf_counter() - started
        assert len(report.moved) == args.jobs and len(admin.dlq_jobs(limit=args.jobs * 2)) == args.jobs

        worker = start_worker(url, "sms", prefix=prefix)
        try:
            started = time.perf_counter()
            replay = admin.replay(batches=[0.01, 0.1, 0.5, 1.0], max_failure_rate=0.05, settle_seconds=300,
                                  delivered=lambda job: False, limit=args.jobs * 2)
            replay_s = time.perf_counter() - started
        finally:
            stop_worker(worker)
        assert replay.stopped is None and len(replay.replayed) == args.jobs, replay.to_json()
        print(f"jobs: {args.jobs:,}  (seeded in {seeded:.1f}s)")
        print(f"move to DLQ: {move:.1f}s  = {args.jobs / move:,.0f} jobs/s")
        print(f"replay (1%→10%→50%→rest, each batch completed by a worker): {replay_s:.1f}s  "
              f"= {args.jobs / replay_s:,.0f} jobs/s")
        return 0
    finally:
        admin.close()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

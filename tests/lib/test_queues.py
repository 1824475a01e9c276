"""BullMQ administration against a real redis-server: counts, pause, the crash-safe DLQ move, replay."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooklib.queues import DLQ, QueueAdmin, check_redis, dlq_id, replay_id
from runbooklib.sandbox.bull import FAIL, seed_jobs, start_worker, stop_worker
from runbooklib.sandbox.ports import free_port
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def admin(redis_server: RedisServer, prefix: str) -> Iterator[QueueAdmin]:
    a = QueueAdmin(redis_server.url, prefix=prefix)
    yield a
    a.close()


def poison(n: int, reason: str = "Twilio 30007: Message filtered") -> list[dict[str, object]]:
    return [{"name": "send-sms", "data": {"message_id": f"m{i}", FAIL: reason}} for i in range(n)]


def test_health_check_fails_fast_on_a_dead_redis() -> None:
    started = time.monotonic()
    result = check_redis(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    assert (result.status, result.classification) == ("fail", "unreachable")
    assert time.monotonic() - started < 10  # not bullmq's minutes-long reconnect loop


def test_health_check_answers(redis_server: RedisServer) -> None:
    assert check_redis(redis_server.url).ok


def test_pause_keeps_jobs_waiting_and_is_read_from_meta(admin: QueueAdmin, redis_server: RedisServer,
                                                        prefix: str) -> None:
    seed_jobs(redis_server.url, "email", [{"name": "send", "data": {"i": i}} for i in range(5)], work=False,
              prefix=prefix)
    admin.pause("email")
    counts = admin.counts("email")
    assert counts["paused"] is True and counts["waiting"] == 5 and counts["backlog"] == 5
    admin.resume("email")
    assert admin.is_paused("email") is False


def test_failed_jobs_are_listed_with_reason_and_attempts(admin: QueueAdmin, redis_server: RedisServer,
                                                         prefix: str) -> None:
    seed_jobs(redis_server.url, "sms", poison(12), prefix=prefix)
    failed = admin.jobs("sms", ["failed"], limit=5)
    assert len(failed) == 5
    assert {(j["attemptsMade"], j["attempts"], j["failedReason"]) for j in failed} == {(3, 3, "Twilio 30007: Message filtered")}


def test_move_to_dlq_keeps_everything_and_is_idempotent(admin: QueueAdmin, redis_server: RedisServer,
                                                        prefix: str) -> None:
    seed_jobs(redis_server.url, "sms", poison(20), prefix=prefix)
    ids = [j["id"] for j in admin.jobs("sms", ["failed"], limit=100)]
    first = admin.move_to_dlq("sms", ids)
    assert len(first.moved) == 20 and admin.counts("sms")["failed"] == 0
    dlq = {j["id"]: j for j in admin.dlq_jobs()}
    assert set(dlq) == {dlq_id("sms", i) for i in ids}
    sample = dlq[dlq_id("sms", ids[0])]["data"]
    assert sample["sourceQueue"] == "sms" and sample["sourceJobId"] == ids[0] and sample["attemptsMade"] == 3
    assert sample["failedReason"] == "Twilio 30007: Message filtered" and "message_id" in sample["data"]
    again = admin.move_to_dlq("sms", ids)
    assert len(again.gone) == 20 and len(admin.dlq_jobs()) == 20


MOVER = """
import sys
from runbooklib.queues import QueueAdmin
admin = QueueAdmin(sys.argv[1], prefix=sys.argv[2])
ids = [j["id"] for j in admin.jobs("sms", ["failed"], limit=100000)]
print("ready", flush=True)
admin.move_to_dlq("sms", ids)
print("done", flush=True)
"""


def test_a_move_killed_midway_loses_nothing_and_duplicates_nothing(admin: QueueAdmin, redis_server: RedisServer,
                                                                   prefix: str) -> None:
    total = 1500
    seed_jobs(redis_server.url, "sms", poison(total), prefix=prefix)
    source_ids = {j["id"] for j in admin.jobs("sms", ["failed"], limit=total)}
    proc = subprocess.Popen([sys.executable, "-c", MOVER, redis_server.url, prefix], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while len(admin.dlq_jobs()) < total // 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def account() -> tuple[set[str], set[str]]:
        in_source = {j["id"] for j in admin.jobs("sms", ["failed"], limit=total)}
        in_dlq = {j["data"]["sourceJobId"] for j in admin.dlq_jobs(limit=total * 2)}
        assert len(admin.dlq_jobs(limit=total * 2)) == len(in_dlq), "a job is in the DLQ twice"
        return in_source, in_dlq

    in_source, in_dlq = account()
    assert in_source | in_dlq == source_ids, "a job was lost by the kill"
    assert 0 < len(in_dlq) < total, "the kill did not land mid-move"
    # the kill may land between the DLQ add and the source remove: a job in both places, never none
    both = in_source & in_dlq
    assert len(both) <= 1

    report = admin.move_to_dlq("sms", sorted(in_source))
    assert len(report.moved) + len(report.finished) == len(in_source) and not report.skipped
    in_source, in_dlq = account()
    assert in_source == set() and in_dlq == source_ids


def test_replay_grows_in_batches_skips_delivered_and_gives_fresh_attempts(admin: QueueAdmin, redis_server: RedisServer,
                                                                       prefix: str) -> None:
    healthy = [{"name": "send-sms", "data": {"message_id": f"ok{i}"}} for i in range(40)]
    seed_jobs(redis_server.url, "sms", healthy, attempts=1, work=False, prefix=prefix)
    # make them failed-then-DLQ'd messages whose cause is now fixed: move waiting jobs through the DLQ path
    ids = [j["id"] for j in admin.jobs("sms", ["waiting"], limit=100)]
    admin.move_to_dlq("sms", ids)
    worker = start_worker(redis_server.url, "sms", prefix=prefix)
    try:
        report = admin.replay(batches=[0.1, 0.5, 1.0], max_failure_rate=0.2, settle_seconds=20,
                              delivered=lambda job: job["data"]["data"]["message_id"] == "ok7")
    finally:
        stop_worker(worker)
    assert report.stopped is None, report.batches
    assert [b["size"] for b in report.batches] == [4, 16, 20]
    assert len(report.replayed) == 39 and report.skipped_delivered == ["sms-8"]  # message ok7 is job 8
    assert admin.dlq_jobs() == []
    replayed = admin.job("sms", replay_id(dlq_id("sms", ids[0])))
    assert replayed is not None and replayed["attempts"] == 3
    assert admin.counts("sms")["completed"] == 39


def test_replay_stops_when_the_replayed_jobs_fail(admin: QueueAdmin, redis_server: RedisServer, prefix: str) -> None:
    seed_jobs(redis_server.url, "sms", poison(30), attempts=1, prefix=prefix)
    admin.move_to_dlq("sms", [j["id"] for j in admin.jobs("sms", ["failed"], limit=100)])
    worker = start_worker(redis_server.url, "sms", prefix=prefix)
    try:
        report = admin.replay(batches=[0.1, 0.5, 1.0], max_failure_rate=0.2, settle_seconds=20, attempts=1,
                              delivered=lambda job: False)
    finally:
        stop_worker(worker)
    assert report.stopped is not None and len(report.batches) == 1
    assert report.batches[0]["failed"] == 3 and len(admin.dlq_jobs()) == 27


def test_replay_without_workers_stops_instead_of_guessing(admin: QueueAdmin, redis_server: RedisServer,
                                                          prefix: str) -> None:
    seed_jobs(redis_server.url, "email", [{"name": "send", "data": {"i": i}} for i in range(10)], work=False,
              prefix=prefix)
    admin.move_to_dlq("email", [j["id"] for j in admin.jobs("email", ["waiting"], limit=100)])
    report = admin.replay(batches=[0.1, 1.0], max_failure_rate=0.2, settle_seconds=0.5, delivered=lambda job: False)
    assert report.stopped is not None and "workers" in report.stopped and len(admin.dlq_jobs()) == 9


def test_clean_failed(admin: QueueAdmin, redis_server: RedisServer, prefix: str) -> None:
    seed_jobs(redis_server.url, "whatsapp", poison(6), attempts=1, prefix=prefix)
    assert admin.clean_failed("whatsapp") == 6 and admin.counts("whatsapp")["failed"] == 0
    assert DLQ == "communication-dlq"


def test_a_worker_that_will_not_close_is_cut_short_after_its_grace(redis_server: RedisServer, prefix: str) -> None:
    """close_worker bounds bullmq's close(), which waits for in-flight tasks however long they take."""
    import asyncio

    from bullmq import Queue, Worker

    from runbooklib.queues import client, run
    from runbooklib.sandbox.bull import close_worker

    async def never_finishes(job: object, token: str) -> None:
        await asyncio.Event().wait()

    async def scenario() -> tuple[float, bool]:
        conn = client(redis_server.url)
        queue = Queue("email", {"connection": conn, "prefix": prefix})
        await queue.add("send-email", {"message_id": "stuck"})
        worker = Worker("email", never_finishes, {"connection": redis_server.url, "prefix": prefix})
        while (await queue.getJobCounts("active"))["active"] == 0:
            await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        await close_worker(worker, grace=0.5)
        elapsed = asyncio.get_running_loop().time() - started
        await queue.close()
        await conn.aclose()
        return elapsed, bool(worker.closed)

    elapsed, closed = run(scenario(), timeout=20)
    assert closed and 0.5 <= elapsed < 5

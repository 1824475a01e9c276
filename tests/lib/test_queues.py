"""BullMQ administration against a real redis-server: counts, pause, the crash-safe DLQ move, replay,
removing listed failed jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from bullmq import Job, Queue

from runbooklib.errors import QueueError
from runbooklib.queues import DLQ, QueueAdmin, check_redis, client, dlq_id, replay_id, run
from runbooklib.sandbox.bull import FAIL, seed_jobs, start_worker, stop_worker
from runbooklib.sandbox.ports import free_port
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


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


def on_queue(redis_server: RedisServer, prefix: str, name: str, act: Callable[[Any], Awaitable[T]]) -> T:
    """Act on a queue as another client would (an operator's console, a producer), not through QueueAdmin."""
    async def go() -> T:
        conn = client(redis_server.url)
        queue = Queue(name, {"connection": conn, "prefix": prefix})
        try:
            return await act(queue)
        finally:
            await queue.close()
            await conn.aclose()
    return run(go())


def reset_job_counter(redis_server: RedisServer, prefix: str, name: str) -> None:
    """What a Redis restored without its counters does: the next job ids start at 1 again."""
    raw = redis.Redis.from_url(redis_server.url)
    try:
        raw.delete(f"{prefix}:{name}:id")
    finally:
        raw.close()


def copies_of(admin: QueueAdmin, source: str, job_id: str) -> list[dict[str, Any]]:
    return [j for j in admin.dlq_jobs() if j["data"].get("sourceQueue") == source
            and j["data"].get("sourceJobId") == job_id]


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
    assert isinstance(sample["sourceTimestamp"], int) and first.to_json()["collisions"] == {}
    again = admin.move_to_dlq("sms", ids)
    assert len(again.gone) == 20 and len(admin.dlq_jobs()) == 20


@pytest.mark.parametrize("again", [False, True], ids=["another message", "the same message sent again"])
def test_a_dlq_id_held_by_another_job_keeps_both_jobs(admin: QueueAdmin, redis_server: RedisServer,
                                                      prefix: str, again: bool) -> None:
    """After a counter reset the job id is reused; sent again, even name, data, reason and attempts match."""
    first = {"name": "send-sms", "data": {"message_id": "new" if again else "old", FAIL: "new failure"}}
    seed_jobs(redis_server.url, "sms", [first], prefix=prefix)
    admin.move_to_dlq("sms", ["1"])
    old_copy = admin.job(DLQ, dlq_id("sms", "1"))
    reset_job_counter(redis_server, prefix, "sms")
    time.sleep(0.002)  # a job of the same millisecond is indistinguishable
    seed_jobs(redis_server.url, "sms", [{"name": "send-sms", "data": {"message_id": "new", FAIL: "new failure"}}],
              prefix=prefix)
    source = admin.job("sms", "1")
    assert source is not None and source["data"]["message_id"] == "new"  # the reused id

    report = admin.move_to_dlq("sms", ["1"])
    new_id = f"{dlq_id('sms', '1')}-{source['timestamp']}"
    assert report.moved == ["1"] and report.finished == [] and report.collisions == {"1": new_id}
    assert report.to_json()["collisions"] == {"1": new_id} and report.to_json()["moved"] == 1
    assert admin.job(DLQ, dlq_id("sms", "1")) == old_copy, "the old DLQ copy was changed"
    new_copy = admin.job(DLQ, new_id)
    assert new_copy is not None and new_copy["data"]["data"]["message_id"] == "new"
    assert new_copy["data"]["sourceTimestamp"] == source["timestamp"] and new_copy["data"]["failedReason"] == "new failure"
    assert admin.job("sms", "1") is None and len(copies_of(admin, "sms", "1")) == 2


def test_a_move_removes_the_source_only_after_reading_back_its_copy(admin: QueueAdmin, redis_server: RedisServer,
                                                                    prefix: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Another client takes the free DLQ id between the move's look-up and its add: the add adds nothing."""
    seed_jobs(redis_server.url, "sms", poison(1), prefix=prefix)
    source = admin.job("sms", "1")
    assert source is not None
    dlq_queue = admin._queue(DLQ)
    real_add = dlq_queue.add

    async def raced(name: str, data: Any, opts: dict[str, Any]) -> Any:
        await real_add("intruder", {"sourceQueue": "email", "sourceJobId": "9"}, {"jobId": opts["jobId"]})
        return await real_add(name, data, opts)
    monkeypatch.setattr(dlq_queue, "add", raced)
    report = admin.move_to_dlq("sms", ["1"])
    assert report.moved == [] and "not read back" in report.skipped["1"]
    assert admin.job("sms", "1") == source, "the source job was removed without a verified copy"

    monkeypatch.undo()
    again = admin.move_to_dlq("sms", ["1"])
    assert again.moved == ["1"] and again.collisions == {"1": f"sms-1-{source['timestamp']}"}
    intruder = admin.job(DLQ, "sms-1")
    assert intruder is not None and intruder["name"] == "intruder"
    assert admin.job("sms", "1") is None and len(copies_of(admin, "sms", "1")) == 1


def crash_before_source_removal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The move dies after adding the DLQ copy and before removing the source job."""
    async def crash(self: Job, opts: dict[str, Any] | None = None) -> None:
        raise Exception("simulated crash before the source job was removed")
    monkeypatch.setattr(Job, "remove", crash)


@pytest.mark.parametrize("held", ["free id", "held id", "held id, holder gone before the re-run"])
def test_a_rerun_after_a_crash_finishes_the_move_without_a_duplicate(admin: QueueAdmin, redis_server: RedisServer,
                                                                     prefix: str, monkeypatch: pytest.MonkeyPatch,
                                                                     held: str) -> None:
    if held != "free id":  # an older job already holds the deterministic DLQ id
        seed_jobs(redis_server.url, "sms", poison(1, "old failure"), prefix=prefix)
        admin.move_to_dlq("sms", ["1"])
        reset_job_counter(redis_server, prefix, "sms")
    seed_jobs(redis_server.url, "sms", poison(1), prefix=prefix)
    source = admin.job("sms", "1")
    assert source is not None
    target = "sms-1" if held == "free id" else f"sms-1-{source['timestamp']}"

    crash_before_source_removal(monkeypatch)
    crashed = admin.move_to_dlq("sms", ["1"])
    assert "1" in crashed.skipped and admin.job("sms", "1") == source and admin.job(DLQ, target) is not None
    monkeypatch.undo()
    if held == "held id, holder gone before the re-run":  # the old copy was replayed meanwhile: sms-1 is free
        on_queue(redis_server, prefix, DLQ, lambda q: q.remove("sms-1"))

    rerun = admin.move_to_dlq("sms", ["1"])
    assert rerun.finished == ["1"] and rerun.moved == [] and not rerun.skipped
    assert rerun.collisions == ({} if target == "sms-1" else {"1": target})
    assert admin.job("sms", "1") is None
    ours = [j for j in copies_of(admin, "sms", "1") if j["data"]["sourceTimestamp"] == source["timestamp"]]
    assert [j["id"] for j in ours] == [target], "the re-run added a second copy"


def test_a_copy_from_before_source_timestamp_is_verified_by_its_fields(admin: QueueAdmin, redis_server: RedisServer,
                                                                       prefix: str) -> None:
    seed_jobs(redis_server.url, "sms", poison(2), prefix=prefix)
    for job_id, reason in (("1", "Twilio 30007: Message filtered"), ("2", "another failure")):
        job = admin.job("sms", job_id)
        assert job is not None
        admin.add(DLQ, job["name"], {"sourceQueue": "sms", "sourceJobId": job_id, "name": job["name"],
                                     "data": job["data"], "failedReason": reason, "attemptsMade": job["attemptsMade"]},
                  {"jobId": dlq_id("sms", job_id)})
    ts2 = admin.job("sms", "2")["timestamp"]  # type: ignore[index]
    report = admin.move_to_dlq("sms", ["1", "2"])
    assert report.finished == ["1"], "a matching copy written before sourceTimestamp finishes the move"
    assert report.moved == ["2"] and report.collisions == {"2": f"sms-2-{ts2}"}, "a differing one is another job"
    assert len(admin.dlq_jobs()) == 3 and admin.counts("sms")["failed"] == 0


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


def test_replay_of_listed_jobs_touches_no_other_dlq_job(admin: QueueAdmin, redis_server: RedisServer,
                                                        prefix: str) -> None:
    healthy = [{"name": "send-sms", "data": {"message_id": f"ok{i}"}} for i in range(1, 8)]
    seed_jobs(redis_server.url, "sms", healthy, attempts=1, work=False, prefix=prefix)
    admin.move_to_dlq("sms", [str(i) for i in range(1, 8)])
    unlisted = {j["id"]: j for j in admin.dlq_jobs() if j["id"] in ("sms-2", "sms-5")}
    listed = ["sms-6", "sms-1", "sms-404", "sms-3", "sms-7", "sms-4"]
    seen: list[str] = []

    def delivered(job: dict[str, Any]) -> bool:
        if not seen:  # another operator replays sms-4 by hand while the first batch runs
            on_queue(redis_server, prefix, DLQ, lambda q: q.remove("sms-4"))
        seen.append(job["id"])
        return False
    worker = start_worker(redis_server.url, "sms", prefix=prefix)
    try:
        report = admin.replay(batches=[0.4, 1.0], max_failure_rate=0.2, settle_seconds=20, delivered=delivered,
                              job_ids=listed)
    finally:
        stop_worker(worker)
    assert report.stopped is None, report.batches
    assert report.replayed == ["sms-6", "sms-1", "sms-3", "sms-7"] and seen == report.replayed
    assert report.missing == ["sms-404", "sms-4"] and report.to_json()["missing"] == ["sms-404", "sms-4"]
    assert [b["size"] for b in report.batches] == [2, 3]  # of the 5 listed jobs in the DLQ at the start
    assert {j["id"]: j for j in admin.dlq_jobs()} == unlisted, "an unlisted DLQ job was touched"
    assert all(admin.job("sms", replay_id(i)) is None for i in [*unlisted, "sms-4"])
    assert admin.counts("sms")["completed"] == 4


def test_a_rerun_of_an_interrupted_replay_adds_no_second_job(admin: QueueAdmin, redis_server: RedisServer,
                                                             prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    healthy = [{"name": "send-sms", "data": {"message_id": f"ok{i}"}} for i in range(3)]
    seed_jobs(redis_server.url, "sms", healthy, attempts=1, work=False, prefix=prefix)
    admin.move_to_dlq("sms", ["1", "2", "3"])
    dlq_queue = admin._queue(DLQ)

    async def interrupted(job_id: str, opts: dict[str, Any] | None = None) -> int:
        return 0  # the replay died after adding to the source queue, before removing the DLQ job
    monkeypatch.setattr(dlq_queue, "remove", interrupted)
    worker = start_worker(redis_server.url, "sms", prefix=prefix)
    try:
        first = admin.replay(batches=[1.0], max_failure_rate=0.2, settle_seconds=20, delivered=lambda job: False)
        assert len(first.replayed) == 3 and len(admin.dlq_jobs()) == 3
        monkeypatch.undo()
        again = admin.replay(batches=[1.0], max_failure_rate=0.2, settle_seconds=20, delivered=lambda job: False)
    finally:
        stop_worker(worker)
    assert again.replayed == [] and sorted(again.already_replayed) == ["sms-1", "sms-2", "sms-3"]
    assert again.to_json()["already_replayed"] == 3 and again.collisions == {} and again.stopped is None
    assert admin.dlq_jobs() == []
    counts = admin.counts("sms")
    assert counts["completed"] == 3 and counts["waiting"] == counts["active"] == 0, "a job was replayed twice"


def test_a_replay_id_held_by_an_earlier_replay_of_another_job_still_replays(admin: QueueAdmin,
                                                                            redis_server: RedisServer,
                                                                            prefix: str) -> None:
    """The same message, failed again after a counter reset, gets the DLQ id and replay id of one replayed
    before: the completed earlier replay must not pass for this one (the DLQ job would be dropped)."""
    message = [{"name": "send-sms", "data": {"message_id": "same"}}]
    for _ in range(2):
        reset_job_counter(redis_server, prefix, "sms")
        seed_jobs(redis_server.url, "sms", message, attempts=1, work=False, prefix=prefix)
        admin.move_to_dlq("sms", ["1"])  # before a worker runs: the seeded job must not be processed in place
        dlq_job = admin.job(DLQ, "sms-1")
        assert dlq_job is not None
        worker = start_worker(redis_server.url, "sms", prefix=prefix)
        try:
            report = admin.replay(batches=[1.0], max_failure_rate=0.2, settle_seconds=20, delivered=lambda job: False)
        finally:
            stop_worker(worker)
        assert report.replayed == ["sms-1"] and report.already_replayed == []
    assert report.collisions == {"sms-1": f"replay-sms-1-{dlq_job['timestamp']}"}
    assert admin.dlq_jobs() == [] and admin.counts("sms")["completed"] == 2


def test_remove_failed_removes_exactly_the_listed_failed_jobs(admin: QueueAdmin, redis_server: RedisServer,
                                                               prefix: str) -> None:
    seed_jobs(redis_server.url, "whatsapp", poison(8), attempts=1, prefix=prefix)
    failed = sorted(j["id"] for j in admin.jobs("whatsapp", ["failed"], limit=100))
    listed, kept = failed[:5], failed[5:]
    result = admin.remove_failed("whatsapp", [*listed, "404"])
    assert result == {"removed": listed, "not_failed": [], "gone": ["404"]}
    assert sorted(j["id"] for j in admin.jobs("whatsapp", ["failed"], limit=100)) == kept
    assert admin.remove_failed("whatsapp", listed) == {"removed": [], "not_failed": [], "gone": listed}


def test_remove_failed_leaves_a_job_that_left_failed(admin: QueueAdmin, redis_server: RedisServer, prefix: str) -> None:
    seed_jobs(redis_server.url, "whatsapp", [*poison(2), {"name": "send", "data": {"message_id": "ok"}}], attempts=1,
              prefix=prefix)

    async def retry(queue: Any) -> None:  # an operator retries job 1 from a console: it is waiting again
        job = await Job.fromId(queue, "1")
        await job.retry("failed")
    on_queue(redis_server, prefix, "whatsapp", retry)
    result = admin.remove_failed("whatsapp", ["1", "2", "3"])
    assert result == {"removed": ["2"], "not_failed": ["1", "3"], "gone": []}
    retried = admin.job("whatsapp", "1")
    assert retried is not None and retried["data"]["message_id"] == "m0"
    assert admin.jobs("whatsapp", ["waiting"]) == [retried] and admin.counts("whatsapp")["completed"] == 1


def test_remove_failed_against_a_dead_redis_fails_within_the_deadline() -> None:
    dead = QueueAdmin(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    started = time.monotonic()
    try:
        with pytest.raises(QueueError):
            dead.remove_failed("sms", ["1", "2"])
    finally:
        dead.close()
    assert time.monotonic() - started < 10


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

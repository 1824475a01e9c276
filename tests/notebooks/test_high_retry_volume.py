"""The High Retry Volume notebook, executed through papermill against the sandbox and a real
redis-server (BullMQ queues seeded by a real worker), per scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runbooklib import catalog
from runbooklib.queues import DLQ, QUEUES, QueueAdmin, dlq_id, replay_id
from runbooklib.review import compile_review
from runbooklib.review_figures import changes, key_figures, measurements
from runbooklib.runs import EXIT_DIAGNOSED, EXIT_HEALTHY, RunResult
from runbooklib.sandbox import Sandbox
from runbooklib.sandbox.bull import FAIL, seed_jobs
from tests.conftest import SandboxFactory
from tests.notebooks import helpers
from tests.notebooks.helpers import audit, decisions
from tests.services import RedisServer

SLUG = "high_retry_volume"
SCENARIOS = catalog.get(SLUG).scenarios()
WHOLE_RUNS = ['healthy_noisy', 'systemic_with_poison', 'storm_with_poison', 'queue_paused', 'hung_workers', 'dlq_growing']
"""A representative slice run as whole notebooks (papermill, a kernel); every scenario is triaged in-process by
tests/test_triage.py."""
GROWING = {"dlq_growing", "queue_stalled", "hung_workers"}
pytestmark = pytest.mark.notebook


def run(box: Sandbox, tmp_path: Path, **parameters: Any) -> RunResult:
    return helpers.run(SLUG, box, tmp_path, **parameters)


def make(make_sandbox: SandboxFactory, redis_server: RedisServer, scenario: str) -> Sandbox:
    return make_sandbox(scenario, slug=SLUG, redis_url=redis_server.url)


def states(admin: QueueAdmin) -> dict[str, dict[str, str]]:
    """Every job of every queue → its state, and each queue's paused flag."""
    out: dict[str, dict[str, str]] = {}
    for q in QUEUES:
        jobs: dict[str, str] = {}
        for state in ("waiting", "active", "delayed", "failed", "completed", "prioritized"):
            for job in admin.jobs(q, [state], limit=100_000):
                jobs[job["id"]] = state
        jobs["<paused>"] = str(admin.is_paused(q))
        out[q] = jobs
    return out


def test_every_cause_code_has_a_scenario() -> None:
    spec = catalog.get(SLUG)
    named = {s for s in SCENARIOS}
    assert set(spec.causes) - {"unknown"} <= named, "every cause has a scenario named after it"
    assert {spec.load_scenario(s).expect for s in SCENARIOS} <= set(spec.causes)


@pytest.mark.parametrize("scenario", WHOLE_RUNS)
def test_dry_run_names_the_cause_and_changes_no_job(scenario: str, make_sandbox: SandboxFactory,
                                                    redis_server: RedisServer, tmp_path: Path) -> None:
    box = make(make_sandbox, redis_server, scenario)
    admin = QueueAdmin(redis_server.url)
    before = states(admin)
    result = run(box, tmp_path)
    after = states(admin)
    admin.close()

    assert result.status == "completed", result.failed_cell
    assert result.cause == box.scenario.expect, result.summary["diagnosis"]
    assert result.exit_code == (EXIT_HEALTHY if result.cause == "healthy" else EXIT_DIAGNOSED)
    assert box.platform is not None and box.platform.mutations() == []
    for q in QUEUES:
        if scenario in GROWING:  # the sandbox keeps adding jobs; none of the earlier ones may move
            assert {k: v for k, v in after[q].items() if k in before[q]} == before[q], q
        else:
            assert after[q] == before[q], q
    assert set(decisions(result).values()) <= {"not_needed", "dry_run", "blocked"}


def test_poison_jobs_move_to_the_dlq_with_exact_accounting(make_sandbox: SandboxFactory, redis_server: RedisServer,
                                                          tmp_path: Path) -> None:
    box = make(make_sandbox, redis_server, "poison_messages")
    admin = QueueAdmin(redis_server.url)
    failed = {j["id"] for j in admin.jobs("sms", ["failed"], limit=1000)}
    assert len(failed) == 6
    result = run(box, tmp_path, dry_run=False, operator="alice", approve=["move_poison_to_dlq"])

    assert result.status == "completed", result.failed_cell
    entry = audit(result)["move_poison_to_dlq"]
    assert entry["decision"] == "applied" and entry["result"]["verified"] is True, entry
    in_source = {j["id"] for j in admin.jobs("sms", ["failed"], limit=1000)}
    in_dlq = [j["data"]["sourceJobId"] for j in admin.dlq_jobs()]
    assert len(in_dlq) == len(set(in_dlq))
    for job_id in failed:
        assert (job_id in in_source) != (job_id in in_dlq), job_id  # exactly one place
    assert {dlq_id("sms", i) for i in failed} == {j["id"] for j in admin.dlq_jobs()}
    admin.close()


def test_dlq_replay_skips_delivered_and_accounts_for_every_job(make_sandbox: SandboxFactory, redis_server: RedisServer,
                                                               tmp_path: Path) -> None:
    box = make(make_sandbox, redis_server, "healthy")
    admin = QueueAdmin(redis_server.url)
    dlq_before = {j["id"] for j in admin.dlq_jobs()}
    assert len(dlq_before) == 14
    result = run(box, tmp_path, dry_run=False, operator="bob", approve=["replay_dlq"])

    assert result.status == "completed", result.failed_cell
    entry = audit(result)["replay_dlq"]
    assert entry["decision"] == "applied", entry
    assert entry["result"]["replayed"] == 11 and entry["result"]["skipped_delivered"] == 3
    assert [b["size"] for b in entry["result"]["batches"]][0] == 1  # 1% of 14, at least one
    assert admin.dlq_jobs() == []
    replayed = [i for i in dlq_before if admin.job("sms", replay_id(i)) is not None]
    assert len(replayed) == 11
    assert all(admin.job("sms", replay_id(i))["attempts"] == 3 for i in replayed)  # type: ignore[index]
    admin.close()

    review = compile_review(tmp_path / "runs", "TEST-42")
    dlq = next(f for f in key_figures(measurements(review.runs), changes(review.runs)) if f.label == "DLQ size")
    assert dlq.mitigations[0].action == "replay_dlq"
    assert dlq.before is not None and dlq.before.value == 14 and dlq.after is not None and dlq.after.value == 0
    assert "| every channel (DLQ) | replay_dlq | 11 |" in review.markdown


def test_pause_and_fewer_attempts_are_applied_and_undone(make_sandbox: SandboxFactory, redis_server: RedisServer,
                                                         tmp_path: Path) -> None:
    box = make(make_sandbox, redis_server, "systemic_provider_failure")
    assert box.platform is not None
    result = run(box, tmp_path, dry_run=False, operator="carol",
                 approve=["pause_queue", "undo_pause_queue", "reduce_retry_attempts", "undo_reduce_retry_attempts"])

    assert result.status == "completed", result.failed_cell
    got = decisions(result)
    assert got["pause_queue"] == "applied" and got["undo_pause_queue"] == "undone"
    assert got["reduce_retry_attempts"] == "applied" and got["undo_reduce_retry_attempts"] == "undone"
    assert [json.loads(m["body"]) for m in box.platform.mutations()] == [{"attempts": 1}, {"attempts": 3}]
    admin = QueueAdmin(redis_server.url)
    assert admin.is_paused("sms") is False
    admin.close()


def test_only_permanently_failed_jobs_are_cleaned_and_only_after_the_review_list(
        make_sandbox: SandboxFactory, redis_server: RedisServer, tmp_path: Path) -> None:
    """Several causes at once: the jobs that failed for a permanent reason (filtered, invalid number) are removed;
    those a provider-side cause failed (a rate limit, an expired token) stay, to be re-driven once it is fixed."""
    box = make(make_sandbox, redis_server, "multiple_root_causes")
    result = run(box, tmp_path, dry_run=False, operator="dan", approve=["clean_failed_jobs"])
    assert result.status == "completed", result.failed_cell
    assert decisions(result)["clean_failed_jobs"] == "applied"
    review = (result.bundle / "failed_jobs_review.csv").read_text().splitlines()
    assert len(review) == 1 + 120  # every failed job is in the review list, removed or not
    admin = QueueAdmin(redis_server.url)
    left = {j["failedReason"] for q in ("sms", "whatsapp") for j in admin.jobs(q, ["failed"], limit=1000)}
    assert left == {"Twilio 20429: Too Many Requests", "Graph 190: Session has expired"}
    assert admin.counts("sms")["failed"] == 30 and admin.counts("whatsapp")["failed"] == 30
    admin.close()


def test_a_dlq_swapped_after_the_dry_run_is_not_replayed_under_its_approval(
        make_sandbox: SandboxFactory, redis_server: RedisServer, tmp_path: Path) -> None:
    """The probe: two DLQ jobs swapped for two others keep the count; the approval must not replay the two unseen."""
    box = make(make_sandbox, redis_server, "healthy")
    admin = QueueAdmin(redis_server.url)
    dry = run(box, tmp_path)
    planned = next(a for a in dry.actions if a["action"] == "replay_dlq")
    assert planned["decision"] == "dry_run", planned
    jobs = admin.dlq_jobs()
    for job in jobs[:2]:
        admin._run(lambda job=job: admin._queue(DLQ).remove(job["id"]))  # type: ignore[misc]
    for n, job in enumerate(jobs[:2]):
        data = {**job["data"], "sourceJobId": f"99900{n}", "data": {"message_id": f"never-reviewed-{n}"}}
        admin.add(DLQ, job["name"], data, {"jobId": f"sms-99900{n}"})
    before = sorted(j["id"] for j in admin.dlq_jobs())
    assert len(before) == len(jobs)

    stale = run(box, tmp_path, dry_run=False, operator="bob", approve=[f"replay_dlq@{planned['plan']['digest']}"])
    entry = audit(stale)["replay_dlq"]
    assert entry["decision"] == "refused", entry
    assert "added 2" in entry["message"] and "dropped 2" in entry["message"]
    assert sorted(j["id"] for j in admin.dlq_jobs()) == before, "no DLQ job replayed"
    assert admin.job("sms", replay_id("sms-999000")) is None
    admin.close()


def test_failed_jobs_that_arrive_after_the_review_are_not_cleaned_under_its_approval(
        make_sandbox: SandboxFactory, redis_server: RedisServer, tmp_path: Path) -> None:
    box = make(make_sandbox, redis_server, "multiple_root_causes")
    dry = run(box, tmp_path)
    planned = next(a for a in dry.actions if a["action"] == "clean_failed_jobs")
    assert planned["decision"] == "dry_run", planned
    reviewed = {i for s in planned["plan"]["steps"] for i in s["job_ids"]}
    seed_jobs(redis_server.url, "sms", [{"name": "send-sms", "data": {"message_id": f"late-{n}",
                                                                      FAIL: "Twilio 30007: Message filtered"}}
                                        for n in range(4)])
    admin = QueueAdmin(redis_server.url)
    late = {j["id"] for j in admin.jobs("sms", ["failed"], limit=1000)} - reviewed
    assert len(late) == 4 + 30  # the late ones, and the rate-limited ones a clean never plans

    stale = run(box, tmp_path, dry_run=False, operator="dan", approve=[f"clean_failed_jobs@{planned['plan']['digest']}"])
    assert audit(stale)["clean_failed_jobs"]["decision"] == "refused"
    assert {j["id"] for j in admin.jobs("sms", ["failed"], limit=1000)} == reviewed | late, "nothing removed"
    admin.close()

"""A run SIGKILLed while it applies: the record says so, the review says so, and a re-run never repeats the change.

Whole runs through papermill (the kernel is the process killed) for an HTTP action — the Lineup API's
retry-failed, held at the stand-in until the kernel is dead, so the effect lands with nobody to record it
— and, at the library level in a child process, a queue action (a DLQ move on a real Redis).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from runbooklib.audit import read_audit
from runbooklib.incident import list_runs
from runbooklib.queues import QueueAdmin
from runbooklib.review import compile_review
from runbooklib.runs import EXIT_MITIGATION_FAILED, RunResult
from runbooklib.sandbox.bull import FAIL, seed_jobs
from tests.conftest import SandboxFactory
from tests.notebooks import helpers
from tests.services import RedisServer

RETRY = "/api/v1/communication/retry-failed"


def kernels() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if any("ipykernel" in part for part in p.cmdline())]


def wait_for(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.notebook
def test_a_kill_during_an_http_apply_is_recorded_reviewed_and_not_repeated(make_sandbox: SandboxFactory,
                                                                            tmp_path: Path) -> None:
    box = make_sandbox("rate_limited", slug="sms_delivery_failure")
    assert box.platform is not None
    dry = helpers.run("sms_delivery_failure", box, tmp_path)
    digest = next(a for a in dry.actions if a["action"] == "retry_failed_sms")["plan"]["digest"]

    arrived, release = threading.Event(), threading.Event()
    handle = box.platform.handle

    def held(method: str, path: str, *args: Any) -> Any:
        if method == "POST" and path == RETRY:
            arrived.set()
            release.wait(60)  # the kernel is killed meanwhile; the platform then does what it was asked
        return handle(method, path, *args)

    box.platform.handle = held  # type: ignore[method-assign]
    outcome: dict[str, RunResult] = {}
    approve = [f"retry_failed_sms@{digest}"]
    worker = threading.Thread(target=lambda: outcome.setdefault("run", helpers.run(
        "sms_delivery_failure", box, tmp_path, dry_run=False, operator="carol", approve=approve)))
    worker.start()
    assert arrived.wait(120), "the approved run never called retry-failed"
    bundle = max((tmp_path / "runs" / "TEST-42").iterdir())
    assert [e["decision"] for e in read_audit(bundle / "audit.jsonl")][-1] == "applying", \
        "the applying record is on disk before the call goes out"
    for kernel in kernels():
        os.kill(kernel.pid, signal.SIGKILL)
    release.set()
    worker.join(120)
    killed = outcome["run"]
    assert killed.status == "failed"
    assert [e["action"] for e in killed.interrupted] == ["retry_failed_sms"]
    assert killed.exit_code == EXIT_MITIGATION_FAILED
    assert len([m for m in box.platform.mutations() if m["path"] == RETRY]) == 1  # it did land

    record = next(r for r in list_runs(tmp_path / "runs", "TEST-42") if r.location.endswith(killed.bundle.name))
    assert "INTERRUPTED" in record.line() and "outcome unknown" in record.line()
    review = compile_review(tmp_path / "runs", "TEST-42")
    assert "outcome unknown" in review.markdown and "no mitigation was applied" not in review.markdown.lower()

    box.platform.handle = handle  # type: ignore[method-assign]
    again = helpers.run("sms_delivery_failure", box, tmp_path, dry_run=False, operator="carol", approve=approve)
    assert again.status == "completed", again.failed_cell
    retry = helpers.audit(again)["retry_failed_sms"]
    assert retry["decision"] in ("refused", "blocked", "not_needed"), retry
    assert len([m for m in box.platform.mutations() if m["path"] == RETRY]) == 1, "the re-run repeated the retry"


CHILD = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    from runbooklib.actions import Action, Plan
    from runbooklib.audit import AuditLog
    from runbooklib.gates import Gate
    from runbooklib.leases import Leases
    from runbooklib.ledger import IncidentLedger
    from runbooklib.params import Approval
    from runbooklib.queues import QueueAdmin

    url, incident, run, digest, slow = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
    admin = QueueAdmin(url, prefix=sys.argv[6])

    class Move(Action):
        name, title = "move_poison_to_dlq", "Move poison jobs to the DLQ"
        def needed(self): return True, "poison"
        def plan(self):
            ids = sorted(j["id"] for j in admin.jobs("sms", ["failed"], limit=1000))
            return Plan(self.name, f"move {len(ids)}", steps=[{"bullmq": "move_to_dlq", "queue": "sms", "job_ids": ids}])
        def resources(self, plan): return ["queue:sms", "queue:communication-dlq"]
        def apply(self, plan):
            for job in plan.steps[0]["job_ids"]:
                admin.move_to_dlq("sms", [job])
                print("moved", job, flush=True)
                time.sleep(slow)
            return {"moved": len(plan.steps[0]["job_ids"])}
        def verify(self, plan, result): return True, "moved"

    audit = AuditLog(incident / run / "audit.jsonl", incident="INC-Q", runbook="high_retry_volume", operator="dan")
    (incident / run).mkdir(parents=True, exist_ok=True)
    (incident / run / "summary.json").write_text(json.dumps({"runbook": "high_retry_volume", "incident": "INC-Q",
        "status": "running", "started_at": "2026-12-02T00:00:00+00:00",
        "ledger": {"audit": audit.seal(), "evidence": {"entries": 0, "sha256": None}}}))
    leases = Leases(url, ttl=2, prefix=sys.argv[6] + ":lease:")
    gate = Gate(dry_run=not digest, approvals=[Approval("move_poison_to_dlq", digest or None)], operator="dan",
                audit=audit, known_actions=["move_poison_to_dlq"], ledger=IncidentLedger(incident, audit, run=run),
                leases=lambda r, h: leases.acquire(r, h), lease_store="redis", run=run)
    out = gate.run(Move())
    print("DECISION", out.decision, out.plan.digest if out.plan else "", out.message, flush=True)
''')


PREFIX = f"crash{os.getpid()}"


def child(redis_url: str, incident: Path, run: str, digest: str, slow: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, redis_url, str(incident), run, digest, str(slow), PREFIX],
                            stdout=subprocess.PIPE, text=True)


def test_a_kill_during_a_queue_apply_loses_no_job_and_the_rerun_does_not_repeat(redis_server: RedisServer,
                                                                               tmp_path: Path) -> None:
    admin = QueueAdmin(redis_server.url, prefix=PREFIX)
    seed_jobs(redis_server.url, "sms", [{"name": "send-sms", "data": {"message_id": f"m{i}", FAIL: "Twilio 30007"}}
                                        for i in range(6)], prefix=PREFIX)  # real jobs failed by a real worker
    ids = sorted(j["id"] for j in admin.jobs("sms", ["failed"], limit=100))
    incident = tmp_path / "INC-Q"
    dry = child(redis_server.url, incident, "1-dry", "", 0)
    line = [x for x in dry.communicate(timeout=60)[0].splitlines() if x.startswith("DECISION")][0]
    assert line.split()[1] == "dry_run"
    digest = line.split()[2]

    killed = child(redis_server.url, incident, "2-killed", digest, 0.5)
    assert killed.stdout is not None
    for line in killed.stdout:  # the first job moved: kill it mid-apply
        assert not line.startswith("DECISION"), f"the run ended before it was killed: {line}"
        if line.startswith("moved"):
            break
    else:
        pytest.fail("the approved run ended without moving a job")
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    entries = read_audit(incident / "2-killed" / "audit.jsonl")
    assert entries[-1]["decision"] == "applying", "an applying record, and no outcome"
    record = next(r for r in list_runs(tmp_path, "INC-Q") if r.location.endswith("2-killed"))
    assert [i["action"] for i in record.interrupted] == ["move_poison_to_dlq"]

    in_queue = {j["id"] for j in admin.jobs("sms", ["failed"], limit=1000)}
    in_dlq = [j["data"]["sourceJobId"] for j in admin.dlq_jobs()]
    assert sorted(in_queue | set(in_dlq)) == sorted(ids) and not in_queue & set(in_dlq), "no job lost or doubled"
    assert in_dlq, "the kill came after at least one move"

    time.sleep(2.5)  # the killed run's lease expires (ttl 2 s)
    rerun = child(redis_server.url, incident, "3-rerun", digest, 0)
    out = [x for x in rerun.communicate(timeout=60)[0].splitlines() if x.startswith("DECISION")][0]
    assert out.split()[1] == "refused" and "dropped" in out, out  # the plan shrank: approve the rest anew
    assert sorted(j["data"]["sourceJobId"] for j in admin.dlq_jobs()) == sorted(in_dlq), "nothing moved twice"
    admin.close()

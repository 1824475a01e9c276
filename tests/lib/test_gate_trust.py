"""Adversarial tests of the gate's promises, at the library level with a real Redis for leases:

- an approval covers exactly the approved effect set: growth, shrink and a swap of the same count are refused,
  with what differs, and nothing is applied;
- the `applying` record is on disk (fsynced) before `apply()` runs, and every outcome points back to it;
- two runs never apply to the same resource at once (a real race: both planned, one holds the mutating call);
- a re-run never repeats an applied effect (this run, another run of the incident, an interrupted apply);
- with no lease store nothing applies unless `allow_unlocked` was approved, and that approval is audited.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from runbooklib.actions import Action, Plan, describe_difference
from runbooklib.audit import AuditLog, read_audit
from runbooklib.gates import Gate
from runbooklib.leases import Leases
from runbooklib.ledger import IncidentLedger
from runbooklib.params import Approval
from tests.services import RedisServer


class World:
    """What the stand-in world holds: ids waiting for the action, and every id the action ever changed."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = list(ids)
        self.changed: list[str] = []


class Requeue(Action):
    """Re-queues exactly the plan's ids (removing them from the world's waiting list)."""

    name = "requeue"
    title = "Re-queue failed messages"

    def __init__(self, world: World, *, hold: threading.Event | None = None, started: threading.Event | None = None,
                 audit_path: Path | None = None) -> None:
        self.world = world
        self.hold, self.started, self.audit_path = hold, started, audit_path
        self.saw_applying: bool | None = None

    def needed(self) -> tuple[bool, str]:
        return True, "failures to retry"

    def plan(self) -> Plan:
        if not self.world.ids:
            return Plan(self.name, "nothing to re-queue", blocked="no failed message left")
        ids = sorted(self.world.ids)
        return Plan(self.name, f"re-queue {len(ids)} messages", steps=[{"call": "POST retry", "message_ids": ids}])

    def resources(self, plan: Plan) -> list[str]:
        return ["platform:sms:retry-failed"]

    def apply(self, plan: Plan) -> dict[str, Any]:
        if self.audit_path is not None:
            self.saw_applying = any(e["decision"] == "applying" for e in read_audit(self.audit_path))
        if self.started is not None:
            self.started.set()
        if self.hold is not None:
            assert self.hold.wait(20), "the test never released the held apply"
        ids = list(plan.steps[0]["message_ids"])
        self.world.changed += ids
        self.world.ids = [i for i in self.world.ids if i not in ids]
        return {"requeued": len(ids)}

    def verify(self, plan: Plan, result: dict[str, Any]) -> tuple[bool, str]:
        return True, f"{result['requeued']} re-queued"


class Send(Requeue):
    """A test message: its effect cannot be read back from the world."""

    name = "send"
    readback = False

    def plan(self) -> Plan:
        return Plan(self.name, "send 1 test SMS", steps=[{"send": "sms", "to": "+15550000000"}])

    def apply(self, plan: Plan) -> dict[str, Any]:
        self.world.changed.append("sent")
        return {"requeued": 1}


@pytest.fixture
def leases(redis_server: RedisServer) -> Leases:
    store = Leases(redis_server.url, prefix=f"test-lease:{id(object())}:", ttl=5)
    return store


def seal(audit: dict[str, Any]) -> dict[str, Any]:
    """A summary's ledger seal as a run writes it (no evidence kept)."""
    return {"audit": audit, "evidence": {"entries": 0, "sha256": None}}


def make_gate(incident: Path, run: str, approve: list[str], *, leases: Leases | None = None,
              operator: str = "alice", dry_run: bool = False) -> Gate:
    bundle = incident / run
    audit = AuditLog(bundle / "audit.jsonl", incident="INC-9", runbook="test", operator=operator)
    bundle.mkdir(parents=True, exist_ok=True)
    if not (bundle / "summary.json").exists():  # as a run's context writes it before any gate decision
        (bundle / "summary.json").write_text(json.dumps({"ledger": seal(audit.seal()), "actions": []}))
    return Gate(dry_run=dry_run, approvals=[Approval.parse(a) for a in approve], operator=operator, audit=audit,
                known_actions=["requeue", "send"], ledger=IncidentLedger(incident, audit, run=run),
                leases=(lambda r, h: leases.acquire(r, h)) if leases else None, lease_store="redis test", run=run)


def dry_plan(incident: Path, action: Action) -> Plan:
    out = make_gate(incident, "0-dry", [], dry_run=True).run(action)
    assert out.decision == "dry_run" and out.plan is not None
    return out.plan


@pytest.mark.parametrize(("change", "words"), [
    (lambda w: w.ids.extend(f"m{n}" for n in range(100, 3100)), "added 3,000"),
    (lambda w: w.ids.pop(), "dropped 1"),
    (lambda w: (w.ids.remove("m1"), w.ids.remove("m2"), w.ids.extend(["x1", "x2"])), "added 2"),
], ids=["growth", "shrink", "swap-same-count"])
def test_an_approval_covers_only_the_approved_effect_set(tmp_path: Path, leases: Leases, change: Any,
                                                         words: str) -> None:
    world = World([f"m{n}" for n in range(1, 11)])
    approved = dry_plan(tmp_path, Requeue(world))
    change(world)
    out = make_gate(tmp_path, "1-apply", [f"requeue@{approved.digest}"], leases=leases).run(Requeue(world))
    assert out.decision == "refused", out.message
    assert words in out.message and approved.digest in out.message
    assert world.changed == [], "nothing may change under an approval for another effect set"


def test_a_plan_that_changes_while_the_lease_is_taken_is_refused(tmp_path: Path, leases: Leases) -> None:
    world = World(["m1", "m2"])
    approved = dry_plan(tmp_path, Requeue(world))

    class Growing(Requeue):
        planned = 0

        def plan(self) -> Plan:
            Growing.planned += 1
            if Growing.planned == 2:  # between the gate's first look and the re-plan under the lease
                self.world.ids.append("m3")
            return super().plan()

    out = make_gate(tmp_path, "1-apply", [f"requeue@{approved.digest}"], leases=leases).run(Growing(world))
    assert out.decision == "refused" and "re-read before applying" in out.message and "m3" in out.message
    assert world.changed == []


def test_the_applying_record_is_on_disk_before_apply_and_the_outcome_points_to_it(tmp_path: Path,
                                                                                   leases: Leases) -> None:
    world = World(["m1"])
    approved = dry_plan(tmp_path, Requeue(world))
    action = Requeue(world, audit_path=tmp_path / "1-apply" / "audit.jsonl")
    out = make_gate(tmp_path, "1-apply", [f"requeue@{approved.digest}"], leases=leases).run(action)
    assert out.decision == "applied" and action.saw_applying is True
    entries = read_audit(tmp_path / "1-apply" / "audit.jsonl")
    applying, applied = entries[-2], entries[-1]
    assert applying["decision"] == "applying" and applying["plan_digest"] == approved.digest
    assert applying["approval"]["by"] == "alice" and applying["verify_by_hand"]
    assert applying["lease"]["resources"] == ["platform:sms:retry-failed"] and applying["lease"]["store"]
    assert applied["of"] == applying["seq"] and applied["prev"] == applying["hash"]


@pytest.mark.parametrize("resource", ["platform:sms:retry-failed", "channel:email:tenant:acme", "queue:sms",
                                      "queue:communication-dlq"])
def test_two_runs_racing_for_one_resource_apply_once(tmp_path: Path, leases: Leases, resource: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Requeue, "resources", lambda self, plan: [resource])
    world = World(["m1", "m2", "m3"])
    approved = dry_plan(tmp_path, Requeue(world))
    hold, started = threading.Event(), threading.Event()
    first = make_gate(tmp_path, "1-first", [f"requeue@{approved.digest}"], leases=leases, operator="alice")
    second = make_gate(tmp_path, "2-second", [f"requeue@{approved.digest}"], leases=leases, operator="bob")
    outcomes: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcomes.setdefault("first", first.run(
        Requeue(world, hold=hold, started=started))))
    thread.start()
    assert started.wait(10), "the first run never reached apply()"
    outcomes["second"] = second.run(Requeue(world))  # planned the same effect set while the first holds its call
    hold.set()
    thread.join(20)
    assert outcomes["first"].decision == "applied"
    assert outcomes["second"].decision == "blocked"
    assert "1-first" in outcomes["second"].message and "alice" in outcomes["second"].message
    assert sorted(world.changed) == ["m1", "m2", "m3"], "each message re-queued exactly once"


def test_a_rerun_with_the_same_approval_does_not_repeat_the_change(tmp_path: Path, leases: Leases) -> None:
    world = World(["m1", "m2"])
    approved = dry_plan(tmp_path, Requeue(world))
    assert make_gate(tmp_path, "1-apply", [f"requeue@{approved.digest}"], leases=leases).run(
        Requeue(world)).decision == "applied"
    world.ids += ["m1", "m2"]  # the same messages failed again: the world alone cannot tell
    again = make_gate(tmp_path, "2-rerun", [f"requeue@{approved.digest}"], leases=leases).run(Requeue(world))
    assert again.decision == "already_applied" and "1-apply" in again.message
    assert world.changed == ["m1", "m2"]
    same_run = make_gate(tmp_path, "3-jupyter", [f"requeue@{approved.digest}"], leases=leases)
    world.ids = ["m9"]
    fresh = dry_plan(tmp_path, Requeue(world))
    same_run._approvals["requeue"] = Approval("requeue", fresh.digest)
    assert same_run.run(Requeue(world)).decision == "applied"
    assert same_run.run(Requeue(world)).decision in ("already_applied", "blocked")  # a cell run twice
    assert world.changed == ["m1", "m2", "m9"]


def test_an_interrupted_apply_is_never_repeated_blindly(tmp_path: Path, leases: Leases) -> None:
    world = World([])
    approved = dry_plan(tmp_path, Send(world))
    killed = AuditLog(tmp_path / "1-killed" / "audit.jsonl", incident="INC-9", runbook="test", operator="alice")
    killed.record(action="send", decision="applying", plan=approved.to_json(), plan_digest=approved.digest,
                  verify_by_hand="the phone")  # and then the kernel was SIGKILLed
    (tmp_path / "1-killed" / "summary.json").write_text(json.dumps({"ledger": seal({"records": 0, "head": None})}))
    out = make_gate(tmp_path, "2-rerun", [f"send@{approved.digest}"], leases=leases).run(Send(world))
    assert out.decision == "blocked" and "interrupted" in out.message and "1-killed" in out.message
    assert world.changed == []


def test_an_interrupted_apply_whose_effect_did_not_land_is_finished_by_the_rerun(tmp_path: Path,
                                                                                  leases: Leases) -> None:
    world = World(["m1", "m2"])
    approved = dry_plan(tmp_path, Requeue(world))
    killed = AuditLog(tmp_path / "1-killed" / "audit.jsonl", incident="INC-9", runbook="test", operator="alice")
    killed.record(action="requeue", decision="applying", plan=approved.to_json(), plan_digest=approved.digest)
    (tmp_path / "1-killed" / "summary.json").write_text(json.dumps({"ledger": seal({"records": 0, "head": None})}))
    out = make_gate(tmp_path, "2-rerun", [f"requeue@{approved.digest}"], leases=leases).run(Requeue(world))
    assert out.decision == "applied" and world.changed == ["m1", "m2"]
    applying = [e for e in read_audit(tmp_path / "2-rerun" / "audit.jsonl") if e["decision"] == "applying"]
    assert applying[0]["resumes"] == "1-killed"


def test_without_a_lease_store_nothing_applies_unless_allow_unlocked_is_approved(tmp_path: Path) -> None:
    world = World(["m1"])
    approved = dry_plan(tmp_path, Requeue(world))
    out = make_gate(tmp_path, "1-apply", [f"requeue@{approved.digest}"]).run(Requeue(world))
    assert out.decision == "blocked" and "no shared lease store" in out.message and world.changed == []
    unlocked = make_gate(tmp_path, "2-apply", [f"requeue@{approved.digest}", "allow_unlocked"], operator="carol")
    assert unlocked.run(Requeue(world)).decision == "applied"
    applying = next(e for e in read_audit(tmp_path / "2-apply" / "audit.jsonl") if e["decision"] == "applying")
    assert applying["lease"] == {"resources": ["platform:sms:retry-failed"], "store": None, "unlocked_by": "carol"}


def test_an_unreachable_lease_store_blocks(tmp_path: Path) -> None:
    world = World(["m1"])
    approved = dry_plan(tmp_path, Requeue(world))
    dead = Leases("redis://127.0.0.1:1/0", timeout=0.5, total_timeout=1.0)
    out = make_gate(tmp_path, "1-apply", [f"requeue@{approved.digest}"], leases=dead).run(Requeue(world))
    assert out.decision == "blocked" and "lease store did not answer" in out.message and world.changed == []


def test_a_bare_approval_binds_nothing(tmp_path: Path, leases: Leases) -> None:
    world = World(["m1"])
    out = make_gate(tmp_path, "1-apply", ["requeue"], leases=leases).run(Requeue(world))
    assert out.decision == "refused" and "names no plan digest" in out.message and world.changed == []


def test_the_difference_names_what_was_added_and_dropped() -> None:
    old = [{"call": "PATCH", "tenant_id": "a", "from": "smtp", "to": "backup"}]
    new = [{"call": "PATCH", "tenant_id": "a", "from": "ses", "to": "backup"},
           {"call": "PATCH", "tenant_id": "b", "from": "smtp", "to": "backup"}]
    text = describe_difference(old, new)
    assert "added 2" in text and "dropped 1" in text and "tenant_id=b" in text
    assert describe_difference(old, old) == "the same targets, in a different form"


@pytest.mark.parametrize("tamper", ["delete the applied line", "delete the audit", "edit a line",
                                    "delete the seal and the last lines", "strip the hashes and the seal",
                                    "delete the audit and the seal", "delete the summary"])
def test_a_damaged_record_of_an_earlier_run_blocks_instead_of_reading_as_not_applied(
        tmp_path: Path, leases: Leases, tamper: str) -> None:
    """Removing the `applied` record must not turn "already applied" into "apply again"."""
    world = World(["m1", "m2"])
    approved = dry_plan(tmp_path, Requeue(world))
    first = make_gate(tmp_path, "1-apply", [f"requeue@{approved.digest}"], leases=leases)
    assert first.run(Requeue(world)).decision == "applied"
    summary = tmp_path / "1-apply" / "summary.json"
    summary.write_text(json.dumps({"ledger": seal(first.audit.seal()),
                                   "actions": [o.to_json() for o in first.outcomes]}))
    path = tmp_path / "1-apply" / "audit.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    unsealed = json.dumps({"actions": [o.to_json() for o in first.outcomes]})
    if tamper == "delete the applied line":
        path.write_text("".join(lines[:-1]))
    elif tamper == "delete the audit":
        path.unlink()
    elif tamper == "edit a line":
        path.write_text("".join(lines[:-1]) + lines[-1].replace('"applied"', '"failed"'))
    elif tamper == "delete the seal and the last lines":  # the chain that is left is whole
        path.write_text("".join(lines[:-2]))
        summary.write_text(unsealed)
    elif tamper == "strip the hashes and the seal":  # made to look like a record from before chaining
        kept = [json.loads(line) for line in lines[:-2]]
        path.write_text("".join(json.dumps({k: v for k, v in e.items() if k not in ("hash", "prev", "seq")}) + "\n"
                                for e in kept))
        summary.write_text(unsealed)
    elif tamper == "delete the audit and the seal":
        path.unlink()
        summary.write_text(unsealed)
    else:
        summary.unlink()
    world.ids = ["m1", "m2"]  # the world shows the same effect set again
    again = make_gate(tmp_path, "2-rerun", [f"requeue@{approved.digest}"], leases=leases).run(Requeue(world))
    if tamper == "delete the summary":  # the audit itself still holds the apply
        assert again.decision in ("blocked", "already_applied"), again.message
    else:
        assert again.decision == "blocked" and "damaged" in again.message and "1-apply" in again.message, again.message
    assert world.changed == ["m1", "m2"]


def test_a_full_digest_finds_the_earlier_apply_like_the_printed_one(tmp_path: Path, leases: Leases) -> None:
    world = World(["m1"])
    approved = dry_plan(tmp_path, Requeue(world))
    assert make_gate(tmp_path, "1-apply", [f"requeue@{approved.full_digest}"], leases=leases).run(
        Requeue(world)).decision == "applied"
    world.ids = ["m1"]
    again = make_gate(tmp_path, "2-rerun", [f"requeue@{approved.full_digest.upper()}"], leases=leases)
    assert again.run(Requeue(world)).decision == "already_applied" and world.changed == ["m1"]


def test_an_interrupted_send_is_not_repeated_under_the_full_digest_either(tmp_path: Path, leases: Leases) -> None:
    world = World([])
    approved = dry_plan(tmp_path, Send(world))
    killed = AuditLog(tmp_path / "1-killed" / "audit.jsonl", incident="INC-9", runbook="test", operator="alice")
    killed.record(action="send", decision="applying", plan=approved.to_json(), plan_digest=approved.digest)
    (tmp_path / "1-killed" / "summary.json").write_text(json.dumps({"ledger": seal({"records": 0, "head": None})}))
    out = make_gate(tmp_path, "2-rerun", [f"send@{approved.full_digest}"], leases=leases).run(Send(world))
    assert out.decision == "blocked" and world.changed == []


def test_a_bundle_reopened_in_jupyter_remembers_what_it_applied(tmp_path: Path, leases: Leases) -> None:
    world = World([])
    approved = dry_plan(tmp_path, Send(world))
    assert make_gate(tmp_path, "1-session", [f"send@{approved.digest}"], leases=leases).run(
        Send(world)).decision == "applied"
    reopened = make_gate(tmp_path, "1-session", [f"send@{approved.digest}"], leases=leases)  # a new kernel, same run_dir
    assert reopened.run(Send(world)).decision == "already_applied" and world.changed == ["sent"]


def test_a_plan_approved_in_one_environment_does_not_apply_in_another(tmp_path: Path, leases: Leases) -> None:
    world = World(["m1"])
    staging = make_gate(tmp_path, "0-staging", [], dry_run=True)
    staging.context = {"environment": "staging"}
    planned = staging.run(Requeue(world)).plan
    assert planned is not None
    production = make_gate(tmp_path, "1-production", [f"requeue@{planned.digest}"], leases=leases)
    production.context = {"environment": "production"}
    out = production.run(Requeue(world))
    assert out.decision == "refused" and "staging" in out.message and world.changed == []


def test_the_difference_names_changed_settings_apart_from_targets() -> None:
    old = [{"call": "POST retry", "message_ids": ["a", "b"], "count": 2, "max": 2}]
    new = [{"call": "POST retry", "message_ids": ["a", "b", "c"], "count": 3, "max": 3}]
    text = describe_difference(old, new)
    assert text.startswith("added 1: message_id c") and "count 2 → 3" in text and "max 2 → 3" in text

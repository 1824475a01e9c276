"""The ledger: a hash-chained audit log sealed in the summary with the evidence index, verified by `runbook runs`
and the review. Bundles are written by hand with `AuditLog` (no notebook runs), then tampered with the way a
person, a partial copy or a kill would."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from runbooklib.audit import DECISIONS, AuditLog, entry_hash, evidence_seal, read_audit, verify_chain
from runbooklib.incident import list_runs
from runbooklib.review import compile_review
from runbooklib.webhook import send_webhook

INCIDENT = "INC-5"
RUN = "20261201T030000Z-sms_delivery_failure"
DIGEST = "a1b2c3d4e5f60718"
VERIFY = "count SMS messages RETRYING since 03:00 in message_logs; if they were re-queued, do not retry again"
APPROVAL = {"action": "retry_failed_sms", "by": "alice", "source": "parameter", "plan_digest": DIGEST}
NOTHING = ("no mitigation was applied", "No mitigation was applied in this incident.")
"""What a review must never say when the record cannot show it."""


class Bundle:
    """A run bundle written as a run writes it: audit via `AuditLog`, evidence CSVs and their index, and a
    summary.json sealing both (`seal()`, as the context rewrites it after every record)."""

    def __init__(self, root: Path, name: str = RUN) -> None:
        self.dir = root / INCIDENT / name
        self.evidence = self.dir / "evidence"
        self.evidence.mkdir(parents=True)
        self.audit = AuditLog(self.dir / "audit.jsonl", incident=INCIDENT, runbook="sms_delivery_failure",
                              operator="alice")
        self.kept = 0

    @property
    def audit_path(self) -> Path:
        return self.dir / "audit.jsonl"

    @property
    def index(self) -> Path:
        return self.evidence / "index.jsonl"

    def keep(self, text: str) -> None:
        """One kept query result, as `RunContext.keep_evidence` writes it."""
        self.kept += 1
        name = f"{self.kept:03d}.csv"
        (self.evidence / name).write_text(text)
        entry = {"file": name, "sql": "SELECT status, count(*) FROM message_logs WHERE created_at >= :since",
                 "params": {"since": "2026-12-01T02:00:00+00:00"}, "rows": text.count("\n") - 1,
                 "sha256": hashlib.sha256(text.encode()).hexdigest(), "at": "2026-12-01T03:00:10+00:00"}
        with self.index.open("a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def seal(self) -> None:
        summary = {"runbook": "sms_delivery_failure", "incident": INCIDENT, "status": "completed",
                   "started_at": "2026-12-01T03:00:00+00:00", "operator": "alice", "environment": "demo",
                   "diagnosis": {"cause": "rate_limited", "outcome": "cause", "explanation": "Twilio 20429",
                                 "unchecked": []},
                   "ledger": {"audit": self.audit.seal(), "evidence": evidence_seal(self.evidence)}}
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))

    def record(self, decision: str, action: str = "retry_failed_sms", **details: Any) -> dict[str, Any]:
        entry = self.audit.record(action=action, decision=decision, **details)
        self.seal()
        return entry

    def applying(self) -> dict[str, Any]:
        return self.audit.record(action="retry_failed_sms", decision="applying", message=f"applying plan {DIGEST}",
                                 plan={"digest": DIGEST, "steps": [{"retry": "SMS", "max": 40}]}, plan_digest=DIGEST,
                                 approval=APPROVAL, run=self.dir.name, lease={"resources": ["queue:sms"]},
                                 verify_by_hand=VERIFY)

    def lines(self) -> list[str]:
        return self.audit_path.read_text().splitlines(keepends=True)

    def write_lines(self, lines: list[str]) -> None:
        self.audit_path.write_text("".join(lines))


def complete(root: Path) -> Bundle:
    """A finished run: two kept results; dry run, applying → applied (of), then a refused second action."""
    b = Bundle(root)
    b.keep("status,count\nFAILED,40\nSENT,100\n")
    b.seal()
    b.keep("error_code,count\n20429,38\n")
    b.record("dry_run", message="dry run: nothing changed", plan_digest=DIGEST)
    applying = b.applying()
    b.seal()
    b.record("applied", message="re-queued 38 messages", plan_digest=DIGEST, approval=APPROVAL,
             result={"retried": 38}, of=applying["seq"])
    b.record("refused", action="use_fallback_channel", message="not approved", plan_digest="ffff0000ffff0000")
    return b


def problems(root: Path) -> list[str]:
    (run,) = list_runs(root, INCIDENT)
    return run.problems


def review_md(root: Path) -> str:
    return compile_review(root, INCIDENT).markdown


def section(markdown: str, heading: str) -> str:
    start = markdown.index(heading)
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end >= 0 else None]


def assert_unconfirmed(root: Path) -> str:
    """The review and `runs` flag the record and never say nothing was applied; returns the review."""
    md = review_md(root)
    for words in NOTHING:
        assert words not in md
    assert "cannot confirm" in section(md, "## Summary") and "cannot confirm" in section(md, "## Key figures")
    integrity = section(md, "## Record integrity")
    assert "cannot be fully trusted" in integrity and "**run 1**" in integrity
    (run,) = list_runs(root, INCIDENT)
    assert run.problems and "nothing applied" not in run.line()
    return md


# -- the audit log itself --------------------------------------------------------------------------


def test_entries_are_chained_in_order_and_hash_as_written(tmp_path: Path) -> None:
    b = complete(tmp_path)
    entries = read_audit(b.audit_path)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4]
    assert entries[0]["prev"] == "" and all(e["prev"] == p["hash"] for p, e in zip(entries, entries[1:], strict=False))
    for entry in entries:
        body = {k: v for k, v in entry.items() if k != "hash"}
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
        assert entry["hash"] == hashlib.sha256(text.encode()).hexdigest() == entry_hash(entry)
    assert entries == b.audit.entries  # what it keeps in memory is what reads back
    assert entries[2]["of"] == entries[1]["seq"] and entries[1]["verify_by_hand"] == VERIFY
    assert b.audit.seal() == {"records": 4, "head": entries[-1]["hash"]}
    assert verify_chain(entries) == []
    assert {"applying", "already_applied", "applied", "failed", "undone", "dry_run", "refused"} <= set(DECISIONS)


def test_the_chain_fields_are_the_logs_own(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", incident=INCIDENT, runbook="x", operator="a")
    for field in ("seq", "prev", "hash"):
        with pytest.raises(ValueError, match="written by the audit log"):
            log.record(action="a", decision="dry_run", **{field: 1})
    with pytest.raises(ValueError, match="decision must be one of"):
        log.record(action="a", decision="maybe")
    assert not (tmp_path / "audit.jsonl").exists() and log.seal() == {"records": 0, "head": None}


def test_redaction_happens_before_hashing(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", incident=INCIDENT, runbook="x", operator="a")
    entry = log.record(action="a", decision="dry_run", message="sent to oncall@lineup.app", at=tmp_path)
    (read,) = read_audit(tmp_path / "audit.jsonl")
    assert "oncall@lineup.app" not in (tmp_path / "audit.jsonl").read_text()
    assert read == entry and read["at"] == str(tmp_path) and verify_chain([read]) == []


def test_a_log_opened_again_continues_its_chain_even_after_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditLog(path, incident=INCIDENT, runbook="x", operator="a")
    first.record(action="a", decision="dry_run")
    first.record(action="a", decision="refused")
    with path.open("a") as fh:
        fh.write('{"ts": "2026-12-01T03:0')  # killed mid-write
    again = AuditLog(path, incident=INCIDENT, runbook="x", operator="a")
    again.record(action="a", decision="dry_run")
    found: list[str] = []
    entries = read_audit(path, found)
    assert [e["seq"] for e in entries] == [1, 2, 3] and verify_chain(entries) == []
    assert found == ["audit.jsonl line 3 is not readable (torn or edited); skipped"]
    assert again.seal() == {"records": 3, "head": entries[-1]["hash"]}


def test_an_older_log_is_one_note_not_a_flood() -> None:
    older = [{"ts": "t", "action": "a", "decision": "applied"}, {"ts": "t", "action": "b", "decision": "dry_run"}]
    assert verify_chain(older) == ["audit.jsonl is not chained (older record): an edited, deleted or reordered "
                                   "line cannot be detected"]
    assert verify_chain([]) == []


def test_the_evidence_seal_is_of_the_index_bytes(tmp_path: Path) -> None:
    assert evidence_seal(tmp_path) == {"entries": 0, "sha256": None}
    (tmp_path / "index.jsonl").write_bytes(b'{"file": "001.csv"}\n{"file": "002.csv"}\n')
    assert evidence_seal(tmp_path) == {
        "entries": 2, "sha256": hashlib.sha256(b'{"file": "001.csv"}\n{"file": "002.csv"}\n').hexdigest()}


# -- a clean bundle: nothing to report (so that the checks below can fail) -------------------------


def test_a_clean_bundle_has_no_problems(tmp_path: Path) -> None:
    complete(tmp_path)
    (run,) = list_runs(tmp_path, INCIDENT)
    assert run.problems == [] and run.interrupted == [] and run.applied == ["retry_failed_sms"]
    assert "retry_failed_sms" in run.line() and "INTERRUPTED" not in run.line()
    md = review_md(tmp_path)
    assert "Every run's record verified" in section(md, "## Record integrity")
    assert "cannot confirm" not in md and "Record problems" not in md and "interrupted" not in md
    assert "- **Done**: retry_failed_sms (" in md
    evidence = section(md, "## Evidence")
    assert "| 2 | all match |" in evidence


def test_a_bundle_with_no_decisions_says_nothing_was_applied(tmp_path: Path) -> None:
    b = Bundle(tmp_path)
    b.keep("status,count\nSENT,1\n")
    b.seal()
    assert problems(tmp_path) == []
    md = review_md(tmp_path)
    assert "- **Done**: no mitigation was applied" in md and "No mitigation was applied in this incident." in md


# -- the audit log tampered with ---------------------------------------------------------------------


def test_deleting_the_applied_line_is_caught_and_the_apply_shows_as_interrupted(tmp_path: Path) -> None:
    b = complete(tmp_path)
    lines = b.lines()
    b.write_lines([line for line in lines if '"decision": "applied"' not in line])
    found = problems(tmp_path)
    assert any(p.startswith("audit.jsonl line 3 (seq 4, use_fallback_channel refused): it does not follow the line "
                            "before it (prev hash differs); seq 4 where 3 was due") for p in found), found
    assert any("audit.jsonl was truncated or rewritten: the summary seals 4 records" in p and "the file has 3" in p
               for p in found), found
    md = assert_unconfirmed(tmp_path)
    assert "retry_failed_sms (run 1): interrupted while applying — outcome unknown; verify: " + VERIFY in md


def test_deleting_the_audit_log_is_caught(tmp_path: Path) -> None:
    b = complete(tmp_path)
    b.audit_path.unlink()
    assert problems(tmp_path) == [
        "audit.jsonl is missing: 4 records sealed — no decision of this run (an applied mitigation included) can be read"]
    md = assert_unconfirmed(tmp_path)
    assert "no mitigation is on record, but the record cannot confirm that none was applied" in md
    (run,) = list_runs(tmp_path, INCIDENT)
    assert "none on record (unconfirmed)" in run.line()


@pytest.mark.parametrize("cut", ["last line", "mid-line"])
def test_truncating_the_audit_log_is_caught(tmp_path: Path, cut: str) -> None:
    b = complete(tmp_path)
    text = b.audit_path.read_text()
    if cut == "last line":
        b.write_lines(b.lines()[:-1])
    else:
        b.audit_path.write_text(text[: len(text) - 40])
    found = problems(tmp_path)
    assert any("audit.jsonl was truncated or rewritten: the summary seals 4 records (head " in p and "the file has 3" in p
               for p in found), found
    if cut == "mid-line":
        assert "audit.jsonl line 4 is not readable (torn or edited); skipped" in found
    assert_unconfirmed(tmp_path)


def test_truncating_to_before_the_apply_is_caught_and_never_reads_as_nothing_applied(tmp_path: Path) -> None:
    b = complete(tmp_path)
    b.write_lines(b.lines()[:1])  # only the dry run is left: on its face, nothing was applied
    found = problems(tmp_path)
    assert any("the summary seals 4 records" in p and "the file has 1" in p for p in found), found
    md = assert_unconfirmed(tmp_path)
    assert "no mitigation is on record, but the record cannot confirm that none was applied" in md


def test_reordering_two_lines_is_caught(tmp_path: Path) -> None:
    b = complete(tmp_path)
    lines = b.lines()
    lines[2], lines[3] = lines[3], lines[2]
    b.write_lines(lines)
    found = problems(tmp_path)
    assert any(p.startswith("audit.jsonl line 3 (seq 4, use_fallback_channel refused): it does not follow")
               for p in found), found
    assert any(p.startswith("audit.jsonl line 4 (seq 3, retry_failed_sms applied): it does not follow")
               for p in found), found
    assert any("truncated or rewritten" in p for p in found), found  # the sealed head is no longer entry 4
    assert_unconfirmed(tmp_path)


@pytest.mark.parametrize("how", ["field only", "field and its hash", "whole chain rewritten"])
def test_editing_a_line_is_caught(tmp_path: Path, how: str) -> None:
    b = complete(tmp_path)
    entries = read_audit(b.audit_path)
    entries[2]["result"]["retried"] = 380
    if how != "field only":
        entries[2]["hash"] = entry_hash(entries[2])
    if how == "whole chain rewritten":
        for before, entry in zip(entries[2:], entries[3:], strict=False):
            entry["prev"] = before["hash"]
            entry["hash"] = entry_hash(entry)
    b.write_lines([json.dumps(e, sort_keys=True) + "\n" for e in entries])
    found = problems(tmp_path)
    expected = {
        "field only": "audit.jsonl line 3 (seq 3, retry_failed_sms applied): its content does not match its hash — "
                      "the line was edited",
        "field and its hash": "audit.jsonl line 4 (seq 4, use_fallback_channel refused): it does not follow the line "
                              "before it (prev hash differs)",
        "whole chain rewritten": "audit.jsonl was truncated or rewritten: the summary seals 4 records",
    }[how]
    assert any(p.startswith(expected) for p in found), found
    assert_unconfirmed(tmp_path)


def test_a_forged_line_is_caught(tmp_path: Path) -> None:
    b = complete(tmp_path)
    entries = read_audit(b.audit_path)
    forged = {**entries[2], "action": "undo_retry_failed_sms", "decision": "undone", "message": "rolled back",
              "seq": 4, "prev": entries[2]["hash"]}
    forged.pop("of")
    forged["hash"] = entry_hash(forged)
    lines = b.lines()
    b.write_lines(lines[:3] + [json.dumps(forged, sort_keys=True) + "\n"] + lines[3:])
    found = problems(tmp_path)
    assert any(p.startswith("audit.jsonl line 5 (seq 4, use_fallback_channel refused): it does not follow the line "
                            "before it (prev hash differs); seq 4 where 5 was due") for p in found), found
    assert any("truncated or rewritten" in p for p in found), found
    assert_unconfirmed(tmp_path)


def test_a_line_without_a_hash_in_a_chained_log_is_caught(tmp_path: Path) -> None:
    b = complete(tmp_path)
    lines = b.lines()
    inserted = json.dumps({"ts": "2026-12-01T03:05:00+00:00", "action": "retry_failed_sms", "decision": "undone"})
    b.write_lines(lines[:3] + [inserted + "\n"] + lines[3:])
    found = problems(tmp_path)
    assert any(p.startswith("audit.jsonl line 4 (retry_failed_sms undone) carries no hash in a chained log") for p in found)
    assert_unconfirmed(tmp_path)


# -- the evidence tampered with ----------------------------------------------------------------------


def evidence_row(md: str) -> str:
    return next(line for line in section(md, "## Evidence").splitlines() if line.startswith("| 1 "))


def test_deleting_the_evidence_index_is_caught(tmp_path: Path) -> None:
    b = complete(tmp_path)
    b.index.unlink()
    assert problems(tmp_path) == ["evidence/index.jsonl is missing: the summary seals 2 kept query results — the "
                                  "evidence behind this run's decisions cannot be checked"]
    md = assert_unconfirmed(tmp_path)
    assert "MISSING: index.jsonl" in evidence_row(md)


def test_a_csv_edited_with_its_index_entry_is_caught(tmp_path: Path) -> None:
    b = complete(tmp_path)
    csv = b.evidence / "001.csv"
    csv.write_text("status,count\nFAILED,4\nSENT,136\n")
    entries = [json.loads(line) for line in b.index.read_text().splitlines()]
    entries[0]["sha256"] = hashlib.sha256(csv.read_bytes()).hexdigest()
    b.index.write_text("".join(json.dumps(e) + "\n" for e in entries))
    found = problems(tmp_path)
    assert found == ["evidence/index.jsonl was rewritten: its first 2 entries do not hash to the sealed sha256 ("
                     + json.loads((b.dir / "summary.json").read_text())["ledger"]["evidence"]["sha256"][:12]
                     + "…) — an entry (a file's checksum, its SQL or values) was edited, so the evidence cannot be "
                       "trusted"]
    md = assert_unconfirmed(tmp_path)
    assert "MISMATCH: index.jsonl does not match the summary's seal" in evidence_row(md)


def test_a_csv_edited_alone_is_still_caught_and_is_a_record_problem(tmp_path: Path) -> None:
    b = complete(tmp_path)
    (b.evidence / "002.csv").write_text("error_code,count\n20429,3\n")
    assert problems(tmp_path) == ["evidence/002.csv does not match its SHA-256 in index.jsonl: edited or replaced, "
                                  "so the figures it kept cannot be trusted"]
    assert "MISMATCH: 002.csv" in evidence_row(assert_unconfirmed(tmp_path))


def test_a_truncated_index_is_caught(tmp_path: Path) -> None:
    b = complete(tmp_path)
    b.index.write_text(b.index.read_text().splitlines(keepends=True)[0])
    assert problems(tmp_path)[0].startswith("evidence/index.jsonl was truncated or rewritten: the summary seals 2 "
                                            "entries")


# -- a kill mid-apply --------------------------------------------------------------------------------


@pytest.mark.parametrize("sealed", ["after the applying line", "before the applying line"])
def test_a_kill_while_applying_is_an_interrupted_apply_not_nothing_applied(tmp_path: Path, sealed: str,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    b = Bundle(tmp_path)
    b.keep("status,count\nFAILED,40\n")
    b.record("dry_run", message="dry run: nothing changed", plan_digest=DIGEST)
    b.applying()
    if sealed == "after the applying line":
        b.seal()
    else:  # the kill came between the audit line (fsynced first) and the summary; a result was kept meanwhile
        b.keep("error_code,count\n20429,38\n")
    (run,) = list_runs(tmp_path, INCIDENT)
    assert run.problems == []  # records beyond the seal were written after the last summary: chain-checked, fine
    assert run.interrupted == [{"action": "retry_failed_sms", "verify_by_hand": VERIFY, "plan_digest": DIGEST,
                                "seq": 2, "at": run.audit[1]["ts"]}]
    assert run.applied == [] and "retry_failed_sms INTERRUPTED (outcome unknown)" in run.line()
    md = review_md(tmp_path)
    for words in NOTHING:
        assert words not in md
    phrase = f"retry_failed_sms (run 1): interrupted while applying — outcome unknown; verify: {VERIFY}"
    assert phrase in section(md, "## Summary") and phrase in section(md, "## Key figures")
    assert any(phrase in line and "retry_failed_sms: applying" in line for line in section(md, "## Timeline").splitlines())
    assert "retry_failed_sms INTERRUPTED (outcome unknown)" in section(md, "## Runs")

    from runbooklib.cli import main

    assert main(["runs", "--output", str(tmp_path)]) == 0
    assert "retry_failed_sms INTERRUPTED (outcome unknown)" in capsys.readouterr().out


def test_an_apply_with_its_outcome_is_not_interrupted(tmp_path: Path) -> None:
    b = Bundle(tmp_path)
    applying = b.applying()
    b.record("failed", message="apply failed: 503", plan_digest=DIGEST, of=applying["seq"])
    (run,) = list_runs(tmp_path, INCIDENT)
    assert run.interrupted == [] and run.problems == [] and "interrupted" not in review_md(tmp_path)


def test_already_applied_is_in_the_timeline_but_not_a_change(tmp_path: Path) -> None:
    b = Bundle(tmp_path)
    b.record("already_applied", message=f"plan {DIGEST} was already applied", plan_digest=DIGEST, approval=APPROVAL,
             by_run="20261201T020000Z-sms_delivery_failure")
    (run,) = list_runs(tmp_path, INCIDENT)
    assert run.applied == [] and run.interrupted == [] and run.problems == []
    md = review_md(tmp_path)
    assert "retry_failed_sms: already_applied" in md
    assert "skipped: already applied by run 20261201T020000Z-sms_delivery_failure" in section(md, "## Timeline")
    assert "- **Done**: no mitigation was applied" in md


# -- older records ----------------------------------------------------------------------------------


def test_an_older_bundle_gets_one_note(tmp_path: Path) -> None:
    bundle = tmp_path / INCIDENT / RUN
    bundle.mkdir(parents=True)
    (bundle / "summary.json").write_text(json.dumps({"runbook": "sms_delivery_failure", "status": "completed",
                                                     "started_at": "2026-12-01T03:00:00+00:00"}))
    (bundle / "audit.jsonl").write_text("".join(json.dumps({"ts": f"2026-12-01T03:0{i}:00+00:00", "action": "x",
                                                            "decision": "dry_run"}) + "\n" for i in range(5)))
    found = problems(tmp_path)
    assert len(found) == 1 and found[0].startswith("not sealed (older record)")
    assert "no mitigation was applied" not in review_md(tmp_path)


# -- the webhook ------------------------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A ticketing webhook on loopback that keeps every body posted to it."""
    posts: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/incident", posts
    finally:
        server.shutdown()
        server.server_close()
        thread.join()



def test_the_webhook_carries_interrupted_applies_and_record_problems(
        tmp_path: Path, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, posts = receiver
    b = Bundle(tmp_path)
    b.keep("status,count\nFAILED,40\n")
    b.record("dry_run", message="dry run", plan_digest=DIGEST)
    b.applying()
    b.seal()
    (b.evidence / "001.csv").write_text("status,count\nFAILED,0\n")
    review = compile_review(tmp_path, INCIDENT)
    assert send_webhook(url, review, markdown_at="review.md", html_at="review.html") == 201
    (run,) = posts[0]["runs"]
    assert run["interrupted"] == [{"action": "retry_failed_sms", "verify_by_hand": VERIFY, "plan_digest": DIGEST}]
    assert run["applied"] == [] and run["record_problems"] == [
        "evidence/001.csv does not match its SHA-256 in index.jsonl: edited or replaced, so the figures it kept cannot "
        "be trusted"]
    done = next(line for line in posts[0]["summary"] if line.startswith("**Done**"))
    assert "interrupted while applying — outcome unknown" in done and "cannot confirm this is all" in done

"""The gate as the terminal shows it, and two runs racing for the same tenants.

- `runbook demo` (a dry run by default) prints each mitigation's decision, its plan in a few lines, its digest and
  the exact command approving those plans; that command, copied and run, applies them;
- approvals left in a dry run are said to be ignored; a refused approval says why;
- two approved runs of the same plan at once: the second is blocked by the first's lease and names it; the
  tenants are switched once (a PATCH per tenant), and only one audit holds the change.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runbooklib.audit import read_audit
from runbooklib.cli import main
from runbooklib.runs import EXIT_DIAGNOSED, RunResult
from tests.conftest import SandboxFactory
from tests.notebooks import helpers

pytestmark = pytest.mark.notebook
APPROVE_HEADER = "to apply exactly these plans (after reviewing them), run:"


def demo(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    code = main(["demo", "email_provider_failure", "--scenario", "smtp_unreachable", "--incident", "INC-5",
                 "--no-progress", "--output", str(tmp_path / "records"), "-p", "recovery_samples", "1", *extra])
    return code, capsys.readouterr().out


def test_the_terminal_shows_the_gate_and_the_printed_command_applies_it(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out = demo(tmp_path, capsys)
    assert code == EXIT_DIAGNOSED, out
    assert re.search(r"DRY RUN +switch_email_provider", out)
    digest = re.search(r"plan ([0-9a-f]{16}): switch \d+ tenant", out)
    assert digest, out
    assert "tenant_id=acme from=ses to=smtp_backup" in out or "tenant_id=acme" in out
    lines = out.splitlines()
    command = lines[lines.index(APPROVE_HEADER) + 1].strip()
    assert f"switch_email_provider@{digest.group(1)}" in command

    left, out = demo(tmp_path, capsys, "-p", "operator", "eve", "-p", "approve",
                     f"switch_email_provider@{digest.group(1)}")
    assert "approvals were given (switch_email_provider@" in out and "dry_run is true" in out
    assert "changes applied: none" in out

    wrong = "f" * 16
    refused, out = demo(tmp_path, capsys, "-p", "dry_run", "false", "-p", "operator", "eve", "-p", "approve",
                        f"switch_email_provider@{wrong}")
    assert re.search(r"REFUSED +switch_email_provider: approval was for plan f{16}", out), out
    assert "changes applied: none" in out

    argv = shlex.split(command.replace("<you>", "eve"))
    assert argv[0] == "runbook"
    applied = main(argv[1:])
    out = capsys.readouterr().out
    assert applied == EXIT_DIAGNOSED, out
    assert re.search(r"APPLIED +switch_email_provider", out) and "changes applied: switch_email_provider" in out


def test_two_runs_of_one_plan_at_once_switch_each_tenant_once(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make_sandbox("smtp_auth_failure")
    assert box.platform is not None
    dry = helpers.run("email_provider_failure", box, tmp_path)
    digest = next(a for a in dry.actions if a["action"] == "switch_email_provider")["plan"]["digest"]
    approve = [f"switch_email_provider@{digest}"]

    describe = box.describe

    def patient() -> dict[str, Any]:  # the first run's held call must outlast the second run's way to the gate
        out = describe()
        out["profile"]["timeouts"] = {"connect": 3, "read": 90, "total": 120}
        return out

    box.describe = patient  # type: ignore[method-assign]
    arrived = threading.Event()
    handle = box.platform.handle
    records = tmp_path / "runs" / "TEST-42"

    def second_decided() -> bool:
        return any(e["action"] == "switch_email_provider" for b in records.iterdir() if b.name > first_bundle[0]
                   for e in read_audit(b / "audit.jsonl"))

    first_bundle = [""]

    def held(method: str, path: str, *args: Any) -> Any:
        if method == "PATCH" and not arrived.is_set():
            first_bundle[0] = max(b.name for b in records.iterdir())
            arrived.set()
            box.platform.lock.release()  # let the second run read the platform while this change hangs
            try:
                deadline = time.monotonic() + 80
                while not second_decided() and time.monotonic() < deadline:
                    time.sleep(0.1)
            finally:
                box.platform.lock.acquire()
        return handle(method, path, *args)

    box.platform.handle = held  # type: ignore[method-assign]
    results: dict[str, RunResult] = {}
    first = threading.Thread(target=lambda: results.setdefault("first", helpers.run(
        "email_provider_failure", box, tmp_path, dry_run=False, operator="alice", approve=approve)))
    first.start()
    assert arrived.wait(120), "the first run never changed a tenant"
    results["second"] = helpers.run("email_provider_failure", box, tmp_path, dry_run=False, operator="bob",
                                    approve=approve)
    first.join(120)

    assert helpers.decisions(results["first"])["switch_email_provider"] == "applied"
    second = helpers.audit(results["second"])["switch_email_provider"]
    assert second["decision"] == "blocked", second
    assert results["first"].bundle.name in second["message"] and "alice" in second["message"]
    patches = [json.loads(m["body"]) for m in box.platform.mutations() if m["method"] == "PATCH"]
    assert len(patches) == len(box.platform.channels), "each tenant switched once"
    claims = [r for r in results.values() if any(e["decision"] == "applied" for e in read_audit(
        r.bundle / "audit.jsonl") if e["action"] == "switch_email_provider")]
    assert len(claims) == 1, "one audit holds the change (and its undo)"

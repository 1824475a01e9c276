"""A representative slice of the fault matrix as whole headless runs: `runbook run` as a responder types it,
papermill, a kernel, the bundle, the review and the webhook.

Each run must end within the time budget the CLI printed at its start, with the documented exit code
and last line, a bundle whose summary, notebook and HTML say the same verdict, and never `healthy`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbooklib import catalog
from runbooklib.cli import main
from runbooklib.runs import EXIT_DIAGNOSED, EXIT_INCONCLUSIVE
from runbooklib.sandbox import Sandbox
from tests.conftest import SandboxFactory
from tests.faults.matrix import World, apply_env, restore_env

pytestmark = [pytest.mark.notebook, pytest.mark.faults]
ROOT = Path(__file__).resolve().parents[2]
PARAMS = ROOT / "params"
BUDGET = re.compile(r"time budget: at most (?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def budget_seconds(err: str) -> float:
    found = BUDGET.search(err)
    assert found, f"the run printed no time budget:\n{err}"
    hours, minutes, seconds = (int(g or 0) for g in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


def bundle_of(runs: Path, incident: str) -> Path:
    bundles = sorted((runs / incident).glob("*-*"))
    assert len(bundles) == 1, bundles
    return bundles[0]


def assert_one_verdict(bundle: Path, cause: str) -> dict[str, Any]:
    """summary.json, the executed notebook and its HTML all carry the same verdict; none of it says healthy."""
    summary = json.loads((bundle / "summary.json").read_text())
    assert summary["diagnosis"]["cause"] == cause
    html = (bundle / "notebook.html").read_text()
    notebook = (bundle / "notebook.ipynb").read_text()
    if cause == "inconclusive":
        assert "Inconclusive — no all-clear" in html and "Could not check" in html
        assert "INCONCLUSIVE — no all-clear" in notebook  # ctx.finish()'s line
    assert "Diagnosis: <code>healthy</code>" not in html
    return summary


def profile_file(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The broken world as an environment profile of its own (database and Redis URLs from variables)."""
    profile = json.loads(json.dumps(world.profile))
    monkeypatch.setenv("FAULT_DATABASE_URL", world.description["database_url"])
    profile["database_url_env"] = "FAULT_DATABASE_URL"
    if world.description.get("redis_url"):
        monkeypatch.setenv("FAULT_REDIS_URL", world.description["redis_url"])
        profile["redis"] = {"url_env": "FAULT_REDIS_URL"}
    path = tmp_path / "environments.yaml"
    path.write_text(yaml.safe_dump({"faulty": profile}))
    return path


def run_cli(slug: str, incident: str, tmp_path: Path, envs: Path, capsys: pytest.CaptureFixture[str],
            *extra: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code = main(["run", slug, "--incident", incident, "--no-progress", "--output", str(tmp_path / "runs"),
                 "-p", "environment", "faulty", "-p", "environments_file", str(envs), "-p", "recovery_samples", "1",
                 "-p", "recovery_interval", "1s", *extra])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    return code, captured.out, captured.err, elapsed


class Receiver:
    """A ticketing webhook on loopback that keeps what it was sent."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.payloads.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_production_example_without_secrets_is_inconclusive_everywhere(tmp_path: Path, receiver: Receiver,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The new user's first command: no secret set, so nothing can be checked — and every record says so."""
    started = time.monotonic()
    code = main(["run", "email_provider_failure", "--incident", "INC-NOSECRETS", "--no-progress",
                 "--output", str(tmp_path / "runs"), "-f", str(PARAMS / "production.example.yaml"),
                 "-p", "environments_file", str(PARAMS / "environments.example.yaml"),
                 "-p", "recovery_samples", "1", "-p", "recovery_interval", "1s"])
    elapsed = time.monotonic() - started
    captured = capsys.readouterr()
    assert code == EXIT_INCONCLUSIVE
    assert elapsed <= budget_seconds(captured.err)
    # up front, before anything ran: what this profile cannot check
    before = captured.err.split("running email_provider_failure")[0]
    assert "cannot check with this profile" in before and "$RUNBOOK_DATABASE_URL, which is not set" in before
    assert "diagnosis: inconclusive" in captured.out and "diagnosis: healthy" not in captured.out
    assert "could not check — look at these by hand:" in captured.out
    assert last_line(captured.out).startswith("run completed — INCONCLUSIVE — no all-clear (exit 4)")
    summary = assert_one_verdict(bundle_of(tmp_path / "runs", "INC-NOSECRETS"), "inconclusive")
    needed = [u for u in summary["diagnosis"]["unchecked"] if u["needed"]]
    assert {u["check"] for u in needed} >= {"failure_rate", "email_queue", "smtp_primary", "ses_quota"}
    assert all(f["status"] != "ok" for f in summary["findings"].values() if f["name"] in {u["check"] for u in needed})
    assert summary["not_configured"]

    assert main(["review", "INC-NOSECRETS", "--output", str(tmp_path / "runs"), "--webhook", receiver.url]) == 0
    review = (tmp_path / "runs" / "INC-NOSECRETS" / "review.md").read_text()
    found = review.split("## Summary", 1)[1].split("## Runs", 1)[0]
    assert "`inconclusive`" in found and "**Could not check**" in found and "healthy" not in found
    payload = receiver.payloads[-1]
    assert payload["runs"][0]["verdict"] == "inconclusive" and payload["runs"][0]["diagnosis"] == "inconclusive"
    assert any(c["needed"] for c in payload["runs"][0]["could_not_check"])


@pytest.fixture
def world_of(make_sandbox: SandboxFactory, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A healthy sandbox of a runbook, as a world to break (its servers stopped after the test)."""
    worlds: list[World] = []

    def make(slug: str, *, postgres: bool = False) -> World:
        box: Sandbox = make_sandbox("healthy", slug=slug)
        worlds.append(World.of(box, request.getfixturevalue("postgres") if postgres else None))
        return worlds[-1]

    yield make
    for world in worlds:
        world.close()


@pytest.mark.parametrize(("slug", "fault", "cause", "names"), [
    ("email_provider_failure", "db_frozen", "inconclusive", "the database stopped answering"),
    ("sms_delivery_failure", "api_trickle", "inconclusive", "no complete answer within"),
    ("high_retry_volume", "redis_stalls", "inconclusive", "after PING answered"),
    ("whatsapp_delivery_failure", "graph_190", "token_expired", "Graph 190"),
])
def test_a_broken_dependency_in_a_whole_run(slug: str, fault: str, cause: str, names: str, world_of: Any,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from tests.faults.matrix import FAULTS

    broken = next(f for f in FAULTS if f.name == fault)
    world: World = world_of(slug, postgres=broken.postgres)
    broken.breaks(world)
    envs = profile_file(world, tmp_path, monkeypatch)
    before = apply_env(world)
    try:
        code, out, err, elapsed = run_cli(slug, "INC-FAULT", tmp_path, envs, capsys)
    finally:
        restore_env(before)
    assert code == (EXIT_INCONCLUSIVE if cause == "inconclusive" else EXIT_DIAGNOSED), out + err
    assert elapsed <= budget_seconds(err), f"{elapsed:.1f}s past the budget: {err}"
    assert f"diagnosis: {cause}" in out and "diagnosis: healthy" not in out
    summary = assert_one_verdict(bundle_of(tmp_path / "runs", "INC-FAULT"), cause)
    assert summary["status"] == "completed"
    assert any(names in f["summary"] and f["status"] in ("error", "fail") for f in summary["findings"].values())
    _keep(slug, fault, cause, code, elapsed, budget_seconds(err))


def _keep(slug: str, fault: str, cause: str, code: int, elapsed: float, bound: float) -> None:
    from tests.faults.test_fault_matrix import artifacts

    (artifacts() / f"whole-run--{fault}--{slug}.json").write_text(json.dumps({
        "fault": fault, "runbook": slug, "cause": cause, "exit_code": code, "seconds": round(elapsed, 1),
        "bound": bound, "whole_run": True}))


def test_a_run_past_its_time_budget_is_cut_and_still_writes_its_bundle(tmp_path: Path) -> None:
    """A cell that keeps running past the run's budget is interrupted: the run fails (exit 1) naming the cell,
    soon after the budget, with its bundle written — it does not wait for a fixed 600 s cell limit."""
    from runbooklib.runs import EXIT_FAILED, TimeBudget, execute

    notebook = tmp_path / "slow.ipynb"
    notebook.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}}, "cells": [
        {"cell_type": "code", "id": "p", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None,
         "source": "incident = ''"},
        {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "## Checks"},
        {"cell_type": "code", "id": "s", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import time\ntime.sleep(600)"}]}))
    budget = TimeBudget({"start-up": 10.0, "finish": 30.0})
    started = time.monotonic()
    result = execute(catalog.slugs()[0], {}, output_root=tmp_path / "runs", incident="INC-SLOW", progress=False,
                     notebook=notebook, budget=budget)
    elapsed = time.monotonic() - started
    assert result.status == "failed" and result.exit_code == EXIT_FAILED
    assert result.failed_cell is not None and "time budget" in result.failed_cell["error"]
    assert result.failed_cell["section"] == "Checks"
    assert elapsed <= budget.seconds, elapsed
    assert (result.bundle / "notebook.html").is_file() and (result.bundle / "summary.json").is_file()

"""The incident record: runs listed, a review compiled from two runbooks' runs, offline HTML, the webhook."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from runbooklib.audit import read_audit
from runbooklib.cli import main
from runbooklib.errors import ConfigError
from runbooklib.redact import REDACTOR
from runbooklib.review import compile_review, list_runs, send_webhook, write_review
from runbooklib.runs import execute
from runbooklib.sandbox.standins import Response, StandIn, _json


class Receiver(StandIn):
    """A ticketing system's webhook endpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        self.posts.append(json.loads(body))
        return _json(201, {"ticket": "OPS-1"})


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """INC-9: an email run that switched providers and sent a test email, then an SMS dry run."""
    from runbooklib import catalog
    from runbooklib.sandbox import Sandbox

    root = tmp_path_factory.mktemp("record")
    for slug, scenario, params in [
        ("email_provider_failure", "smtp_auth_failure",
         {"dry_run": False, "operator": "alice", "approve": ["switch_email_provider", "send_test_email"],
          "test_recipient": "oncall@lineup.app"}),
        ("sms_delivery_failure", "carrier_filtering", {"operator": "bob"}),
    ]:
        spec = catalog.get(slug)
        with Sandbox(spec.load_scenario(scenario), workdir=root.parent / f"box-{slug}") as box:
            REDACTOR.add_secrets(box.secrets.values())
            result = execute(slug, {"environment": "demo", "sandbox": str(box.write_description()),
                                    "recovery_samples": 2, "recovery_interval": "1s", **params},
                             output_root=root, incident="INC-9", progress=False)
            assert result.status == "completed", result.failed_cell
    return root


pytestmark = pytest.mark.notebook


def test_runs_are_listed_one_line_each(incident: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--output", str(incident)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 2
    assert "email_provider_failure" in lines[0] and "alice" in lines[0] and "switch_email_provider" in lines[0]
    assert "sms_delivery_failure" in lines[1] and "carrier_filtering" in lines[1] and "nothing applied" in lines[1]


def test_the_review_timeline_follows_the_audit_logs(incident: Path) -> None:
    review = compile_review(incident, "INC-9")
    timeline = [line for line in review.markdown.splitlines() if line.startswith("- `")]
    for run in review.runs:
        entries = read_audit(run.bundle / "audit.jsonl")
        positions = []
        for entry in entries:
            matches = [i for i, line in enumerate(timeline)
                       if f"**{run.runbook}** — {entry['action']}: {entry['decision']}" in line]
            assert matches, entry
            positions.append(matches[0])
        assert positions == sorted(positions), "decisions out of order"
    applied = next(line for line in timeline if "switch_email_provider: applied" in line)
    assert "approved by alice (parameter) for plan" in applied
    assert review.markdown.index("email_provider_failure** — run started") < review.markdown.index(
        "sms_delivery_failure** — run started")


def test_the_review_answers_the_checklists_and_opens_offline(incident: Path) -> None:
    review, md_path, html_path = write_review(incident, "INC-9")
    assert md_path.read_text() == review.markdown
    assert "### email_provider_failure" in review.markdown and "### sms_delivery_failure" in review.markdown
    assert "Review failed phone numbers" in review.markdown and "Consider adding backup provider" in review.markdown
    page = html_path.read_text()
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert re.search(r'<img alt="key figures per run" src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)
    assert "oncall@lineup.app" not in review.markdown


def test_run_renderings_load_nothing_from_the_network(incident: Path) -> None:
    for run in list_runs(incident, "INC-9"):
        page = (run.bundle / "notebook.html").read_text()
        for script in re.findall(r"<script\b[^>]*>.*?</script>", page, re.DOTALL):
            assert not re.search(r"https?://", script)


def test_webhook_receives_the_summary_and_where_the_files_are(incident: Path) -> None:
    review, md_path, _ = write_review(incident, "INC-9")
    receiver = Receiver().start()
    try:
        assert send_webhook(receiver.url + "/hooks/incident", review, md_path.parent) == 201
    finally:
        receiver.stop()
    posted = receiver.posts[0]
    assert posted["incident"] == "INC-9" and [r["diagnosis"] for r in posted["runs"]] == ["smtp_auth_failure",
                                                                                         "carrier_filtering"]
    assert posted["review"]["html"].endswith("INC-9/review.html")


def test_unknown_or_malformed_incident(incident: Path) -> None:
    with pytest.raises(ConfigError, match="no runs recorded"):
        compile_review(incident, "INC-404")
    with pytest.raises(ConfigError, match="not an incident id"):
        list_runs(incident, "../etc")


def test_review_command(incident: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", "INC-9", "--output", str(incident)]) == 0
    assert "review of INC-9: 2 runs" in capsys.readouterr().out
    assert main(["review", "INC-404", "--output", str(incident)]) == 2

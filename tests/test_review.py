"""The incident record: runs listed, a review compiled from two runbooks' runs, offline HTML, the webhook."""

from __future__ import annotations

import hashlib
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from runbooklib.audit import read_audit
from runbooklib.cli import main
from runbooklib.errors import ConfigError
from runbooklib.incident import list_runs
from runbooklib.redact import REDACTOR
from runbooklib.review import compile_review, write_review
from runbooklib.runs import execute
from runbooklib.sandbox.standins import Response, StandIn, _json
from runbooklib.webhook import send_webhook


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
    """INC-9, the demo incident: an email run that switched providers and sent a test email, then an SMS run
    that re-queued the transient failures (each approved, each with its recovery confirmation)."""
    from runbooklib import catalog
    from runbooklib.sandbox import Sandbox

    root = tmp_path_factory.mktemp("record")
    for slug, scenario, params in [
        ("email_provider_failure", "smtp_auth_failure",
         {"dry_run": False, "operator": "alice", "approve": ["switch_email_provider", "send_test_email"],
          "test_recipient": "oncall@lineup.app"}),
        ("sms_delivery_failure", "rate_limited", {"dry_run": False, "operator": "bob", "approve": ["retry_failed_sms"]}),
    ]:
        spec = catalog.get(slug)
        with Sandbox(spec.load_scenario(scenario), workdir=root.parent / f"box-{slug}") as box:
            REDACTOR.add_secrets(box.secrets.values())
            base = {"environment": "demo", "sandbox": str(box.write_description()), "recovery_samples": 2,
                    "recovery_interval": "1s", **params}
            # The documented flow: a dry run (kept apart, so that the record holds the two approved runs) prints the
            # digests; the approved run names them.
            dry = execute(slug, {**base, "dry_run": True, "approve": []}, output_root=root.parent / f"dry-{slug}",
                          incident="INC-9", progress=False)
            digests = {a["action"]: a["plan"]["digest"] for a in dry.actions if a["decision"] == "dry_run"}
            base["approve"] = [f"{a}@{digests[a]}" for a in params["approve"]]
            result = execute(slug, base, output_root=root, incident="INC-9", progress=False)
            assert result.status == "completed", result.failed_cell
    return root


pytestmark = pytest.mark.notebook


def test_runs_are_listed_one_line_each(incident: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--output", str(incident)]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 2
    assert "email_provider_failure" in lines[0] and "alice" in lines[0] and "switch_email_provider" in lines[0]
    assert "sms_delivery_failure" in lines[1] and "rate_limited" in lines[1] and "retry_failed_sms" in lines[1]


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
    for run in review.runs:
        mine = [line for line in timeline if f"**{run.runbook}**" in line]
        events = [line.split("** — ", 1)[1] for line in mine]
        kinds = ["start" if e.startswith("run started") else "check" if e.startswith("check ") else
                 "diagnosis" if e.startswith("diagnosis ") else "end" if e == "run completed" else "decision"
                 for e in events]
        assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("diagnosis") == 1
        first_decision = kinds.index("decision")
        assert kinds.index("diagnosis") < first_decision and kinds.index("check") < kinds.index("diagnosis")
        assert kinds.count("check") == len(run.summary.findings)
        checks_after = [line for i, line in enumerate(mine) if kinds[i] == "check" and i > first_decision]
        if run.runbook == "email_provider_failure":  # recovery is confirmed after the switch
            assert any("Failure rate since mitigation vs baseline" in line for line in checks_after)
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
    assert "<script" not in page and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//""", page)
    assert re.search(r'<img class="chart" alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)
    assert "oncall@lineup.app" not in review.markdown


def test_run_renderings_load_nothing_from_the_network(incident: Path) -> None:
    for run in list_runs(incident, "INC-9"):
        page = (run.bundle / "notebook.html").read_text()
        for script in re.findall(r"<script\b[^>]*>.*?</script>", page, re.DOTALL):
            assert not re.search(r"https?://", script)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", page)


def test_webhook_receives_the_summary_and_where_the_files_are(incident: Path) -> None:
    review, md_path, _ = write_review(incident, "INC-9")
    receiver = Receiver()
    receiver.start()
    try:
        assert send_webhook(receiver.url + "/hooks/incident", review, markdown_at=str(md_path),
                            html_at=str(md_path.with_suffix(".html"))) == 201
    finally:
        receiver.stop()
    posted = receiver.posts[0]
    assert posted["incident"] == "INC-9" and [r["diagnosis"] for r in posted["runs"]] == ["smtp_auth_failure",
                                                                                         "rate_limited"]
    assert posted["review"]["html"].endswith("INC-9/review.html")
    assert posted["summary"][0].startswith("**Found** (email_provider_failure): `smtp_auth_failure`")
    email = next(f for f in posted["key_figures"] if f["figure"] == "email failure rate")
    assert email["mitigation"] == "switch_email_provider" and email["before"] > email["after"]


def test_unknown_or_malformed_incident(incident: Path) -> None:
    with pytest.raises(ConfigError, match="no runs recorded"):
        compile_review(incident, "INC-404")
    with pytest.raises(ConfigError, match="not an incident id"):
        list_runs(incident, "../etc")


def test_review_command(incident: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["review", "INC-9", "--output", str(incident)]) == 0
    assert "review of INC-9: 2 runs" in capsys.readouterr().out
    assert main(["review", "INC-404", "--output", str(incident)]) == 2


def _table(markdown: str, heading: str) -> list[list[str]]:
    """The rows of the first table after `heading`, split into cells (header and rule dropped)."""
    rows = []
    for line in markdown[markdown.index(heading):].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
        elif rows:
            break
    return rows[2:]


def test_key_figures_are_compared_around_each_runbooks_own_mitigation(incident: Path) -> None:
    review = compile_review(incident, "INC-9")
    rows = {r[0]: r for r in _table(review.markdown, "## Key figures")}
    email = rows["email failure rate"]
    assert email[1].startswith("switch_email_provider")
    before, after = (float(re.match(r"([\d.]+)%", cell).group(1)) for cell in email[2:4])  # type: ignore[union-attr]
    assert before > 10 and after < before and "since the mitigation" in email[3]
    sms_queue = rows["sms queue depth"]
    assert sms_queue[1].startswith("retry_failed_sms"), "an email switch is not the SMS queue's mitigation"
    assert "metrics API" in sms_queue[2] and "sample" in sms_queue[3]
    summary = review.markdown[review.markdown.index("## Summary"):review.markdown.index("## Runs")]
    assert "- **Found** (email_provider_failure): `smtp_auth_failure`" in summary
    assert re.search(r"- \*\*Done\*\*: switch_email_provider \(.*approved by alice\); retry_failed_sms \(.*bob\)", summary)
    assert f"email failure rate {email[2].split(' ')[0]} → {email[3].split(' ')[0]}" in summary
    summaries = {r.runbook: r.summary for r in review.runs}
    measured = [m for m in summaries["sms_delivery_failure"].measurements if m["metric"] == "failure_rate"]
    assert rows["sms failure rate"][2].startswith(f"{measured[0]['value']:.1%}")


def test_impact_is_per_channel_and_tenant_and_counts_what_was_requeued(incident: Path) -> None:
    review = compile_review(incident, "INC-9")
    rows = _table(review.markdown, "### Messages failed and delayed")
    for channel, runbook in (("email", "email_provider_failure"), ("sms", "sms_delivery_failure")):
        tenants = [r for r in rows if r[0] == channel and r[1] != "**all tenants**"]
        total = next(r for r in rows if r[0] == channel and r[1] == "**all tenants**")
        for column in (2, 3, 4):
            assert sum(int(r[column].replace(",", "")) for r in tenants) == int(total[column].replace(",", ""))
        facts = next(r.summary.facts for r in review.runs if r.runbook == runbook)
        assert int(total[3].replace(",", "")) == facts["window_failed"]
        assert int(total[2].replace(",", "")) == facts["window_total"]
    requeued = _table(review.markdown, "### Messages replayed or re-queued")
    retry = next(e for e in read_audit(review.runs[1].bundle / "audit.jsonl") if e["action"] == "retry_failed_sms"
                 and e["decision"] == "applied")
    assert requeued == [["sms", "retry_failed_sms", f"{retry['result']['retried']:,}", requeued[0][3]]]


def test_evidence_checksums_are_verified(incident: Path, tmp_path: Path) -> None:
    import shutil

    rows = _table(compile_review(incident, "INC-9").markdown, "## Evidence")
    assert [r[3] for r in rows] == ["all match", "all match"] and all(int(r[2]) > 0 for r in rows)
    copy = tmp_path / "copy"
    shutil.copytree(incident, copy)
    tampered = sorted((copy / "INC-9").glob("*-sms_delivery_failure/evidence/001.csv"))[0]
    tampered.write_text(tampered.read_text() + "0\n")
    rows = _table(compile_review(copy, "INC-9").markdown, "## Evidence")
    assert rows[0][3] == "all match" and rows[1][3] == "MISMATCH: 001.csv"
    index = sorted((copy / "INC-9").glob("*-email_provider_failure/evidence/index.jsonl"))[0]
    index.write_text(index.read_text() + "{not json\n")
    rows = _table(compile_review(copy, "INC-9").markdown, "## Evidence")
    assert rows[0][2:] == ["?", "MISMATCH: index.jsonl is not readable"]
    # a file edited together with its checksum in the index: the summary's seal of the index catches it
    again = tmp_path / "again"
    shutil.copytree(incident, again)
    index = sorted((again / "INC-9").glob("*-email_provider_failure/evidence/index.jsonl"))[0]
    entries = [json.loads(line) for line in index.read_text().splitlines()]
    edited = index.parent / entries[0]["file"]
    edited.write_text(edited.read_text() + "0\n")
    entries[0]["sha256"] = hashlib.sha256(edited.read_bytes()).hexdigest()
    index.write_text("".join(json.dumps(e) + "\n" for e in entries))
    review = compile_review(again, "INC-9")
    assert _table(review.markdown, "## Evidence")[0][3] == "MISMATCH: index.jsonl does not match the summary's seal"
    assert any("evidence/index.jsonl was rewritten" in p for p in review.runs[0].problems)


def test_the_runs_records_are_sealed_chained_and_verify(incident: Path) -> None:
    """Real runs write a hash-chained audit with an `applying` record before each apply and its outcome after,
    and a summary that seals both the audit and the evidence index: the review finds nothing to distrust."""
    review = compile_review(incident, "INC-9")
    for run in review.runs:
        assert run.problems == [] and run.interrupted == []
        entries = read_audit(run.bundle / "audit.jsonl")
        assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
        assert (run.summary.ledger or {})["audit"] == {"records": len(entries), "head": entries[-1]["hash"]}
        applying = [e for e in entries if e["decision"] == "applying"]
        assert applying and all(any(o.get("of") == a["seq"] for o in entries) for a in applying)
        assert all(a["verify_by_hand"] for a in applying)
    assert "Every run's record verified" in review.markdown and "cannot confirm" not in review.markdown


CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
"""As the machine notes advise: without the background-networking flags Chromium keeps reaching for Google."""


def _chromium() -> str:
    import os
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is not installed: .ci/run installs Debian's chromium package")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return path


def artefacts() -> Path:
    """Where tests keep what a person should look at (screenshots); RUNBOOK_TEST_ARTIFACTS or ./test-artifacts."""
    import os

    folder = Path(os.environ.get("RUNBOOK_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


VISIBLE_IMAGES = """() => Array.from(document.images).map(img => {
  const box = img.getBoundingClientRect();
  const style = getComputedStyle(img);
  return {alt: img.alt, complete: img.complete, natural: img.naturalWidth * img.naturalHeight,
          width: box.width, height: box.height, shown: style.display !== 'none' && style.visibility !== 'hidden'
          && style.opacity !== '0', inside: box.left >= 0 && box.right <= document.documentElement.scrollWidth + 1};
})"""


def _open(browser: Any, path: Path, shot: Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Open a page with every request beyond file: and data: refused; returns its images, what it asked the
    network for, and its script errors; keeps a full-page screenshot."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    remote: list[str] = []
    errors: list[str] = []

    def refuse(route: Any) -> None:
        remote.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^(?!file:|data:).*"), refuse)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(path.resolve().as_uri(), wait_until="load")
    images = page.evaluate(VISIBLE_IMAGES)
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    return images, remote, errors


def test_the_review_and_run_pages_render_offline_with_every_chart_visible(incident: Path) -> None:
    """Headless Chromium opens review.html and each run's notebook.html with the network cut off: nothing is
    requested from anywhere, every chart image decodes and is laid out visibly; screenshots are kept."""
    import nbformat
    from playwright.sync_api import sync_playwright

    _, _, review_html = write_review(incident, "INC-9")
    pages = [("review-INC-9", review_html, 1)]
    for run in list_runs(incident, "INC-9"):
        executed = nbformat.read(run.bundle / "notebook.ipynb", as_version=4)  # type: ignore[no-untyped-call]
        charts = sum("image/png" in out.get("data", {}) for cell in executed.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))
        assert charts >= 3, f"{run.runbook} drew {charts} charts"
        pages.append((f"run-{run.runbook}", run.bundle / "notebook.html", charts))
    folder = artefacts()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_FLAGS)
        try:
            for name, path, charts in pages:
                shot = folder / f"{name}.png"
                images, remote, errors = _open(browser, path, shot)
                assert not remote, f"{name} asked the network for {remote}"
                assert not errors, f"{name}: {errors}"
                assert len(images) == charts, f"{name}: {len(images)} images, {charts} charts"
                for image in images:
                    assert image["complete"] and image["natural"] > 0, f"{name}: an image did not decode: {image}"
                    assert image["shown"] and image["width"] > 200 and image["height"] > 100, f"{name}: {image}"
                    assert image["inside"], f"{name}: an image runs off the page: {image}"
                assert shot.stat().st_size > 20_000
        finally:
            browser.close()


def test_text_from_a_record_renders_as_text_in_the_review_page() -> None:
    """The review's Markdown goes through mistune; what `_md` escaped stays literal text in its own cell."""
    from runbooklib.review import _html, _md

    hostile = "x | y <b>*z*</b> [l](javascript:1) _e_ `c` **bold**"
    page = _html("INC-1", f"| a | b |\n| --- | --- |\n| {_md(hostile)} | z |\n\n- {_md(hostile)}", "")
    body = page.split("<body>", 1)[1]
    cells = re.findall(r"<td>(.*?)</td>", body)
    assert cells == [html.escape(hostile, quote=False), "z"]
    assert "<b>" not in body and "<a " not in body and "<em>" not in body and "<strong>" not in body
    assert re.findall(r"<li>(.*?)</li>", body) == [html.escape(hostile, quote=False)]

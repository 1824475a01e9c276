"""No form of a secret or a recipient reaches anything saved, sent or printed — with providers that echo.

Every stand-in echoes what it received (the Lineup API's 502 page with the Authorization header, SES
AccessDenied with the access key id and a 650-character session token, SMTP 535 with the AUTH exchange,
Twilio 401 with the Basic header, Graph errors with the bearer token), and recipients are seeded and echoed
in every format of `RECIPIENT_FORMS`. Each runbook runs from the CLI with everything echoing, then dry and
with every action approved; then `runbook review --webhook` posts to a local receiver. Every file, the
payload and the captured output are scanned by this test's own detector (not the library's): zero hits.
And the final gate itself: a leak the masking missed is withheld and named, never published.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import nbformat
import pytest
import yaml

import runbooklib.sandbox as sandbox_module
from runbooklib import catalog
from runbooklib.cli import _print_leaks, main
from runbooklib.leaks import QUARANTINE, QUARANTINED
from runbooklib.redact import REDACTOR, Redactor
from runbooklib.runs import EXIT_LEAK, execute
from runbooklib.sandbox import SECRET_ENV, Sandbox
from runbooklib.settings import demo_profile, register_profile_secrets
from tests.test_review import Receiver


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PLANTED = {
    "api_token": "lineup-api-" + secrets.token_urlsafe(30),
    "smtp_username": "mailer-" + secrets.token_hex(4),
    "smtp_password": "pw+/=" + secrets.token_urlsafe(12) + "%!",
    "smtp_backup_username": "backup-" + secrets.token_hex(4),
    "smtp_backup_password": "bk:" + secrets.token_urlsafe(14),
    "aws_access_key_id": "AKIA" + secrets.token_hex(8).upper(),
    "aws_secret_access_key": base64.b64encode(secrets.token_bytes(30)).decode(),
    "aws_session_token": base64.b64encode(secrets.token_bytes(490)).decode()[:650],
    "twilio_account_sid": "AC" + secrets.token_hex(16),
    "twilio_auth_token": secrets.token_hex(16),
    "whatsapp_access_token": "EAAG" + secrets.token_urlsafe(190),
    "whatsapp_app_secret": secrets.token_hex(16),
}
PAIRS = [("twilio_account_sid", "twilio_auth_token"), ("smtp_username", "smtp_password"),
         ("smtp_backup_username", "smtp_backup_password")]
RECIPIENT_PATTERNS = [r"415\D{0,2}555\D{0,2}2671", r"7911\D{0,2}123456", r"07700\D{0,2}900123", r"jane\.doe",
                      r"j(?:ö|%C3%B6|\\u00f6|&#246;|&ouml;)rg", r"m(?:ü|%C3%BC|\\u00fc|&#252;|&uuml;)ller"]
SCENARIOS = {"email_provider_failure": "smtp_auth_failure", "sms_delivery_failure": "twilio_auth_failure",
             "whatsapp_delivery_failure": "template_rejected", "high_retry_volume": "dlq_growing"}


def forms() -> dict[str, str]:
    """Every form this test looks for, each named (written independently of the library's own list)."""
    out: dict[str, str] = {}
    for key, value in PLANTED.items():
        out.update({f"{key}": value, f"{key} url-encoded": quote(value, safe=""), f"{key} form": quote_plus(value),
                    f"{key} hex": value.encode().hex(), f"{key} base64": _b64(value).rstrip("="),
                    f"{key} base64url": base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")})
        if len(value) >= 40:  # a long token cut anywhere: every 20 characters of it
            out.update({f"{key} part {i}": value[i:i + 20] for i in range(0, len(value) - 20, 10)})
    for user, password in PAIRS:
        u, p = PLANTED[user], PLANTED[password]
        out[f"{user}:{password} basic"] = _b64(f"{u}:{p}").rstrip("=")
        out[f"{user}:{password} AUTH PLAIN"] = _b64(f"\0{u}\0{p}").rstrip("=")
    return {name: form for name, form in out.items() if len(form) >= 8}


def hits(where: str, text: str) -> list[str]:
    found = [f"{where}: {name}" for name, form in forms().items() if form in text]
    found += [f"{where}: recipient /{p}/" for p in RECIPIENT_PATTERNS if re.search(p, text, re.IGNORECASE)]
    return found


def echo_scenario(tmp: Path, slug: str, mode: str) -> Path:
    """A built-in failing scenario of `slug` with every stand-in echoing (`mode`) and recipients in every format."""
    spec = catalog.get(slug)
    data = yaml.safe_load(spec.scenario_path(SCENARIOS[slug]).read_text())
    data["echo"] = {"credentials": mode, "recipients": True}
    path = tmp / f"echo-{slug}-{mode}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.notebook
@pytest.mark.parametrize("slug", list(SCENARIOS))
def test_echoing_providers_leak_nothing_into_records_reviews_webhooks_or_output(
        slug: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sandbox_module, "_generate", lambda key: PLANTED[key])
    root, incident = tmp_path / "runs", "INC-ECHO"
    spec = catalog.get(slug)
    code = main(["demo", slug, "--scenario-file", str(echo_scenario(tmp_path, slug, "always")), "--incident", incident,
                 "--output", str(root), "--no-progress", "-p", "recovery_samples", "1", "-p", "recovery_interval", "1s"])
    printed = capsys.readouterr()
    assert code != EXIT_LEAK, printed.err
    output = printed.out + printed.err

    with Sandbox(spec.load_scenario(echo_scenario(tmp_path, slug, "errors")), workdir=tmp_path / "box",
                 secret_values=PLANTED) as box:
        register_profile_secrets(demo_profile(box.describe()))
        base: dict[str, Any] = {"environment": "demo", "sandbox": str(box.write_description()),
                                "recovery_samples": 1, "recovery_interval": "1s", "test_recipient": "jane.doe@example.com",
                                "test_phone": "+14155552671"}
        base = {k: v for k, v in base.items() if k in _declared(slug)}
        dry = execute(slug, {**base, "dry_run": True}, output_root=root, incident=incident, progress=False)
        approvals = [f"{a['action']}@{a['plan']['digest']}" for a in dry.actions
                     if a.get("decision") == "dry_run" and a.get("plan")]
        applied = execute(slug, {**base, "dry_run": False, "operator": "alice@lineup.app", "approve": approvals},
                          output_root=root, incident=incident, progress=False)
    assert dry.leaks == [] and applied.leaks == [], (dry.leaks, applied.leaks)
    assert applied.status == "completed", applied.failed_cell

    receiver = Receiver().start()
    try:
        code = main(["review", incident, "--output", str(root), "--webhook", receiver.url + "/hooks"])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        output += printed.out + printed.err
        payloads = [json.dumps(p, ensure_ascii=False) for p in receiver.posts]
    finally:
        receiver.stop()
    assert payloads and applied.actions

    found: list[str] = []
    files = [p for p in root.rglob("*") if p.is_file()]
    assert not any(QUARANTINE in p.parts for p in files)
    for path in files:
        found += hits(str(path.relative_to(root)), path.read_bytes().decode("utf-8", errors="replace"))
    for n, payload in enumerate(payloads):
        found += hits(f"webhook payload {n}", payload)
    found += hits("the CLI's output", output)
    assert len(files) >= 10
    assert found == []
    # the echoes did reach the record, masked: the drill tested something
    record = "".join(p.read_text(errors="replace") for p in files if p.suffix in (".json", ".jsonl", ".ipynb"))
    if slug != "high_retry_volume":  # it reads the queues from Redis: no provider answers, no recipient shown
        assert "[redacted]" in record and re.search(r"\+447911\*+#[0-9a-f]{8}", record)


def _declared(slug: str) -> set[str]:
    from runbooklib.params import declared_parameters

    return {p.name for p in declared_parameters(catalog.get(slug).params_cls)}


KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def _leaking_notebook(path: Path) -> Path:
    """A notebook whose kernel does not know the secret it writes (as if masking had a gap): straight into the
    hash-chained audit log, which is never rewritten after the kernel, and into a printed output."""
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    params = nbformat.v4.new_code_cell("run_dir = ''\nincident = ''\ndeadline = ''")  # type: ignore[no-untyped-call]
    params.metadata["tags"] = ["parameters"]
    nb.metadata.update(KERNEL)
    nb.cells = [params, nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
        "import json, os\nfrom pathlib import Path\nleak = os.environ['PLANTED_LEAK']\n"
        "Path(run_dir, 'audit.jsonl').write_text(json.dumps({'message': 'Basic ' + leak}) + '\\n')\n"
        "Path(run_dir, 'summary.json').write_text(json.dumps({'runbook': 'email_provider_failure', "
        "'status': 'completed', 'incident': incident}))\nprint('echo:', leak)")]
    nbformat.write(nb, str(path))  # type: ignore[no-untyped-call]
    return path


@pytest.mark.notebook
def test_a_leak_the_masking_missed_is_withheld_named_and_not_published(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "gap-" + secrets.token_urlsafe(24)
    REDACTOR.add_secret(secret, "$PLANTED_LEAK")
    encoded = _b64(f"someone:{secret}")
    result = execute("email_provider_failure", {}, output_root=tmp_path / "runs", incident="INC-GAP", progress=False,
                     env={"PLANTED_LEAK": encoded}, notebook=_leaking_notebook(tmp_path / "leaky.ipynb"))
    assert result.exit_code == EXIT_LEAK
    assert [leak.where for leak in result.leaks] == ["audit.jsonl"]
    assert not (result.bundle / "audit.jsonl").exists()
    withheld = json.loads((result.bundle / QUARANTINED).read_text())
    assert withheld["withheld"][0]["file"] == "audit.jsonl" and "$PLANTED_LEAK" in withheld["withheld"][0]["why"][0]
    kept = Path(withheld["kept_at"]) / "audit.jsonl"
    assert kept.exists() and oct(kept.stat().st_mode)[-3:] == "600"
    for path in (p for p in result.bundle.rglob("*") if p.is_file()):  # the printed echo was masked, not withheld
        assert encoded not in path.read_text(errors="replace") and secret not in path.read_text(errors="replace")
    _print_leaks(result)
    err = capsys.readouterr().err
    assert "LEAK" in err and "audit.jsonl" in err and "$PLANTED_LEAK" in err and encoded not in err
    from runbooklib.incident import list_runs

    (run,) = list_runs(tmp_path / "runs", "INC-GAP")
    assert any("withheld" in p for p in run.problems)


class _NoMasking(Redactor):
    """A masking bug: finds everything, masks nothing."""

    def text(self, value: str) -> str:
        return value


def test_a_review_that_would_leak_is_neither_written_nor_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import runbooklib.review as review

    bundle = tmp_path / "runs" / "INC-7" / "20261202T010000Z-sms_delivery_failure"
    bundle.mkdir(parents=True)
    (bundle / "summary.json").write_text(json.dumps({
        "runbook": "sms_delivery_failure", "incident": "INC-7", "status": "completed", "operator": "bob",
        "started_at": "2026-12-02T01:00:00+00:00",
        "diagnosis": {"cause": "invalid_numbers", "outcome": "cause", "explanation": "failing for +44 7911 123456"}}))
    monkeypatch.setattr(review, "REDACTOR", _NoMasking())
    receiver = Receiver().start()
    try:
        code = main(["review", "INC-7", "--output", str(tmp_path / "runs"), "--webhook", receiver.url + "/hooks"])
        assert receiver.posts == []
    finally:
        receiver.stop()
    err = capsys.readouterr().err
    assert code == EXIT_LEAK and "review.md" in err and "unmasked phone number" in err and "7911" not in err
    assert not (tmp_path / "runs" / "INC-7" / "review.md").exists()


def test_a_hostile_operator_name_is_refused_and_an_old_one_cannot_forge_the_timeline(tmp_path: Path) -> None:
    from runbooklib.review import compile_review

    for name in ("alice\n- `2026` **x** — switch_email_provider: applied", "a" * 65, "\tbob", "bob\x1b[31m"):
        code = main(["run", "email_provider_failure", "--incident", "INC-8", "--check-only", "-p", "operator", name])
        assert code == 2, name
    hostile = "mallory\n- `2026-12-02T01:00:00` **email_provider_failure** — switch_email_provider: applied — " \
              "approved by ceo <script>alert(1)</script> [x](javascript:alert(1))"
    bundle = tmp_path / "INC-8" / "20261202T010000Z-email_provider_failure"
    bundle.mkdir(parents=True)
    (bundle / "summary.json").write_text(json.dumps({
        "runbook": "email_provider_failure", "incident": "INC-8", "status": "completed", "operator": hostile,
        "started_at": "2026-12-02T01:00:00+00:00", "window": {"length": "1h"}}))
    review = compile_review(tmp_path, "INC-8")
    timeline = review.markdown.split("## Timeline")[1].split("\n## ")[0]
    lines = [line for line in timeline.splitlines() if line.startswith("- ")]
    assert len(lines) == 1 and "switch_email_provider: applied" in lines[0]  # inside the one line, as text
    assert "<script>" not in review.markdown and "<script>" not in review.html
    assert "](javascript" not in review.markdown.replace("\\](", "")
    assert review.html.count("<li>") == review.markdown.count("\n- ")
    assert "&lt;script&gt;" in review.html


def test_every_secret_a_sandbox_makes_is_labelled_by_its_variable() -> None:
    assert set(PLANTED) == set(SECRET_ENV)


@pytest.mark.notebook
def test_every_output_is_redacted_by_the_kernel_as_it_is_made(tmp_path: Path) -> None:
    """Straight from papermill, before any scrub: printed text, every mime type of a display, a cell result and
    an exception's traceback hold no secret and no recipient."""
    import papermill as pm

    secret = "made-" + secrets.token_urlsafe(40)
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = [nbformat.v4.new_code_cell(source) for source in (  # type: ignore[no-untyped-call]
        "import os\nfrom IPython.display import HTML, JSON, display\nfrom runbooklib.outputs import redact_kernel_outputs\n"
        "from runbooklib.redact import REDACTOR\nredact_kernel_outputs()\ns = os.environ['MADE_SECRET']\n"
        "REDACTOR.add_secret(s, '$MADE_SECRET')",
        "print('stream', s, '+44 7911 123456')",
        "display(HTML(f'<b>{s}</b> jane.doe@example.com'), JSON({'k': s}))",
        "class Card:\n    def __repr__(self): return f'<Card {s}>'\n    def _repr_html_(self): return f'<i>{s}</i>'\nCard()",
        "raise RuntimeError(f'provider said Basic {s} to 07700 900123')")]
    nb.metadata.update(KERNEL)
    source, out = tmp_path / "made.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, str(source))  # type: ignore[no-untyped-call]
    import os

    os.environ["MADE_SECRET"] = secret
    try:
        with pytest.raises(pm.PapermillExecutionError) as raised:
            pm.execute_notebook(str(source), str(out), kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    finally:
        os.environ.pop("MADE_SECRET", None)
    text = json.dumps([c.get("outputs", []) for c in json.loads(out.read_text())["cells"]])  # outputs, not sources
    assert secret not in text and secret not in str(raised.value)
    assert "7911123456" not in text.replace(" ", "") and "900123" not in text and "jane.doe" not in text
    assert text.count("[redacted]") >= 6  # stream, html, json, repr, html repr, error (evalue and traceback)

"""Masking: every derived form of a secret, phone numbers and addresses in the forms people and providers write,
keyed references, documents by structure, and the fail-closed scan."""

from __future__ import annotations

import base64
import io
import json
import secrets
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runbooklib.leaks import QUARANTINED, quarantine, scan_bundle, scan_text
from runbooklib.redact import MASK, Redactor

SID = "AC" + "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TOKEN = "tok3n/with+chars=and~more_0123"
USER, PASSWORD = "mailer-user", "hunter22-Pa55"
LONG = base64.b64encode(bytes(range(256)) * 2).decode()[:650]  # an STS session token's length and alphabet


def redactor() -> Redactor:
    r = Redactor()
    for value, label in ((SID, "$TWILIO_ACCOUNT_SID"), (TOKEN, "$TWILIO_AUTH_TOKEN"), (USER, "$SMTP_USERNAME"),
                         (PASSWORD, "$SMTP_PASSWORD"), (LONG, "$AWS_SESSION_TOKEN")):
        r.add_secret(value, label)
    return r


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


DERIVED = {
    "plain": TOKEN,
    "URL-encoded": quote(TOKEN, safe=""),
    "URL-encoded, lower-case escapes": quote(TOKEN, safe="").lower(),
    "form-encoded": quote_plus(TOKEN),
    "twice URL-encoded": quote(quote(TOKEN, safe=""), safe=""),
    "JSON-escaped": json.dumps(TOKEN)[1:-1].replace("/", "\\/"),
    "hex": TOKEN.encode().hex(),
    "HEX": TOKEN.encode().hex().upper(),
    "base64": b64(TOKEN.encode()),
    "base64url": base64.urlsafe_b64encode(TOKEN.encode()).decode(),
    "HTTP Basic": "Basic " + b64(f"{SID}:{TOKEN}".encode()),
    "HTTP Basic, base64url": base64.urlsafe_b64encode(f"{SID}:{TOKEN}".encode()).decode(),
    "SMTP AUTH PLAIN": "AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}".encode()),
    "SMTP AUTH PLAIN with authzid": b64(f"{USER}\0{USER}\0{PASSWORD}".encode()),
    "SMTP AUTH LOGIN": "334 " + b64(USER.encode()) + "\r\n334 " + b64(PASSWORD.encode()),
    "long token cut at a line break": LONG[:300] + "\n" + LONG[300:],
    "long token cut at an escaped line break": LONG[:411] + "\\n" + LONG[411:],
    "a part of a long token": "…" + LONG[200:240] + "…",
}


@pytest.mark.parametrize("form", DERIVED)
def test_every_derived_form_of_a_secret_is_masked(form: str) -> None:
    r = redactor()
    text = f"provider said: {DERIVED[form]} (end)"
    out = r.text(text)
    assert MASK in out, form
    for value in (TOKEN, SID, PASSWORD, USER, LONG[:40], LONG[-40:]):
        assert value not in out
    for encoded in (b64(f"{SID}:{TOKEN}".encode()), b64(PASSWORD.encode())[:8], TOKEN.encode().hex()[:16]):
        assert encoded not in out
    assert out.endswith("(end)") and out.startswith("provider said: ")  # only the secret went
    assert r.text(out) == out
    hits = r.find(text)
    assert hits and all(h.kind == "secret" for h in hits)
    assert all(TOKEN not in h.label and PASSWORD not in h.label for h in hits)  # a hit names, never shows


def test_a_base64_hit_masks_the_whole_encoded_word() -> None:
    r = redactor()
    out = r.text("Authorization: Basic " + b64(f"{SID}:{TOKEN}".encode()) + " was refused")
    assert out == f"Authorization: Basic {MASK} was refused"


def test_short_values_are_not_treated_as_secrets_and_ordinary_text_survives() -> None:
    r = redactor()
    r.add_secret("ab")
    text = "ab cd; 338 FAILED at 2026-12-02T03:42:09.123+00:00, rate 0.2071234567, job 100123, id_2025550123"
    assert r.text(text) == text


PHONES = ["14155552671", "+1 415-555-2671", "+1 (415) 555-2671", "+44 7911 123456", "07700 900123", "+447700900123",
          "+15551234567", "%2B447911123456", "(415) 555-2671"]


@pytest.mark.parametrize("number", PHONES)
def test_phone_numbers_are_found_in_the_forms_people_write(number: str) -> None:
    r = Redactor()
    out = r.text(f"to {number}, failed")
    digits = "".join(c for c in number if c.isdigit())
    assert digits[-6:] not in out.replace(" ", "").replace("-", ""), out
    assert out.startswith("to +") and out.endswith(", failed")
    assert r.text(out) == out


def test_a_masked_number_keeps_country_and_carrier_prefix_and_a_keyed_reference() -> None:
    r = Redactor()
    r.set_scope("INC-1")
    a, b, c = (r.text(x) for x in ("+44 7911 123456", "+447911123456", "+44 (0)7911 123456"))
    assert a.startswith("+447911") and "123456" not in a
    assert a == b == c  # the same recipient, the same reference, however it was written
    assert r.text("+447911654321") != a
    r.set_scope("INC-2")
    assert r.text("+447911123456") != a  # useless outside its incident


def test_the_reference_depends_on_a_key_that_is_not_in_the_record(monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = Redactor(), Redactor()
    monkeypatch.setenv("RUNBOOK_PII_KEY", "key-one-" + secrets.token_hex(8))
    first = one.text("+447911123456")
    monkeypatch.setenv("RUNBOOK_PII_KEY", "key-two-" + secrets.token_hex(8))
    assert two.text("+447911123456") != first


def test_regions_decide_which_national_forms_are_read() -> None:
    r = Redactor()
    r.set_phone_regions(["US"])
    assert "900123" in r.text("call 07700 900123")  # a British national number is not a US one
    r.set_phone_regions(["GB"])
    assert "900123" not in r.text("call 07700 900123")


EMAILS = ["alice.smith@example.com", "jane.doe%40example.com", "jörg.müller@例え.jp", "Bob+tag@Sub.Example.CO.UK",
          "xavier@xn--bcher-kva.example", "jane.doe%2540example.com"]


@pytest.mark.parametrize("address", EMAILS)
def test_email_addresses_keep_only_their_domain_and_a_reference(address: str) -> None:
    r = Redactor()
    out = r.text(f"<{address}> bounced")
    local = address.split("@")[0].split("%")[0]
    assert local not in out, out
    assert out.startswith("<***#") and out.endswith("> bounced")
    assert r.text(out) == out


def test_our_own_numbers_addresses_and_operators_stay_readable() -> None:
    r = Redactor()
    for value in ("+15005550006", "runbook@lineup.app", "alice@lineup.app"):
        r.add_public(value)
    text = "from +15005550006 and runbook@lineup.app, approved by alice@lineup.app, to +15551234567"
    out = r.text(text)
    assert "+15005550006" in out and "runbook@lineup.app" in out and "alice@lineup.app" in out
    assert "1234567" not in out


def test_notebook_outputs_are_masked_by_mime_type_and_real_images_are_kept() -> None:
    r = redactor()
    png = b64(b"\x89PNG\r\n\x1a\n" + b"\x00\x11" * 500)
    fake = b64(LONG.encode())  # a "picture" that is a secret
    nb = {"metadata": {"papermill": {"parameters": {"operator": "x", "to": "+447911123456"}}},
          "cells": [{"cell_type": "code", "source": ["print('", TOKEN, "')"], "metadata": {}, "outputs": [
              {"output_type": "stream", "name": "stdout", "text": [LONG[:100], "\n", LONG[100:]]},
              {"output_type": "display_data", "metadata": {}, "data": {
                  "image/png": png, "text/plain": [f"<Check {TOKEN}>"], "text/html": f"<b>{USER}</b>",
                  "application/json": {"k": [PASSWORD]}}},
              {"output_type": "display_data", "metadata": {}, "data": {"image/png": fake}},
              {"output_type": "error", "ename": "AuthError", "evalue": f"535 {b64(PASSWORD.encode())}",
               "traceback": [f"AuthError: Basic {b64(f'{SID}:{TOKEN}'.encode())}"]}]}]}
    masked = r.notebook(nb)
    text = json.dumps(masked)
    for value in (TOKEN, USER, PASSWORD, LONG[:40], LONG[120:160], "7911123456", fake[:40]):
        assert value not in text
    assert masked["cells"][0]["outputs"][1]["data"]["image/png"] == png
    assert scan_text("notebook.ipynb", json.dumps(nb), redactor=r)  # the scan sees what masking fixes
    assert scan_text("notebook.ipynb", json.dumps(masked), redactor=r) == []


def test_html_pages_keep_real_inline_images_and_mask_the_rest() -> None:
    r = redactor()
    png = b64(b"\x89PNG\r\n\x1a\n" + b"\0" * 300)
    fake = b64(b"not an image " + LONG.encode())
    page = (f'<img src="data:image/png;base64,{png}"><img src="data:image/png;base64,{fake}">'
            f"<p>{TOKEN} &lt;jane.doe@example.com&gt;</p>")
    out = r.html_page(page)
    assert png in out and fake not in out and TOKEN not in out and "jane.doe" not in out
    assert scan_text("notebook.html", page, redactor=r) and scan_text("notebook.html", out, redactor=r) == []


def test_the_scan_reads_json_escapes_and_names_kinds_never_values() -> None:
    r = redactor()
    raw = json.dumps({"who": "jörg.müller@例え.jp", "t": TOKEN})  # ensure_ascii: \u00f6 …
    assert "jörg" not in raw
    leaks = scan_text("summary.json", raw, redactor=r)
    kinds = {leak.kind for leak in leaks}
    assert kinds == {"unmasked email address", "secret $TWILIO_AUTH_TOKEN"}
    assert all(TOKEN not in leak.text() for leak in leaks)


def test_a_leaking_file_is_withheld_and_the_bundle_says_so(tmp_path: Path) -> None:
    r = redactor()
    bundle = tmp_path / "runs" / "INC-1" / "20261202T000000Z-x"
    (bundle / "evidence").mkdir(parents=True)
    (bundle / "audit.jsonl").write_text(json.dumps({"m": "Basic " + b64(f"{SID}:{TOKEN}".encode())}) + "\n")
    (bundle / "evidence" / "001.csv").write_text("recipient\n+44 7911 123456\n")
    (bundle / "summary.json").write_text(json.dumps({"ok": True}))
    leaks = scan_bundle(bundle, redactor=r)
    assert {leak.where for leak in leaks} == {"audit.jsonl", "evidence/001.csv"}
    folder = quarantine(bundle, leaks, tmp_path / "runs")
    assert not (bundle / "audit.jsonl").exists() and (folder / "audit.jsonl").exists()
    assert oct((folder / "audit.jsonl").stat().st_mode)[-3:] == "600"
    record = (bundle / QUARANTINED).read_text()
    assert "audit.jsonl" in record and "$TWILIO_AUTH_TOKEN" in record and TOKEN not in record
    assert scan_bundle(bundle, redactor=r) == []


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=20, max_size=80, alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",))),
       st.integers(0, 2), st.sampled_from(["", "user:", "\0user\0", "x"]))
def test_any_secret_at_any_offset_of_any_base64_string_is_masked(value: str, pad: int, prefix: str) -> None:
    r = Redactor()
    r.add_secret(value, "$S")
    encoded = b64(("#" * pad + prefix + value + "!tail").encode())
    out = r.text(f"[{encoded}]")
    assert MASK in out
    assert r.find(f"[{encoded}]") and r.text(out) == out


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=120))
def test_masking_is_idempotent_on_any_text(text: str) -> None:
    r = redactor()
    once = r.text(text)
    assert r.text(once) == once


def test_the_cli_streams_mask_what_they_print(capsys: pytest.CaptureFixture[str]) -> None:
    from runbooklib.cli import _Redacting
    from runbooklib.redact import REDACTOR

    REDACTOR.add_secret(TOKEN, "$T")
    stream = _Redacting(io.StringIO())
    stream.write(f"diagnosis: {TOKEN} to +447911123456\n")
    printed = stream._stream.getvalue()
    assert TOKEN not in printed and "7911123456" not in printed


def test_a_url_or_user_name_is_masked_whole_never_by_its_ordinary_parts() -> None:
    r = Redactor()
    url = "postgresql://runbook:s3cr3t-pw@db.internal.example:5432/lineup_production"
    r.add_secret(url, "$DATABASE_URL", parts=False)
    r.add_secret("runbook-mailer-user@lineup.app", "$SMTP_USERNAME")
    r.add_secret("runbook-mailer-user@lineup.app", "$SMTP_USERNAME", parts=False)  # registered twice: whole wins
    assert r.text(f"connect {url} failed") == f"connect {MASK} failed"
    text = "GET http://db.internal.example:5432/lineup_production/x and runbook-mailer-user@lineup.a…"
    assert MASK not in r.text(text)
    state = r.snapshot()
    r.restore(state)
    assert MASK not in r.text(text) and r.text(url) == MASK


# Found by an adversarial pass: numbers side by side, numbers in Markdown, numbers written with odd separators or
# prefixes; and ordinary data that must stay as it is.
SIDE_BY_SIDE = {
    "to +44 7911 123456 2 attempts": ["7911123456"],
    "+44 7911 123456 415 555 2671": ["7911123456", "4155552671"],
    "07911 123456 07911 123457": ["7911123456", "7911123457"],
    "**+44 7911 123456**": ["7911123456"],
    "_+447911123456_": ["7911123456"],
    "dial 00447911123456": ["7911123456"],
    "To=%252B447911123456": ["7911123456"],
    "+44\u202f7911\u202f123456": ["7911123456"],
    "415\u2013555\u20132671": ["4155552671"],
    "smtp,14155552671,2026-12-02 04:06:41+00:00": ["4155552671"],
    "2026-12-02 07911 123456": ["7911123456"],
}


@pytest.mark.parametrize("text", SIDE_BY_SIDE)
def test_every_number_is_found_however_it_sits(text: str) -> None:
    r = Redactor()
    out = r.text(text)
    flat = "".join(c for c in out if c.isdigit() or c == "*")
    for number in SIDE_BY_SIDE[text]:
        assert number[-6:] not in flat, out
    assert r.text(out) == out


ORDINARY = ["ip 192.168.0.1", "172.16.254.1:8080", "epoch 1764648306", "bytes=10485760", "12345678",
            "02.12.2026 04:05", "Dec 02 2026 04:05:06.1", "20261202 040506", "version 1.2.3.4567890",
            "[1234567, 7654321]", "1 2 3 4 5 6 7 8 9 10", "offsets 0 100 200 300 400", "Retry-After: 3600 1200",
            "hex 7A 64 70 37 64 63", "at 2026-12-02 04:06 UTC", "5 of 2,025,550,123 rows"]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_numbers_are_not_taken_for_phone_numbers(text: str) -> None:
    assert Redactor().text(text) == text


@pytest.mark.parametrize("address", ["*jane@example.com*", "__jane@example.com__", "jane&#64;example.com",
                                     "jane\\u0040example.com", "x jane%2540example.com y"])
def test_addresses_in_markup_and_escapes_are_masked(address: str) -> None:
    assert "jane" not in Redactor().text(address)


SECRET = "ab&cd<ef>gh12/p\u00e4ss'w\"rd"
ECHOED = {
    "Go's HTML-safe JSON": json.dumps(SECRET)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"),
    "PHP's JSON": json.dumps(SECRET)[1:-1].replace("/", "\\/"),
    "upper-case \\u escapes": json.dumps(SECRET)[1:-1].replace("\\u00e4", "\\u00E4"),
    "a bytes repr": repr(SECRET.encode()),
    "ascii()": ascii(SECRET),
    "PyYAML's escapes": ascii(SECRET).replace("\\xe4", "\\xE4"),
    "&#39; entities": SECRET.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;"),
    "a URL-encoded Basic header": quote(b64(("admin:" + SECRET).encode()), safe=""),
    "base64 in PHP's JSON": b64(("admin:" + SECRET).encode()).replace("/", "\\/"),
    "quoted-printable": __import__("quopri").encodestring(SECRET.encode()).decode(),
}


@pytest.mark.parametrize("form", ECHOED)
def test_echoed_escapes_of_a_secret_are_masked(form: str) -> None:
    r = Redactor()
    r.add_secret(SECRET, "$S")
    out = r.text(f"provider: {ECHOED[form]} !")
    assert MASK in out and "ab&cd" not in out and "gh12" not in out, out


@pytest.mark.parametrize("wrap", ["\n", "\r\n"])
def test_a_long_secret_in_wrapped_mime_base64_is_masked(wrap: str) -> None:
    r = Redactor()
    r.add_secret(LONG[:64], "$T")
    body = base64.encodebytes(b"\0" * 53 + LONG[:64].encode() + b"tail").decode().replace("\n", wrap)
    full = body.replace(wrap, "")  # the secret's base64 is full[72:157]: across the wrap at 76
    out = r.text(body).replace(wrap, "")
    for at in range(72, 150, 8):
        assert full[at:at + 8] not in out

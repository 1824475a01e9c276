from __future__ import annotations

import base64

from runbooklib.redact import MASK, Redactor


def test_secrets_are_masked_whole_and_url_encoded() -> None:
    r = Redactor()
    r.add_secret("s3cr3t/with+chars")
    r.add_secret("s3cr3t")
    out = r.text("token s3cr3t/with+chars and s3cr3t%2Fwith%2Bchars and s3cr3t")
    assert "s3cr3t" not in out and out.count(MASK) == 3


def test_short_values_are_not_treated_as_secrets() -> None:
    r = Redactor()
    r.add_secret("ab")
    assert r.text("ab cd") == "ab cd"


def test_email_addresses_and_phone_numbers_are_masked_once() -> None:
    r = Redactor()
    out = r.text("to alice.smith@example.com and +447700900123")
    assert out == "to a***@example.com and +447*******23"
    assert r.text(out) == out


def test_documents_keep_embedded_images_intact() -> None:
    r = Redactor()
    r.add_secret("hunter22")
    blob = base64.b64encode(b"\x89PNG" + bytes(range(256)) * 3 + b"+447700900123").decode()
    doc = f'<img src="data:image/png;base64,{blob}"> hunter22 bob@example.org'
    out = r.document(doc)
    assert blob in out
    assert "hunter22" not in out and "b***@example.org" in out


def test_nested_data_is_masked() -> None:
    r = Redactor()
    r.add_secret("tokentoken")
    assert r.data({"a": ["tokentoken", {"b": "x@example.com"}], "n": 3}) == {"a": [MASK, {"b": "x***@example.com"}], "n": 3}


def test_our_own_sending_numbers_stay_readable() -> None:
    r = Redactor()
    r.add_public_number("+15005550006")
    assert r.text("from +15005550006 to +15551234567") == "from +15005550006 to +155******67"

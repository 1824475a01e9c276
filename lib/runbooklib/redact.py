"""Masking of secrets and personal data in anything a run shows or saves.

Secret values are registered as they are read (see `settings.secret`) and replaced by `[redacted]`.
Email addresses keep their first character and domain (`a***@example.com`); phone numbers in E.164
form keep their country prefix and last two digits (`+44*******89`). The same redactor scrubs every
file of a run bundle before it is written, so a value printed by mistake is still caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

MASK = "[redacted]"
MIN_SECRET_LENGTH = 4
EMAIL_RE = re.compile(r"(?<![\w.+-])([A-Za-z0-9])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})")
# A masked address (`a***@example.com`) must not be masked again, so `*` is not part of a local part.
BLOB_RE = re.compile(r"[A-Za-z0-9+/=]{256,}")
"""Long base64 runs (embedded chart images) are left alone: masking inside them would corrupt them."""
PHONE_RE = re.compile(r"(?<![\w+*])\+(\d{1,3})(\d{4,12})(\d{2})(?!\d)")


def mask_email(match: re.Match[str]) -> str:
    return f"{match.group(1)}***@{match.group(2)}"


def mask_phone(match: re.Match[str], allowed: frozenset[str] = frozenset()) -> str:
    if match.group(0) in allowed:
        return match.group(0)
    return f"+{match.group(1)}{'*' * len(match.group(2))}{match.group(3)}"


class Redactor:
    """Replaces registered secret values, email addresses and phone numbers in text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._public: set[str] = set()

    def add_public_number(self, number: str) -> None:
        """A phone number of our own (a sending number from settings) that may be shown as it is."""
        self._public.add(number)

    def add_secret(self, value: str | None) -> None:
        """Register a secret value (and its URL-encoded form) to be masked everywhere."""
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        self._secrets.add(value)
        encoded = quote(value, safe="")
        if encoded != value:
            self._secrets.add(encoded)

    def add_secrets(self, values: Iterable[str | None]) -> None:
        for v in values:
            self.add_secret(v)

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def text(self, value: str) -> str:
        """Mask secrets first (longest first, so a secret containing another is masked whole), then PII."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, MASK)
        value = EMAIL_RE.sub(mask_email, value)
        allowed = frozenset(self._public)
        return PHONE_RE.sub(lambda m: mask_phone(m, allowed), value)

    def document(self, value: str) -> str:
        """Like `text`, but leaves embedded base64 blobs (images) untouched; for whole saved files."""
        out, last = [], 0
        for blob in BLOB_RE.finditer(value):
            out.append(self.text(value[last:blob.start()]))
            out.append(blob.group(0))
            last = blob.end()
        out.append(self.text(value[last:]))
        return "".join(out)

    def data(self, value: Any) -> Any:
        """Mask every string inside a JSON-like structure (keys included)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v) for v in value]
        return value

    def mapping(self, value: dict[str, Any]) -> dict[str, Any]:
        """`data` for a mapping, typed as one."""
        return {str(self.text(k)): self.data(v) for k, v in value.items()}

    def find_secrets(self, text: str) -> list[str]:
        """The registered secrets that occur in `text` (for the bundle scan)."""
        return [s for s in self._secrets if s in text]


REDACTOR = Redactor()
"""The process-wide redactor: settings register secrets here as they read them."""


def mask(value: str) -> str:
    """Mask secrets and personal data in one string with the process-wide redactor."""
    return REDACTOR.text(value)

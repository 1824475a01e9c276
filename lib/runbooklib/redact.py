"""Masking of secrets and personal data in anything a run shows or saves, and finding what was missed.

**Secrets** are registered as they are read (`settings.secret`), each with a label naming where it came
from (an environment variable's *name*). Every form a provider, proxy or error page might echo is
masked as `[redacted]`: the value itself, URL-encoded (once or twice, either hex case), JSON-escaped
(also Go's and PHP's ways), HTML-escaped, as Python writes bytes and escapes, quoted-printable, hex, and
base64/base64url (also URL-encoded) of the value *at any offset inside a larger encoded string* —
which covers HTTP Basic `base64(user:password)`, SMTP `AUTH PLAIN` (`\\0user\\0password`) and
`AUTH LOGIN` without knowing which pair was sent. A base64 hit masks the whole encoded word it is in.
A long secret (20+ characters) is also masked when only part of it, or of its base64, appears — any run
of 12 or more characters, continued across line breaks (a token wrapped or cut in an error page, MIME's
76-column base64). URLs and user names are masked whole only: their parts are ordinary text.

**Personal data** is found without registration. Phone numbers with `phonenumbers`
(`PhoneNumberMatcher` over the tenants' regions, `DEFAULT_PHONE_REGIONS` unless the profile says, in
order of preference): international forms (`+44 7911 123456`, `0044…`, `%2B…`) when they are possible
numbers; national forms (`07700 900123`, `(415) 555-2671`, `14155552671`) when valid in the first
region, or in any region when written with its trunk prefix or brackets. Numbers side by side are read
apart. Never a number: digits glued to letters or an identifier, a decimal, an IPv4 address, a date or a
time, `1,234,567`, a row of more than four groups. Email addresses in any script, with `%40`, `&#64;`
or `\\u0040` for `@`, and cut short by a display. A masked value keeps what a responder needs and a
keyed reference that is the same for the same recipient within one incident and useless outside it:
`+447911******#3f9a1c2b`, `***#3f9a1c2b@example.com`. The key is derived from `$RUNBOOK_PII_KEY` (or a
key file kept outside every run record) and the incident id.

`find()` reports what `text()` would mask, as `Hit`s naming the kind of leak but never the value; the
fail-closed scan before anything is published (`runbooklib.leaks`) is built on it.
"""

from __future__ import annotations

import base64
import bisect
import functools
import hashlib
import hmac
import html
import json
import os
import quopri
import re
import secrets as _secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

MASK = "[redacted]"
MIN_SECRET_LENGTH = 4
FRAGMENT_SECRET = 20
"""Secrets at least this long are also masked when only a part of them appears."""
FRAGMENT_MIN = 12
"""The fewest characters of such a secret that count as a part of it."""
_BLOCK = 6
"""Fragments are found through the secret's blocks of this length (any run of 2×block−1 contains one)."""
MIN_ENCODED = 8
"""Encoded forms shorter than this (base64 of a 4-character secret) are too likely to occur by chance."""
DEFAULT_PHONE_REGIONS = ("US", "CA", "GB", "IE", "AU", "NZ", "DE", "FR", "ES", "IT", "NL", "BE", "PT", "SE", "NO",
                         "DK", "IN", "BR", "MX", "ZA")
"""Where national-format numbers are looked for when a profile names no `phone_regions`."""
PII_KEY_ENV = "RUNBOOK_PII_KEY"
EXAMPLES = frozenset({"+15005550006", "+15005550009"})
"""Twilio's documented test numbers, used as examples in messages and settings: never anyone's."""
_BREAKS = ("=\r\n", "=\n", "\r\n", "\n", "\r", "\\r\\n", "\\n")
"""Line breaks a cut secret may be continued across (raw, and as written inside JSON strings)."""
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_LOCAL_CHARS = r"[\w!$%&'+/=?^`{|}~-]"
EMAIL_RE = re.compile(
    rf"(?<![\w!#$%&'+/=?^`{{|}}~.-])({_LOCAL_CHARS}+(?:\.{_LOCAL_CHARS}+)*)(@|%40|%2540|&#64;|&#[xX]40;|\\u0040)"
    r"((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59}))(?![^\W_]|-)", re.IGNORECASE)
"""A local part without `*` or `#` (so a masked `***#ref@domain` is not masked again), `@` in plain or
percent-encoded form, and a domain of letters in any script ending in a TLD of letters or punycode."""
_AT_FORMS = ("@", "%40", "%2540", "&#", "\\u0040")
CUT_EMAIL_RE = re.compile(
    rf"(?<![\w!#$%&'*+/=?^`{{|}}~.-]){_LOCAL_CHARS}+(?:\.{_LOCAL_CHARS}+)*(?:@|%40|%2540)[\w.-]*(?:\.\.\.|…)")
"""An address cut short by a display (`jane.doe%40example....`): its domain is gone, its person is not."""
_PHONE_CANDIDATE = re.compile(r"(?:\+|\()?\s?\d[\d \t().\-/]{5,60}\d")
_PHONE_VIEW = re.compile(r"%(?:25)?2[bB]|(?<![\d+])00(?=[1-9]\d{6})")
_SEPARATORS = str.maketrans({c: " " for c in "\u00a0\u202f\u2007\u2009"}
                            | {c: "-" for c in "\u2010\u2011\u2012\u2013\u2014"})
_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
_DATE = re.compile(r"^[12]\d{3}[-/.][01]\d[-/.][0-3]\d|^[0-3]?\d[./-][01]?\d[./-][12]\d{3}|\b[12]\d{3} [0-2]\d$")
_DATE_START = re.compile(r"\s?(?:[12]\d{3}[-/.][01]\d[-/.][0-3]\d|[0-3]?\d[./-][01]?\d[./-][12]\d{3})(?: [0-2]\d)?(?!\d)")
_DECIMAL = re.compile(r"[+-]?\d+[.,]\d+")
MASKED_RE = re.compile(r"\+\d{1,7}\*+#[0-9a-f]{8}|\*\*\*#[0-9a-f]{8}@…?|" + re.escape(MASK))
"""What this module writes: a masked number, the start of a masked address, a masked secret."""
BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"PAR1")
"""How files that are images (or parquet) begin: read by their structure, never as text."""
DATA_URI = re.compile(r"data:(image/[a-z+.-]+);base64,([A-Za-z0-9+/=\s]+)")
"""An inline image in HTML (spared only when its bytes are an image of that type)."""
_IMAGE_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/gif": b"GIF8",
                "image/webp": b"RIFF"}


@dataclass(frozen=True)
class Hit:
    """One thing to mask: where it is and what kind of leak it would be (never the value)."""

    start: int
    end: int
    kind: str
    """`secret`, `phone` or `email`."""
    label: str
    """E.g. `$TWILIO_AUTH_TOKEN (base64)`, `phone number`, `email address`."""
    region: str = ""
    """For a national-format phone number: the region it was read in."""


def is_image(mime: str, payload: str) -> bool:
    """Whether base64 `payload` declared as `mime` really is an image of that type (checked by its magic bytes):
    only such payloads are spared, so a secret cannot hide in an output that merely claims to be a PNG."""
    magic = _IMAGE_MAGIC.get(mime.split(";")[0].strip().lower())
    if magic is None:
        return False
    head = re.sub(r"\s", "", payload[:64])
    try:
        raw = base64.b64decode(head[: len(head) // 4 * 4], validate=True)
    except ValueError:
        return False
    return raw.startswith(magic)


def _pct_lower(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def secret_forms(value: str) -> dict[str, str]:
    """Every literal form of `value` to mask, each with the name of its form."""
    forms: dict[str, str] = {}

    def add(form: str, name: str, minimum: int = MIN_SECRET_LENGTH) -> None:
        if len(form) >= minimum and form not in forms:
            forms[form] = name

    add(value, "plain")
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value), quote(quote(value, safe=""), safe="")):
        add(encoded, "URL-encoded")
        add(_pct_lower(encoded), "URL-encoded")
    escaped = json.dumps(value)[1:-1]
    for form in (escaped, escaped.replace("/", "\\/"), json.dumps(value, ensure_ascii=False)[1:-1]):
        add(form, "JSON-escaped")
        add(re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), form), "JSON-escaped")
    add("".join(f"\\u{ord(c):04x}" if c in "<>&" else c for c in escaped), "JSON-escaped")  # Go's HTML-safe JSON
    add("".join(c if c.isalnum() else f"\\u{ord(c):04x}" for c in value), "JSON-escaped")
    add(html.escape(value), "HTML-escaped")
    add(html.escape(value, quote=False).replace('"', "&#34;").replace("'", "&#39;"), "HTML-escaped")
    add(html.escape(value, quote=False).replace("'", "&#39;"), "HTML-escaped")
    add(html.escape(value, quote=False), "HTML-escaped")
    raw = value.encode()
    add(repr(raw)[2:-1], "bytes repr")
    add(ascii(value)[1:-1], "escaped")
    add(re.sub(r"\\x([0-9a-f]{2})", lambda m: "\\x" + m.group(1).upper(), ascii(value)[1:-1]), "escaped")
    add(quopri.encodestring(raw).decode().replace("=\n", ""), "quoted-printable")
    add(raw.hex(), "hex", MIN_ENCODED)
    add(raw.hex().upper(), "hex", MIN_ENCODED)
    for offset in range(3):  # the value inside a longer base64 string, at each of the three alignments
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        inner = encoded[-(-8 * offset // 6): 8 * (offset + len(raw)) // 6]
        add(inner, "base64", MIN_ENCODED)
        add(inner.replace("+", "-").replace("/", "_"), "base64url", MIN_ENCODED)
        add(quote(inner, safe=""), "base64, URL-encoded", MIN_ENCODED)
        add(inner.replace("/", "\\/"), "base64, JSON-escaped", MIN_ENCODED)
    return forms


class Redactor:
    """Replaces registered secrets (in every derived form), email addresses and phone numbers in text."""

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}
        """Registered secret value → its label."""
        self._needles: dict[str, tuple[str, str]] = {}
        """Every literal form → (the secret's label, the form's name)."""
        self._blocks: dict[str, list[tuple[str, int, str]]] = {}
        """Blocks of long secrets (and of their base64) → (that text, offset, the secret) for finding parts of them."""
        self._whole: set[str] = set()
        """Secrets masked whole only (`add_secret(parts=False)`)."""
        self._public: set[str] = set(EXAMPLES)
        self._regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS
        self._scope = ""
        self._master: bytes | None = None
        self._keys: dict[str, bytes] = {}

    # -- registration ---------------------------------------------------------------------------
    def add_secret(self, value: str | None, label: str = "a secret", *, parts: bool = True) -> None:
        """Register a secret value to be masked everywhere, in every derived form.

        `parts`: also mask any 12+ of its characters (for random tokens). Not for a value whose parts are ordinary
        text — a URL (its host, port and path are everywhere; its password is registered on its own) or a user
        name — which is masked whole only; once registered so, a value stays so."""
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        if value in self._labels:
            if not parts:
                self._whole.add(value)
                self._blocks = {b: [o for o in owners if o[2] != value] for b, owners in self._blocks.items()}
            return
        self._labels[value] = label
        for form, name in secret_forms(value).items():
            self._needles.setdefault(form, (label, name))
        if not parts:
            self._whole.add(value)
        elif len(value) >= FRAGMENT_SECRET:  # a part of it, or of its base64 (wrapped at 76 characters, say)
            wholes = [value] + [f for f, name in secret_forms(value).items() if name == "base64"]
            for whole in wholes:
                for offset in range(0, len(whole) - _BLOCK + 1, _BLOCK):
                    self._blocks.setdefault(whole[offset: offset + _BLOCK], []).append((whole, offset, value))

    def add_secrets(self, values: Iterable[str | None], label: str = "a secret") -> None:
        for v in values:
            self.add_secret(v, label)

    def add_public(self, value: str | None) -> None:
        """A value that may be shown as it is: a sending number or address of our own, the operator's name."""
        if value:
            self._public.add(value)
            self._public.add(re.sub(r"[^\d+]", "", value))


    def set_phone_regions(self, regions: Iterable[str]) -> None:
        """The regions whose national-format numbers are found (ISO 3166 codes; international ones always are)."""
        chosen = tuple(dict.fromkeys(r.upper() for r in regions))
        self._regions = chosen or DEFAULT_PHONE_REGIONS

    def set_scope(self, incident: str) -> None:
        """The incident whose keyed references are made: the same recipient, the same reference, in it only."""
        self._scope = str(incident or "")

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._labels)

    @property
    def regions(self) -> tuple[str, ...]:
        return self._regions

    def snapshot(self) -> tuple[Any, ...]:
        """What is registered now (tests restore it after each test: registration is process-wide)."""
        return dict(self._labels), set(self._whole), set(self._public), self._regions, self._scope

    def restore(self, state: tuple[Any, ...]) -> None:
        labels, whole, public, regions, scope = state
        self._labels, self._needles, self._blocks, self._whole = {}, {}, {}, set()
        for value, label in labels.items():
            self.add_secret(value, label, parts=value not in whole)
        self._public, self._regions, self._scope = set(public), regions, scope

    # -- masking --------------------------------------------------------------------------------
    def find(self, value: str) -> list[Hit]:
        """What `text` would mask, in order, not overlapping (secrets first, then addresses, then numbers)."""
        if not value:
            return []
        protected = [(m.start(), m.end()) for m in MASKED_RE.finditer(value)]
        hits = self._secret_hits(value, protected)
        taken = sorted(protected + [(h.start, h.end) for h in hits])  # disjoint spans, by start (and so by end)
        for hit in self._email_hits(value) + self._phone_hits(value):
            at = bisect.bisect_left(taken, (hit.end,))
            if (at > 0 and taken[at - 1][1] > hit.start) or (at < len(taken) and taken[at][0] < hit.end):
                continue
            hits.append(hit)
            bisect.insort(taken, (hit.start, hit.end))
        return sorted(hits, key=lambda h: h.start)

    def text(self, value: str) -> str:
        """`value` with every secret, email address and phone number masked (masking twice changes nothing)."""
        hits = self.find(value)
        if not hits:
            return value
        out, last = [], 0
        for hit in hits:
            out.append(value[last:hit.start])
            out.append(self._masked(value[hit.start:hit.end], hit))
            last = hit.end
        out.append(value[last:])
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

    # -- documents by structure ----------------------------------------------------------------
    def output_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """A Jupyter output's mime bundle: real images are kept as they are, every other type is masked."""
        out: dict[str, Any] = {}
        for mime, payload in data.items():
            if isinstance(payload, str) and is_image(mime, payload):
                out[mime] = payload
            elif isinstance(payload, list) and all(isinstance(p, str) for p in payload):
                out[mime] = _lines(self.text("".join(payload)))
            else:
                out[mime] = self.data(payload)
        return out

    def output(self, output: dict[str, Any]) -> dict[str, Any]:
        """One notebook output (stream, display data, execute result, error), masked by its structure."""
        out = dict(output)
        if "text" in out:
            out["text"] = _join_like(out["text"], self.text)
        for key in ("ename", "evalue"):
            if isinstance(out.get(key), str):
                out[key] = self.text(out[key])
        if isinstance(out.get("traceback"), list):
            out["traceback"] = [self.text(str(line)) for line in out["traceback"]]
        if isinstance(out.get("data"), dict):
            out["data"] = self.output_data(out["data"])
        if isinstance(out.get("metadata"), dict):
            out["metadata"] = self.data(out["metadata"])
        return out

    def notebook(self, nb: dict[str, Any]) -> dict[str, Any]:
        """A whole notebook (as JSON data): sources, outputs by mime type, metadata."""
        out = dict(nb)
        out["metadata"] = self.data(nb.get("metadata") or {})
        cells = []
        for cell in nb.get("cells") or []:
            cell = dict(cell)
            if "source" in cell:
                cell["source"] = _join_like(cell["source"], self.text)
            if isinstance(cell.get("outputs"), list):
                cell["outputs"] = [self.output(o) if isinstance(o, dict) else self.data(o) for o in cell["outputs"]]
            for key in ("metadata", "attachments"):
                if isinstance(cell.get(key), dict):
                    cell[key] = self.data(cell[key]) if key == "metadata" else {
                        name: self.output_data(d) if isinstance(d, dict) else d for name, d in cell[key].items()}
            cells.append(cell)
        out["cells"] = cells
        return out

    def html_page(self, page: str) -> str:
        """An HTML page: inline images (`data:` URIs that decode to a real image) are kept, the rest masked."""
        out, last = [], 0
        for m in DATA_URI.finditer(page):
            if is_image(m.group(1), m.group(2)):
                out.append(self.text(page[last:m.start()]))
                out.append(m.group(0))
                last = m.end()
        out.append(self.text(page[last:]))
        return "".join(out)

    # -- detectors -------------------------------------------------------------------------------
    def _secret_hits(self, value: str, protected: list[tuple[int, int]]) -> list[Hit]:
        spans: list[tuple[int, int, str]] = []
        for needle, (label, form) in self._needles.items():
            if needle not in value:
                continue
            at = value.find(needle)
            while at >= 0:
                start, end = at, at + len(needle)
                if form.startswith("base64"):
                    start, end = _encoded_word(value, start, end)
                spans.append((start, end, f"{label} ({form})" if form != "plain" else label))
                at = value.find(needle, at + 1)
        for block, owners in self._blocks.items():
            if block not in value:
                continue
            at = value.find(block)
            while at >= 0:
                if any(s <= at < e for s, e, _ in spans):  # inside what is already masked
                    at = value.find(block, at + 1)
                    continue
                for whole, offset, secret in owners:
                    span = _extend(value, at, whole, offset)
                    if span is not None:
                        spans.append((*span, f"{self._labels[secret]} (a part of it)"))
                at = value.find(block, at + 1)
        spans = [s for s in spans if not any(p[0] <= s[0] and s[1] <= p[1] for p in protected)]
        return _merge(spans)

    def _email_hits(self, value: str) -> list[Hit]:
        if not any(at in value for at in _AT_FORMS):
            return []
        hits = []
        for m in EMAIL_RE.finditer(value):
            if m.group(0) in self._public or unquote(unquote(m.group(0))) in self._public:
                continue
            hits.append(Hit(m.start(), m.end(), "email", "email address"))
        for m in CUT_EMAIL_RE.finditer(value):
            if not any(h.start <= m.start() < h.end for h in hits):
                hits.append(Hit(m.start(), m.end(), "email", "email address (cut short)"))
        return hits

    def _phone_hits(self, value: str) -> list[Hit]:
        view = _PHONE_VIEW.sub(lambda m: " " * (len(m.group(0)) - 1) + "+", value)  # '%2B', '%252B', '00' read as
        view = view.translate(_SEPARATORS)                                         # '+'; odd spaces and dashes as
        hits: list[Hit] = []                                                       # plain ones (offsets hold)
        for candidate in _PHONE_CANDIDATE.finditer(view):
            lo, hi = candidate.span()
            date = _DATE_START.match(view, lo)
            if date:
                lo = date.end()  # a date and a time are not a number; what follows them may be
            if sum(c.isdigit() for c in view[lo:hi]) < 7:
                continue
            found = self._readings(view, lo, hi)
            if _uncovered(view, lo, hi, found):  # two numbers side by side, or a number and a count: read apart
                for start in _starts(view, lo, hi):
                    for end in _ends(view, start, hi):  # every number that starts here (the order below picks)
                        found += [r for r in self._readings(view, start, end) if r[0] == start]
            taken: list[tuple[int, int]] = []
            # international readings first, then by where they start; of one start, the first region in the tenants'
            # order (its longest reading): a tenant's own numbering plan wins over a longer reading elsewhere
            order = {region: i for i, region in enumerate(self._regions)}
            for start, end, region in sorted(found, key=lambda f: (f[2] != "", f[0], order.get(f[2], -1), f[0] - f[1])):
                if any(start < e and s < end for s, e in taken):
                    continue
                taken.append((start, end))
                while start > 0 and value[start] != "+" and view[start] == "+":
                    start -= 1  # the whole of '%2B' or '00'
                while start > 0 and view[start - 1] == " " and value[start - 1] not in " \t":
                    start -= 1
                hits.append(Hit(start, end, "phone", "phone number", region))
        return sorted(hits, key=lambda h: h.start)

    def _readings(self, view: str, lo: int, hi: int) -> list[tuple[int, int, str]]:
        """The numbers taken in view[lo:hi], in region order: (start, end, region or "" when international)."""
        import phonenumbers

        window = view[lo:hi] + (view[hi:hi + 3] if view[hi:hi + 1] == ":" else "")  # phonenumbers skips a time
        digits = {i for i, c in enumerate(window[: hi - lo]) if c.isdigit()}
        out: list[tuple[int, int, str]] = []
        for n, region in enumerate(self._regions):
            if n > 0 and not digits:
                break  # every digit of the window is in a number already read
            for m_start, m_end, raw, number in _matches(window, region):
                if m_end > hi - lo or (n > 0 and raw.lstrip("( ").startswith("+")):
                    continue  # past the window; or international, which the first region read already
                start, end = lo + m_start, lo + m_end
                international = raw.lstrip("( ").startswith("+")
                if not _phone_ok(view, start, end, raw, number, region, international, self._regions[0]):
                    continue
                e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                if raw in self._public or re.sub(r"[^\d+]", "", raw) in self._public or e164 in self._public:
                    continue
                digits -= set(range(m_start, m_end))
                out.append((start, end, "" if international else region))
        return out

    # -- masked forms ----------------------------------------------------------------------------
    def _masked(self, original: str, hit: Hit) -> str:
        if hit.kind == "secret":
            return MASK
        if hit.kind == "email" and not EMAIL_RE.fullmatch(original):
            return f"***#{self.reference('email', original.lower())}@…"
        if hit.kind == "email":
            m = EMAIL_RE.fullmatch(original)
            domain = m.group(3) if m else original.rsplit("@", 1)[-1]
            local = unquote(unquote(m.group(1))) if m else original
            return f"***#{self.reference('email', local.lower() + '@' + _idna(domain))}@{domain}"
        return self._masked_phone(original, hit.region)

    def _masked_phone(self, original: str, region_found: str) -> str:
        import phonenumbers

        text = re.sub(r"%(?:25)?2[bB]", "+", original).translate(_SEPARATORS)
        number = None
        for region in ([region_found] if region_found else []) + list(self._regions):
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_possible_number(number):
                break
        if number is None:
            digits = re.sub(r"\D", "", text)
            return f"+{'*' * len(digits)}#{self.reference('phone', digits)}"
        national = phonenumbers.national_significant_number(number)
        keep = min(phonenumbers.length_of_national_destination_code(number) or 2, max(len(national) - 4, 0))
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return f"+{number.country_code}{national[:keep]}{'*' * (len(national) - keep)}#{self.reference('phone', e164)}"

    def reference(self, kind: str, value: str) -> str:
        """A keyed reference to a recipient: stable within the current incident, meaningless outside it."""
        key = self._keys.get(self._scope)
        if key is None:
            key = self._keys[self._scope] = hmac.new(self._master_key(), f"incident:{self._scope}".encode(),
                                                     hashlib.sha256).digest()
        return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:8]

    def _master_key(self) -> bytes:
        if self._master is None:
            self._master = _load_master_key()
            self.add_secret(os.environ.get(PII_KEY_ENV), f"${PII_KEY_ENV}")
        return self._master



def _load_master_key() -> bytes:
    """`$RUNBOOK_PII_KEY`, else a random key kept in the user's state folder (made once, mode 0600), else one for
    this process only (references then differ between processes: nothing leaks, correlation is lost)."""
    env = os.environ.get(PII_KEY_ENV)
    if env:
        return env.encode()
    base = Path(os.environ.get("XDG_STATE_HOME") or Path(os.environ.get("HOME") or "~").expanduser() / ".local/state")
    path = base / "comms-runbooks" / "pii.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    key = _secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex())
        return key
    except FileExistsError:  # another process made it first
        try:
            return bytes.fromhex(path.read_text().strip())
        except (OSError, ValueError):
            return key
    except OSError:
        return key


@functools.lru_cache(maxsize=4096)
def _matches(window: str, region: str) -> tuple[tuple[int, int, str, Any], ...]:
    """What `phonenumbers` reads as possible numbers in a candidate window (the same windows recur: cached)."""
    import phonenumbers

    return tuple((m.start, m.end, m.raw_string, m.number)
                 for m in phonenumbers.PhoneNumberMatcher(window, region, leniency=phonenumbers.Leniency.POSSIBLE))


def _uncovered(view: str, lo: int, hi: int, found: list[tuple[int, int, str]]) -> bool:
    """Whether a candidate that may hold a number (a '+', a bracket, a trunk '0', or digits enough for two) has
    digits outside every reading taken."""
    text = view[lo:hi]
    if not ("+" in text or "(" in text or re.search(r"(?:^|\s)0\d", text) or sum(c.isdigit() for c in text) >= 14):
        return False
    return any(view[i].isdigit() and not any(s <= i < e for s, e, _ in found) for i in range(lo, hi))


def _starts(view: str, lo: int, hi: int) -> list[int]:
    """Where numbers may start inside a candidate: its start, then each '+' or '(', or digit group after a space."""
    return [lo] + [i for i in range(lo + 1, hi) if view[i] in "+(" or (view[i].isdigit() and view[i - 1] in " \t")]


def _ends(view: str, start: int, hi: int) -> list[int]:
    """Where a number starting at `start` may end: the candidate's end, then each digit group's end, longest first."""
    ends = [i for i in range(start + 1, hi) if view[i - 1].isdigit() and not view[i].isdigit()]
    return [hi] + sorted(ends, reverse=True)


def _phone_ok(view: str, start: int, end: int, raw: str, number: Any, region: str, international: bool,
              primary: str) -> bool:
    """Whether a possible number read at view[start:end] is taken for a phone number (see the module's rules)."""
    import phonenumbers

    before = view[start - 1] if start > 0 else " "
    after = view[end] if end < len(view) else " "
    if (before == "," and re.fullmatch(r"\d{3}", view[max(start - 4, 0):start - 1])) or re.match(r",\d{3}(?!\d)",
                                                                                               view[end:end + 5]):
        return False  # a part of 1,234,567
    if before.isalnum() or after.isalnum() or (after == ":" and view[end + 1: end + 2].isdigit()):
        return False  # glued to an id or a word; a time or a port
    for side, next_to in ((before, view[start - 2] if start > 1 else " "), (after, view[end + 1] if end + 1 < len(view)
                                                                             else " ")):
        if side == "_" and next_to.isalnum():
            return False  # part of an identifier (id_2025550123), not emphasis (_+447911123456_)
        if side == "." and next_to.isdigit():
            return False  # a part of a decimal number or an address
    written = raw.strip()
    digits = re.sub(r"\D", "", raw)
    if len(digits) < 7 or _DECIMAL.fullmatch(written) or _DATE.search(written) or _IPV4.search(written):
        return False
    if international:
        return bool(phonenumbers.is_possible_number(number))
    groups = re.findall(r"\d+", written)
    if len(groups) > 4 or sum(len(g) == 1 for g in groups) > 1:
        return False  # a row of counts or offsets, not a number as people write one
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk = getattr(metadata, "national_prefix", None) or ""
    marked = bool(trunk and written.startswith(trunk)) or written.startswith("(")
    if phonenumbers.is_valid_number_for_region(number, region):
        return region == primary or marked  # a bare valid number elsewhere is as likely a count or an epoch
    return len(digits) >= 9 and len(groups) > 1 and marked


def _idna(domain: str) -> str:
    try:
        return domain.encode("idna").decode().lower()
    except UnicodeError:
        return domain.lower()


def _encoded_word(value: str, start: int, end: int) -> tuple[int, int]:
    """Widen a base64 hit to the whole encoded word (with its padding), so no fragment of it stays."""
    while start > 0 and value[start - 1] in _B64_CHARS:
        start -= 1
    while end < len(value) and value[end] in _B64_CHARS:
        end += 1
    while end < len(value) and value[end] == "=":
        end += 1
    return start, end


def _extend(value: str, at: int, secret: str, offset: int) -> tuple[int, int] | None:
    """The span of `value` around `at` that continues `secret` from `offset` both ways (across line breaks), if it
    holds at least FRAGMENT_MIN of its characters."""
    i, j, matched = at - 1, offset - 1, _BLOCK
    while j >= 0:
        if i >= 0 and value[i] == secret[j]:
            i, j, matched = i - 1, j - 1, matched + 1
            continue
        crossed = next((b for b in _BREAKS if value.endswith(b, 0, i + 1) and i - len(b) >= 0
                        and value[i - len(b)] == secret[j]), None)
        if crossed is None:
            break
        i -= len(crossed)
    k, j = at + _BLOCK, offset + _BLOCK
    while j < len(secret):
        if k < len(value) and value[k] == secret[j]:
            k, j, matched = k + 1, j + 1, matched + 1
            continue
        crossed = next((b for b in _BREAKS if value.startswith(b, k) and k + len(b) < len(value)
                        and value[k + len(b)] == secret[j]), None)
        if crossed is None:
            break
        k += len(crossed)
    return (i + 1, k) if matched >= FRAGMENT_MIN else None


def _merge(spans: list[tuple[int, int, str]]) -> list[Hit]:
    out: list[Hit] = []
    for start, end, label in sorted(spans, key=lambda s: (s[0], -s[1])):
        if out and start < out[-1].end:
            last = out[-1]
            labels = last.label if label in last.label.split("; ") else f"{last.label}; {label}"
            out[-1] = Hit(last.start, max(last.end, end), "secret", labels)
        else:
            out.append(Hit(start, end, "secret", label))
    return out


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _join_like(value: Any, fn: Any) -> Any:
    """Apply `fn` to notebook text kept as one string or as a list of lines (joined first: a value can span lines)."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _lines(fn("".join(value)))
    return value


REDACTOR = Redactor()
"""The process-wide redactor: settings register secrets here as they read them."""

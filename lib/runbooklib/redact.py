"""Masking of secrets and personal data in anything a run shows or saves, and finding what was missed.

**Secrets** are registered as they are read (`settings.secret`), each with a label naming where it came
from (an environment variable's *name*). Every form a provider, proxy or error page might echo is
masked as `[redacted]`: the value itself, URL-encoded (once or twice, either hex case), JSON- and
HTML-escaped, hex, and base64/base64url of the value *at any offset inside a larger encoded string* —
which covers HTTP Basic `base64(user:password)`, SMTP `AUTH PLAIN` (`\\0user\\0password`) and
`AUTH LOGIN` without knowing which pair was sent. A base64 hit masks the whole encoded word it is in.
A long secret (20+ characters) is also masked when only part of it appears — any run of 12 or more of
its characters, continued across line breaks (a token wrapped or cut in an error page).

**Personal data** is found without registration. Phone numbers with `phonenumbers`
(`PhoneNumberMatcher` over the tenants' regions, `DEFAULT_PHONE_REGIONS` unless the profile says):
international forms (`+44 7911 123456`, `%2B…`) when they are possible numbers; national forms
(`07700 900123`, `(415) 555-2671`, `14155552671`) when valid in a region, or written with a trunk
prefix or brackets; never digits glued to letters, digits or `_`, nor a decimal. Email addresses
with internationalised local parts and domains, and `%40` for `@`. A masked value keeps what a
responder needs and a keyed reference that is the same for the same recipient within one incident and
useless outside it: `+447911******#3f9a1c2b`, `***#3f9a1c2b@example.com`. The key is derived from
`$RUNBOOK_PII_KEY` (or a key file kept outside every run record) and the incident id.

`find()` reports what `text()` would mask, as `Hit`s naming the kind of leak but never the value; the
fail-closed scan before anything is published (`runbooklib.leaks`) is built on it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import html
import json
import os
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
_BREAKS = ("\r\n", "\n", "\r", "\\r\\n", "\\n")
"""Line breaks a cut secret may be continued across (raw, and as written inside JSON strings)."""
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_LOCAL_CHARS = r"[\w!$%&'+/=?^`{|}~-]"
EMAIL_RE = re.compile(
    rf"(?<![\w!#$%&'*+/=?^`{{|}}~.-])({_LOCAL_CHARS}+(?:\.{_LOCAL_CHARS}+)*)(@|%40|%2540)"
    r"((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{1,59}))(?![\w-])", re.IGNORECASE)
"""A local part without `*` or `#` (so a masked `***#ref@domain` is not masked again), `@` in plain or
percent-encoded form, and a domain of letters in any script ending in a TLD of letters or punycode."""
CUT_EMAIL_RE = re.compile(
    rf"(?<![\w!#$%&'*+/=?^`{{|}}~.-]){_LOCAL_CHARS}+(?:\.{_LOCAL_CHARS}+)*(?:@|%40|%2540)[\w.-]*(?:\.\.\.|…)")
"""An address cut short by a display (`jane.doe%40example....`): its domain is gone, its person is not."""
_PHONE_CANDIDATE = re.compile(r"(?:\+|%2[bB]|\()?\s?\d[\d \t\u00a0().\-/]{5,24}\d")
_DATE = re.compile(r"[12]\d{3}[-/.][01]\d[-/.][0-3]\d")
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
    add(json.dumps(value)[1:-1], "JSON-escaped")
    add(html.escape(value), "HTML-escaped")
    raw = value.encode()
    add(raw.hex(), "hex", MIN_ENCODED)
    add(raw.hex().upper(), "hex", MIN_ENCODED)
    for offset in range(3):  # the value inside a longer base64 string, at each of the three alignments
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        inner = encoded[-(-8 * offset // 6): 8 * (offset + len(raw)) // 6]
        add(inner, "base64", MIN_ENCODED)
        add(inner.replace("+", "-").replace("/", "_"), "base64url", MIN_ENCODED)
    return forms


class Redactor:
    """Replaces registered secrets (in every derived form), email addresses and phone numbers in text."""

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}
        """Registered secret value → its label."""
        self._needles: dict[str, tuple[str, str]] = {}
        """Every literal form → (the secret's label, the form's name)."""
        self._blocks: dict[str, list[tuple[str, int]]] = {}
        """Blocks of long secrets → (secret, offset) for finding parts of them."""
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
                self._blocks = {b: [o for o in owners if o[0] != value] for b, owners in self._blocks.items()}
            return
        self._labels[value] = label
        for form, name in secret_forms(value).items():
            self._needles.setdefault(form, (label, name))
        if not parts:
            self._whole.add(value)
        elif len(value) >= FRAGMENT_SECRET:
            for offset in range(0, len(value) - _BLOCK + 1, _BLOCK):
                self._blocks.setdefault(value[offset: offset + _BLOCK], []).append((value, offset))

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
        taken = protected + [(h.start, h.end) for h in hits]
        for hit in self._email_hits(value) + self._phone_hits(value):
            if not any(hit.start < e and s < hit.end for s, e in taken):
                hits.append(hit)
                taken.append((hit.start, hit.end))
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
                for secret, offset in owners:
                    span = _extend(value, at, secret, offset)
                    if span is not None:
                        spans.append((*span, f"{self._labels[secret]} (a part of it)"))
                at = value.find(block, at + 1)
        spans = [s for s in spans if not any(p[0] <= s[0] and s[1] <= p[1] for p in protected)]
        return _merge(spans)

    def _email_hits(self, value: str) -> list[Hit]:
        if "@" not in value and "%40" not in value and "%2540" not in value:
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
        import phonenumbers

        view = re.sub(r"%2[bB]", "  +", value)  # a URL-encoded '+', read as one (same length: offsets hold)
        found: list[tuple[int, int, str]] = []
        for candidate in _PHONE_CANDIDATE.finditer(view):
            if sum(c.isdigit() for c in candidate.group(0)) < 7:
                continue
            lo = candidate.start()
            window = view[lo:candidate.end() + 3]  # with what follows: phonenumbers skips "2026-12-02 04" + ":06"
            digits = {i for i, c in enumerate(window) if c.isdigit()}
            for n, region in enumerate(self._regions):
                if n > 0 and not digits:
                    break  # every digit of the window is in a number already read
                for m_start, m_end, raw, number in _matches(window, region):
                    start, end = lo + m_start, lo + m_end
                    international = raw.lstrip("( ").startswith("+")
                    if n > 0 and international:
                        continue  # the first region read it already
                    if not _phone_ok(view, start, end, raw, number, region, international):
                        continue
                    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                    if raw in self._public or re.sub(r"[^\d+]", "", raw) in self._public or e164 in self._public:
                        continue
                    digits -= set(range(m_start, m_end))
                    if view[start] == "+" and value[max(start - 2, 0):start + 1].lower() == "%2b":
                        start -= 2  # the whole of '%2B'
                    found.append((start, end, "" if international else region))
        hits: list[Hit] = []
        for start, end, region in sorted(found, key=lambda f: (-(f[1] - f[0]), f[0])):  # the longest reading first
            if not any(start < h.end and h.start < end for h in hits):
                hits.append(Hit(start, end, "phone", "phone number", region))
        return sorted(hits, key=lambda h: h.start)

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

        text = re.sub(r"%2[bB]", "+", original)
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


def _phone_ok(view: str, start: int, end: int, raw: str, number: Any, region: str, international: bool) -> bool:
    """Whether a possible number read at view[start:end] is taken for a phone number (see the module's rules)."""
    import phonenumbers

    before = view[start - 1] if start > 0 else " "
    after = view[end] if end < len(view) else " "
    if before.isalnum() or before in "_*#" or after.isalnum() or after in "_*#":
        return False  # glued to an id, a word or a masked value
    if (before == "." and start > 1 and view[start - 2].isdigit()) or (
            after == "." and end + 1 < len(view) and view[end + 1].isdigit()) or _DECIMAL.fullmatch(raw.strip()):
        return False  # a part of a decimal number
    digits = re.sub(r"\D", "", raw)
    if len(digits) < 7 or _DATE.match(raw.strip()):
        return False
    if international:
        return bool(phonenumbers.is_possible_number(number))
    if phonenumbers.is_valid_number_for_region(number, region):
        return True
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    trunk = getattr(metadata, "national_prefix", None) or ""
    written = raw.strip()
    return len(digits) >= 9 and bool(re.search(r"[\s().\-/]", written)) and (
        bool(trunk and written.startswith(trunk)) or written.startswith("("))


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

"""The fail-closed scan before anything is published: a run bundle, a review, a webhook payload.

Every file is read by its structure — a notebook's outputs by mime type (an image is spared only when
its bytes really are an image), JSON and JSON-lines by their strings (so `\\u00f6` and `\\/` escapes
hide nothing), HTML with its entities decoded and real inline images spared — and checked with the
process-wide redactor for every registered secret in every derived form and for unmasked personal
data. A `Leak` names the file and the kind of leak, never the value. What finds a leak does not
publish: `runs.execute` withholds the files (`quarantine`), `runbook review` writes and sends nothing.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runbooklib.bundle import QUARANTINE as QUARANTINE
from runbooklib.bundle import QUARANTINED as QUARANTINED
from runbooklib.redact import BINARY_MAGIC, DATA_URI, REDACTOR, Redactor, is_image


@dataclass(frozen=True)
class Leak:
    """Something that must not be published: where, what kind, how many times."""

    where: str
    kind: str
    count: int = 1

    def text(self) -> str:
        times = f" ×{self.count}" if self.count > 1 else ""
        return f"{self.where}: {self.kind}{times}"


class LeakFound(Exception):
    """Raised where publishing must stop: the leaks found (names and kinds only)."""

    def __init__(self, leaks: list[Leak], what: str) -> None:
        self.leaks = leaks
        super().__init__(f"{what} not published: it would hold " + "; ".join(leak.text() for leak in leaks[:8])
                         + (f"; and {len(leaks) - 8} more" if len(leaks) > 8 else ""))


def _kinds(strings: Iterator[str], redactor: Redactor) -> Counter[str]:
    found: Counter[str] = Counter()
    for value in strings:
        for hit in redactor.find(value):
            found[_describe(hit.kind, hit.label)] += 1
    return found


def _describe(kind: str, label: str) -> str:
    if kind == "secret":
        return f"secret {label}"
    return f"unmasked {label}"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _notebook_strings(nb: dict[str, Any]) -> Iterator[str]:
    """Every string of a notebook, outputs by mime type: a payload declared as an image and really one is skipped;
    anything else claiming to be an image is read as text."""
    yield from _strings(nb.get("metadata"))
    for cell in nb.get("cells") or []:
        if not isinstance(cell, dict):
            yield from _strings(cell)
            continue
        source = cell.get("source")
        yield "".join(source) if isinstance(source, list) else str(source or "")
        yield from _strings(cell.get("metadata"))
        bundles = [o for o in cell.get("outputs") or [] if isinstance(o, dict)]
        for output in bundles:
            text = output.get("text")
            yield "".join(text) if isinstance(text, list) else str(text or "")
            yield from _strings({k: output.get(k) for k in ("ename", "evalue", "traceback", "metadata")})
            yield from _mime_strings(output.get("data"))
        for attachment in (cell.get("attachments") or {}).values():
            yield from _mime_strings(attachment)


def _mime_strings(data: Any) -> Iterator[str]:
    if not isinstance(data, dict):
        yield from _strings(data)
        return
    for mime, payload in data.items():
        yield str(mime)
        joined = "".join(payload) if isinstance(payload, list) and all(isinstance(p, str) for p in payload) else payload
        if isinstance(joined, str) and is_image(str(mime), joined):
            continue
        yield from _strings(joined)


def _html_strings(page: str) -> Iterator[str]:
    last = 0
    for m in DATA_URI.finditer(page):
        if is_image(m.group(1), m.group(2)):
            yield html.unescape(page[last:m.start()])
            last = m.end()
    yield html.unescape(page[last:])


def scan_text(where: str, text: str, *, redactor: Redactor = REDACTOR) -> list[Leak]:
    """The leaks in one file's or payload's text, read by its structure (from the name's suffix)."""
    strings: Iterator[str]
    name = where.lower()
    if name.endswith(".ipynb"):
        try:
            strings = _notebook_strings(json.loads(text))
        except ValueError:
            strings = iter([text])
    elif name.endswith(".json"):
        try:
            strings = _strings(json.loads(text))
        except ValueError:
            strings = iter([text])
    elif name.endswith(".jsonl"):
        strings = _jsonl_strings(text)
    elif name.endswith((".html", ".htm")):
        strings = _html_strings(text)
    else:
        strings = iter([text])
    found = _kinds(strings, redactor)
    found.update(_kinds(iter([where]), redactor))  # a file's own name
    return [Leak(where, kind, count) for kind, count in sorted(found.items())]


def scan_data(where: str, value: Any, *, redactor: Redactor = REDACTOR) -> list[Leak]:
    """The leaks in a JSON-like payload (e.g. a webhook's body)."""
    return [Leak(where, kind, count) for kind, count in sorted(_kinds(_strings(value), redactor).items())]


def _jsonl_strings(text: str) -> Iterator[str]:
    for line in text.splitlines():
        try:
            yield from _strings(json.loads(line))
        except ValueError:
            yield line


def scan_file(path: Path, where: str, *, redactor: Redactor = REDACTOR) -> list[Leak]:
    raw = path.read_bytes()
    if raw.startswith(BINARY_MAGIC):
        return scan_text(where, "", redactor=redactor)  # an image or a parquet file: its name only
    return scan_text(where, raw.decode("utf-8", errors="replace"), redactor=redactor)


def scan_bundle(bundle: Path, *, redactor: Redactor = REDACTOR) -> list[Leak]:
    """Every leak in every file of a run bundle (paths relative to it)."""
    leaks: list[Leak] = []
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        if path.name == QUARANTINED:
            continue
        leaks += scan_file(path, str(path.relative_to(bundle)), redactor=redactor)
    return leaks


def quarantine(bundle: Path, leaks: list[Leak], root: Path) -> Path:
    """Move every file that leaks out of `bundle` into `root/.quarantine/<incident>/<bundle>/` (owner-only), and
    leave `quarantined.json` in the bundle saying which files went and why. Returns the quarantine folder."""
    folder = root / QUARANTINE / bundle.parent.name / bundle.name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    files: dict[str, list[str]] = {}
    for leak in leaks:
        files.setdefault(leak.where, []).append(leak.kind if leak.count == 1 else f"{leak.kind} ×{leak.count}")
    for name in files:
        source = bundle / name
        if not source.is_file():
            continue
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.move(str(source), str(target))
        os.chmod(target, 0o600)
    record = {"withheld": [{"file": REDACTOR.text(name), "why": kinds} for name, kinds in files.items()],
              "kept_at": str(folder)}
    (bundle / QUARANTINED).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return folder

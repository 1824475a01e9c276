"""Reading a run's records defensively: `summary.json` and `audit.jsonl` as the review and `runbook runs` use them.

A record may be torn, edited or written by another version. `conform(value, shape)` keeps what has the
shape a run writes and drops the rest, saying what it dropped, so that one damaged part of one run never
stops the review of a whole incident. Strings are made safe to print and write (lone surrogates replaced).
"""

from __future__ import annotations

from typing import Any

NUMBER = (int, float)
Shape = Any
"""A type, a tuple of types (None allowed as a member), a dict of key → shape (`"*"`: any key), or [shape]."""

_TEXT, _MAYBE_TEXT = str, (str, None)
FINDING: Shape = {"name": _TEXT, "title": _TEXT, "status": _TEXT, "summary": _TEXT, "classification": _MAYBE_TEXT,
                  "at": _TEXT}
UNCHECKED: Shape = {"check": _TEXT, "what": _TEXT, "why": _TEXT, "by_hand": _TEXT, "needed": bool, "status": _TEXT}
IMPACT: Shape = {"window": {"since": _TEXT, "until": _TEXT}, "total": int, "failed": int, "delayed": int,
                 "tenants": [{"tenant_id": _TEXT, "total": int, "failed": int, "delayed": int}]}
SUMMARY: Shape = {
    "runbook": _TEXT, "title": _TEXT, "incident": _TEXT, "environment": _TEXT, "operator": _MAYBE_TEXT, "status": _TEXT,
    "started_at": _TEXT, "window": {"since": _TEXT, "until": _TEXT, "length": _TEXT, "baseline": _TEXT},
    "timings": {"wall_seconds": NUMBER, "finished_at": _TEXT},
    "findings": {"*": FINDING},
    "diagnosis": {"cause": _TEXT, "outcome": _TEXT, "explanation": _TEXT, "evidence": [_TEXT],
                  "others": [{"cause": _TEXT, "explanation": _TEXT}], "unchecked": [UNCHECKED], "at": _TEXT},
    "measurements": [{"metric": _TEXT, "scope": _TEXT, "value": NUMBER, "basis": _TEXT, "at": _TEXT}],
    "impact": {"*": IMPACT},
    "post_incident": {"title": _TEXT, "items": [{"item": _TEXT, "answer": _TEXT, "ok": bool}]},
    "failed_cell": ({"index": (int, None), "section": _TEXT, "error": _TEXT}, None),
    "evidence": dict, "actions": [dict],
}
AUDIT_ENTRY: Shape = {"ts": _TEXT, "action": _TEXT, "decision": _TEXT, "message": _TEXT, "operator": _MAYBE_TEXT,
                      "plan_digest": _MAYBE_TEXT, "approval": ({"by": _TEXT, "source": _TEXT}, None), "result": dict}
REQUIRED_AUDIT = ("action", "decision")


def safe_text(text: str) -> str:
    """`text` with anything that cannot be written as UTF-8 (a lone surrogate) replaced."""
    return text.encode("utf-8", "replace").decode("utf-8")


def conform(value: Any, shape: Shape, where: str, problems: list[str]) -> tuple[bool, Any]:
    """(fits, the part of `value` that has `shape`); each part dropped is named in `problems`."""
    if isinstance(shape, tuple):
        for option in shape:
            if option is None and value is None:
                return True, None
            if option is not None and _fits_plain(value, option):
                return conform(value, option, where, problems)
        problems.append(f"{where} is not what a run writes; ignored")
        return False, None
    if isinstance(shape, list):
        if not isinstance(value, list):
            problems.append(f"{where} is not a list; ignored")
            return False, None
        kept = []
        for i, item in enumerate(value):
            fits, part = conform(item, shape[0], f"{where}[{i}]", problems)
            if fits:
                kept.append(part)
        return True, kept
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            problems.append(f"{where} is not a mapping; ignored")
            return False, None
        out: dict[str, Any] = {}
        for key, item in value.items():
            inner = shape.get(key, shape.get("*"))
            if inner is None:
                out[str(key)] = _safe(item)
                continue
            fits, part = conform(item, inner, f"{where}.{key}", problems)
            if fits:
                out[safe_text(str(key))] = part
        return True, out
    if not _fits_plain(value, shape):
        problems.append(f"{where} is not what a run writes ({type(value).__name__}); ignored")
        return False, None
    return True, _safe(value)


def _fits_plain(value: Any, shape: Shape) -> bool:
    if isinstance(shape, dict):
        return isinstance(value, dict)
    if isinstance(shape, list):
        return isinstance(value, list)
    if isinstance(value, bool) and shape is not bool:
        return False
    return isinstance(value, shape)


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, list):
        return [_safe(v) for v in value]
    if isinstance(value, dict):
        return {safe_text(str(k)): _safe(v) for k, v in value.items()}
    return value


def summary(value: Any, problems: list[str]) -> dict[str, Any]:
    """A run's summary.json as the review reads it (parts of the wrong shape dropped and reported)."""
    fits, part = conform(value, SUMMARY, "summary.json", problems)
    return part if fits else {}


def audit(entries: list[dict[str, Any]], problems: list[str]) -> list[dict[str, Any]]:
    """Audit entries as the review reads them; an entry without an action or decision is dropped and reported."""
    out = []
    for n, entry in enumerate(entries, 1):
        fits, part = conform(entry, AUDIT_ENTRY, f"audit.jsonl entry {n}", problems)
        if fits and all(isinstance(part.get(k), str) for k in REQUIRED_AUDIT):
            out.append(part)
        elif fits:
            problems.append(f"audit.jsonl entry {n} names no action or decision; skipped")
    return out

"""The review sent to a ticketing webhook: its summary, each run's verdict and what it could not check, and
where the review's files are. The payload is scanned before it leaves (fail closed), and the POST has a total
deadline."""

from __future__ import annotations

import httpx

from runbooklib.deadline import DeadlineExceeded, within
from runbooklib.errors import PlatformUnreachable
from runbooklib.leaks import LeakFound, scan_data
from runbooklib.redact import REDACTOR
from runbooklib.review import Review


def send_webhook(url: str, review: Review, *, markdown_at: str, html_at: str, timeout: float = 10.0) -> int:
    """POST the review's summary and where its files are to a ticketing webhook; returns the HTTP status."""
    payload = REDACTOR.data({
        "incident": review.incident,
        "runs": [{"runbook": r.runbook, "started_at": r.started, "diagnosis": r.cause,
                  "verdict": r.diagnosis.get("outcome") if r.outcome == "completed" else f"run {r.outcome}",
                  "could_not_check": [
                      {"check": u.get("what"), "why": u.get("why"), "needed": bool(u.get("needed"))} for u in r.unchecked],
                  "applied": r.applied, "outcome": r.outcome, "bundle": r.location, "record_problems": r.problems,
                  "interrupted": [{k: i[k] for k in ("action", "verify_by_hand", "plan_digest")} for i in r.interrupted]}
                 for r in review.runs],
        "review": {"markdown": markdown_at, "html": html_at},
        "summary": [line.removeprefix("- ") for line in review.summary],
        "key_figures": [{"figure": f.label, "mitigation": f.mitigations[0].action if f.mitigations else None,
                         "before": f.before.value if f.before else None, "after": f.after.value if f.after else None}
                        for f in review.figures],
    })
    leaks = scan_data("the webhook payload", payload)
    if leaks:
        raise LeakFound(leaks, "the webhook payload")
    try:
        response = within(lambda: httpx.post(url, json=payload, timeout=timeout), 2 * timeout)
    except DeadlineExceeded as exc:
        raise PlatformUnreachable(f"webhook {url}: no complete answer within {exc.seconds:g}s (total deadline)") from exc
    except httpx.HTTPError as exc:
        raise PlatformUnreachable(f"webhook {url}: {exc.__class__.__name__}") from exc
    return response.status_code

"""Key figures before and after mitigation, from run records built by hand (no notebook runs)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runbooklib.bundle import Summary
from runbooklib.incident import RunRecord
from runbooklib.review_figures import changes, key_figures, measurements

T0 = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def at(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def record(runbook: str, started: int, points: list[tuple[str, str, float, int]],
           decisions: list[tuple[str, str, int]]) -> RunRecord:
    summary: dict[str, Any] = {
        "runbook": runbook, "started_at": at(started),
        "measurements": [{"metric": m, "scope": s, "value": v, "basis": "b", "at": at(t)} for m, s, v, t in points]}
    audit = [{"ts": at(t), "action": a, "decision": d, "operator": "op"} for a, d, t in decisions]
    return RunRecord(Path("/nowhere"), Summary.from_json(summary), audit)


def test_each_figure_is_compared_around_its_own_runbooks_first_mitigation() -> None:
    runs = [
        record("email_provider_failure", 0, [("failure_rate", "email", 0.5, 0), ("failure_rate", "email", 0.4, 5),
                                             ("failure_rate", "email", 0.02, 30), ("failure_rate", "email", 0.01, 40)],
               [("send_test_email", "applied", 3), ("switch_email_provider", "applied", 10),
                ("undo_switch_email_provider", "undone", 35)]),
        record("sms_delivery_failure", 20, [("failure_rate", "sms", 0.3, 20), ("queue_depth", "sms", 900, 21)],
               [("retry_failed_sms", "applied", 25)]),
        record("whatsapp_delivery_failure", 50, [("failure_rate", "whatsapp", 0.2, 50), ("failure_rate", "whatsapp", 0.1, 55)],
               [("use_fallback_template", "refused", 52)]),
    ]
    applied = changes(runs)
    assert [c.action for c in applied if c.mitigation] == ["switch_email_provider", "retry_failed_sms"]
    figures = {f.label: f for f in key_figures(measurements(runs), applied)}
    email = figures["email failure rate"]
    assert email.mitigations[0].action == "switch_email_provider"  # not the test email before it, nor the undo
    assert email.before is not None and email.before.value == 0.4
    assert email.after is not None and email.after.value == 0.01
    sms = figures["sms failure rate"]
    assert sms.mitigations[0].action == "retry_failed_sms"
    assert sms.before is not None and sms.before.value == 0.3 and sms.after is None
    whatsapp = figures["whatsapp failure rate"]
    assert whatsapp.mitigations == []  # refused is not applied
    assert whatsapp.before is not None and whatsapp.before.value == 0.2
    assert whatsapp.after is not None and whatsapp.after.value == 0.1
    assert list(figures) == ["email failure rate", "sms failure rate", "whatsapp failure rate", "sms queue depth"]


def test_malformed_measurements_are_skipped() -> None:
    run = record("high_retry_volume", 0, [("dlq_size", "communication-dlq", 5, 1)], [])
    run.summary.measurements += [{"metric": "nonsense", "value": 1, "at": at(2)},
                                    {"metric": "dlq_size", "value": "many", "at": at(3)},
                                    {"metric": "dlq_size", "value": 7, "at": "yesterday"}]
    found = measurements([run])
    assert [(m.label, m.value) for m in found] == [("DLQ size", 5.0)]

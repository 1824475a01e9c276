"""Seed `message_logs` from a scenario: deterministic rows over a baseline and an incident window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from runbooklib.db import normalise_url
from runbooklib.sandbox.scenario import RECIPIENT_FORMS, Scenario
from runbooklib.schema import message_logs, metadata_obj

BASELINE_FAILURES = {
    "EMAIL": (("421 4.4.2 Connection dropped by remote host", "421"), ("Timeout waiting for SMTP response", "ETIMEDOUT")),
    "SMS": (("Unreachable destination handset", "30003"), ("Unknown error", "30008"),
            ("Invalid 'To' Phone Number", "21211")),
    "WHATSAPP": (("Message undeliverable", "131026"), ("Service temporarily unavailable", "131016")),
}
TEMPLATES = {
    "EMAIL": ("booking_confirmation", "password_reset", "weekly_digest", "invoice"),
    "SMS": ("booking_reminder", "verification_code", "waitlist_offer", "event_update"),
    "WHATSAPP": ("booking_confirmation_v2", "event_reminder", "ticket_delivery"),
}
BOUNCES = (("550 5.1.1 Recipient address rejected: User unknown", "550"),
           ("552 5.2.2 Mailbox full", "552"))
_BATCH = 2000


def writable_engine(url: str) -> sa.Engine:
    return sa.create_engine(normalise_url(url))


def create_table(engine: sa.Engine, *, reset: bool = True) -> None:
    if reset:
        metadata_obj.drop_all(engine, tables=[message_logs])
    metadata_obj.create_all(engine, tables=[message_logs])


def _store_time(engine: sa.Engine, value: datetime) -> datetime:
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


def generate_rows(scenario: Scenario, now: datetime) -> list[dict[str, Any]]:
    """Every row the scenario seeds, oldest first. Same scenario and `now` → same rows."""
    logs = scenario.section("message_logs")
    rng = random.Random(int(logs["seed"]))
    tenants = list(logs["tenants"].keys())
    weights = [float(w) for w in logs["tenants"].values()]
    window = timedelta(minutes=float(logs["window"]["minutes"]))
    baseline = timedelta(hours=float(logs["baseline"]["hours"]))
    incident = logs["incident"]
    onset = now - timedelta(minutes=float(incident["started_minutes_ago"]))
    failing_tenants = set(incident["tenants"]) or set(tenants)
    errors = [(e["error"], str(e.get("error_code", "")) or None, e.get("template"), e.get("retry_count"))
              for e in incident["errors"]]
    channel = str(logs["channel"])
    baseline_errors = [(e["error"], str(e.get("error_code", "")) or None) for e in logs["baseline_errors"]] or list(
        BASELINE_FAILURES.get(channel, BASELINE_FAILURES["EMAIL"]))
    error_weights = [float(e.get("weight", 1)) for e in incident["errors"]]

    times: list[datetime] = []
    baseline_start = now - window - baseline
    n_baseline = int(float(logs["baseline"]["per_hour"]) * baseline.total_seconds() / 3600)
    times += [baseline_start + (baseline * rng.random()) for _ in range(n_baseline)]
    n_window = int(float(logs["window"]["per_minute"]) * window.total_seconds() / 60)
    times += [now - window + (window * rng.random()) for _ in range(n_window)]
    times.sort()

    echo = bool(scenario.section("echo")["recipients"]) if "echo" in scenario.data else False
    rows = []
    for i, created in enumerate(times):
        tenant = rng.choices(tenants, weights)[0]
        error: tuple[str, str | None] | None = None
        template = rng.choice(TEMPLATES.get(channel, TEMPLATES["EMAIL"]))
        retry = 0
        in_incident = incident["failure_rate"] and created >= onset and tenant in failing_tenants
        roll = rng.random()
        if in_incident and roll < float(incident["failure_rate"]):
            text, code, failing_template, retries = rng.choices(errors, error_weights)[0]
            error, template = (text, code), failing_template or template
            status = "FAILED" if rng.random() < 0.75 else "RETRYING"
            retry = 3 if status == "FAILED" else rng.randint(1, 2)
            if retries is not None:
                retry = int(retries) if status == "FAILED" else rng.randint(1, int(retries))
        elif roll < float(logs["baseline"]["failure_rate"]):
            error, status, retry = rng.choice(baseline_errors), "FAILED", 3
        elif roll < float(logs["baseline"]["failure_rate"]) + float(logs["baseline"]["bounce_rate"]):
            error, status = rng.choice(BOUNCES), "BOUNCED"
        elif created > now - timedelta(minutes=1):
            status = "QUEUED"
        else:
            status = "DELIVERED" if rng.random() < 0.85 else "SENT"
        meta: dict[str, Any] = {"job_id": str(100000 + i), "queue": channel.lower()}
        recipient = RECIPIENT_FORMS[i % len(RECIPIENT_FORMS)] if echo else _recipient(channel, rng)
        if error and echo:  # a provider's error naming the recipient, in the forms providers write
            error = (f"{error[0]} (to {recipient}; last tried {RECIPIENT_FORMS[(i + 3) % len(RECIPIENT_FORMS)]})", error[1])
        if error:
            meta["error"], meta["error_code"] = error[0], error[1]
        else:
            meta["provider_message_id"] = f"0100018c-{i:08x}"
        rows.append({
            "id": f"{scenario.name}-{i:06d}", "tenant_id": tenant, "channel": logs["channel"], "status": status,
            "provider": logs["provider"], "recipient": recipient,
            "template": template,
            "created_at": created, "updated_at": created + timedelta(seconds=rng.randint(1, 90)),
            "retry_count": retry, "metadata": meta,
        })
    return rows


def _recipient(channel: str, rng: random.Random) -> str:
    if channel == "EMAIL":
        return f"user{rng.randint(1000, 99999)}@example.com"
    return f"+1555{rng.randint(1000000, 9999999)}"  # 555 numbers: never a real subscriber


def seed(url: str, scenario: Scenario, now: datetime | None = None) -> int:
    """(Re)create `message_logs` at `url` and fill it from the scenario; returns the row count."""
    now = now or datetime.now(UTC)
    engine = writable_engine(url)
    try:
        create_table(engine)
        rows = generate_rows(scenario, now)
        for row in rows:
            row["created_at"] = _store_time(engine, row["created_at"])
            row["updated_at"] = _store_time(engine, row["updated_at"])
        with engine.begin() as conn:
            for start in range(0, len(rows), _BATCH):
                conn.execute(message_logs.insert(), rows[start:start + _BATCH])
        return len(rows)
    finally:
        engine.dispose()


def add_delivered(engine: sa.Engine, *, tenant: str, count: int, provider: str, channel: str = "EMAIL") -> None:
    """Simulate a recovered tenant: `count` delivered messages created now."""
    now = datetime.now(UTC)
    rows = [{
        "id": f"recovered-{tenant}-{now.timestamp():.6f}-{i}", "tenant_id": tenant, "channel": channel,
        "status": "DELIVERED", "provider": provider, "recipient": f"user{i}@example.com", "template": "booking_confirmation",
        "created_at": _store_time(engine, now + timedelta(milliseconds=i)),
        "updated_at": _store_time(engine, now + timedelta(milliseconds=i)), "retry_count": 0,
        "metadata": {"provider_message_id": f"recovered-{i}"},
    } for i in range(count)]
    with engine.begin() as conn:
        conn.execute(message_logs.insert(), rows)


def requeue_failed(engine: sa.Engine, *, channel: str, exclude_codes: list[str], ids: list[str],
                   created_before: datetime) -> int:
    """What the platform's retry-failed does with a pinned selection: the listed FAILED messages of `channel`
    created before the cut-off go back to QUEUED (nothing else)."""
    code = message_logs.c["metadata"]["error_code"].as_string()
    condition = sa.and_(message_logs.c.channel == channel.upper(), message_logs.c.status == "FAILED",
                        message_logs.c.id.in_(ids), message_logs.c.created_at < _store_time(engine, created_before))
    if exclude_codes:
        condition = sa.and_(condition, sa.or_(code.is_(None), code.not_in(exclude_codes)))
    with engine.begin() as conn:
        result = conn.execute(message_logs.update().where(condition).values(status="QUEUED"))
    return int(result.rowcount or 0)

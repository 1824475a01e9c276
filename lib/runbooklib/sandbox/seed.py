"""Seed `message_logs` from a scenario: deterministic rows over a baseline and an incident window."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Tenant:
    name: str
    weight: float
    provider: str | None
    failure_rate: float | None


@dataclass(frozen=True)
class _Incident:
    start: datetime
    end: datetime | None
    failure_rate: float
    tenants: frozenset[str]
    providers: frozenset[str]
    channels: frozenset[str]
    errors: tuple[tuple[str, str | None, Any, Any, str | None], ...]
    """(error, code, template — `False` to keep the message's own, None for no template —, retry_count, status)"""
    weights: tuple[float, ...]

    def covers(self, created: datetime, tenant: str, provider: str | None, channel: str) -> bool:
        return (self.start <= created and (self.end is None or created < self.end)
                and (not self.tenants or tenant in self.tenants)
                and (not self.providers or (provider or "") in self.providers)
                and (not self.channels or channel in self.channels))


def tenants_of(logs: dict[str, Any]) -> list[_Tenant]:
    """The scenario's tenants: `name: weight`, or `name: {weight, provider, failure_rate}`."""
    out = []
    for name, spec in logs["tenants"].items():
        if isinstance(spec, dict):
            out.append(_Tenant(str(name), float(spec.get("weight", 1)), spec.get("provider"),
                               float(spec["failure_rate"]) if spec.get("failure_rate") is not None else None))
        else:
            out.append(_Tenant(str(name), float(spec), None, None))
    return out


def _incidents(logs: dict[str, Any], now: datetime) -> list[_Incident]:
    out = []
    for spec in ([logs["incident"]] if float(logs["incident"]["failure_rate"]) else []) + list(logs["incidents"]):
        ended = spec.get("ended_minutes_ago")
        out.append(_Incident(
            start=now - timedelta(minutes=float(spec.get("started_minutes_ago", 0))),
            end=now - timedelta(minutes=float(ended)) if ended is not None else None,
            failure_rate=float(spec["failure_rate"]), tenants=frozenset(map(str, spec.get("tenants") or [])),
            providers=frozenset(map(str, spec.get("providers") or [])),
            channels=frozenset(str(c).upper() for c in spec.get("channels") or []),
            errors=tuple((e["error"], str(e.get("error_code", "")) or None, e["template"] if "template" in e else False,
                          e.get("retry_count"), e.get("status")) for e in spec["errors"]),
            weights=tuple(float(e.get("weight", 1)) for e in spec["errors"])))
    return out


def _volume(logs: dict[str, Any]) -> tuple[Any, float]:
    """(factor at a time, the largest factor): a daily cycle and bursts multiply the scenario's rates."""
    volume = logs["volume"]
    amplitude = float(volume["diurnal"])
    bursts = [(float(b["from_minutes_ago"]), float(b["to_minutes_ago"]), float(b["factor"])) for b in volume["bursts"]]

    def factor(created: datetime, now: datetime) -> float:
        hours = created.hour + created.minute / 60
        out = 1 + amplitude * math.sin(2 * math.pi * (hours - 8) / 24)  # highest mid-afternoon UTC
        ago = (now - created).total_seconds() / 60
        for start, end, times in bursts:
            if end <= ago < start:
                out *= times
        return out

    return factor, (1 + amplitude) * max([1.0, *(b[2] for b in bursts)])


def _times(rng: random.Random, start: datetime, span: timedelta, rate_per_second: float,
           factor: Any, most: float, now: datetime) -> list[datetime]:
    """Creation times over `span` from `start` at `rate_per_second`, shaped by `factor` (thinning)."""
    candidates = int(rate_per_second * most * span.total_seconds())
    out = []
    for _ in range(candidates):
        created = start + span * rng.random()
        if most == 1.0 or rng.random() * most < factor(created, now):
            out.append(created)
    return out


def generate_rows(scenario: Scenario, now: datetime) -> list[dict[str, Any]]:
    """Every row the scenario seeds, oldest first. Same scenario and `now` → same rows."""
    logs = scenario.section("message_logs")
    rng = random.Random(int(logs["seed"]))
    tenants = tenants_of(logs)
    weights = [t.weight for t in tenants]
    window = timedelta(minutes=float(logs["window"]["minutes"]))
    baseline = timedelta(hours=float(logs["baseline"]["hours"]))
    incidents = _incidents(logs, now)
    channel = str(logs["channel"])
    mix = [(str(c).upper(), float(w)) for c, w in (logs["channels"] or {channel: 1}).items()]
    providers = {c.upper(): p for c, p in scenario.section("platform")["providers"].items()}
    baseline_errors = [(e["error"], str(e.get("error_code", "")) or None) for e in logs["baseline_errors"]]
    delay = timedelta(minutes=float(logs["receipts_delay_minutes"]))
    backlog = timedelta(minutes=float(logs["backlog_minutes"]))
    factor, most = _volume(logs)

    baseline_start = now - window - baseline
    times = _times(rng, baseline_start, baseline, float(logs["baseline"]["per_hour"]) / 3600, factor, most, now)
    times += _times(rng, now - window, window, float(logs["window"]["per_minute"]) / 60, factor, most, now)
    times.sort()

    echo = bool(scenario.section("echo")["recipients"]) if "echo" in scenario.data else False
    rows = []
    for i, created in enumerate(times):
        tenant = rng.choices(tenants, weights)[0]
        row_channel = rng.choices([c for c, _ in mix], [w for _, w in mix])[0] if len(mix) > 1 else mix[0][0]
        provider = tenant.provider or (logs["provider"] if row_channel == channel else providers.get(row_channel))
        template: str | None = rng.choice(TEMPLATES.get(row_channel, TEMPLATES["EMAIL"]))
        if float(logs["without_template"]) and rng.random() < float(logs["without_template"]):
            template = None
        error: tuple[str, str | None] | None = None
        retry = 0
        status = ""
        if created > now - backlog:
            status = "QUEUED"  # behind a backlog: not attempted yet, whatever would happen to it
        for incident in incidents if not status else ():
            if incident.covers(created, tenant.name, provider, row_channel) and rng.random() < incident.failure_rate:
                text, code, failing_template, retries, as_status = rng.choices(incident.errors, incident.weights)[0]
                error = (text, code)
                if failing_template is not False:
                    template = failing_template
                status = as_status or ("FAILED" if rng.random() < 0.75 else "RETRYING")
                retry = 3 if status == "FAILED" else (0 if status == "BOUNCED" else rng.randint(1, 2))
                if retries is not None:
                    retry = int(retries) if status != "RETRYING" else rng.randint(1, int(retries))
                break
        if not status:
            roll = rng.random()
            background = tenant.failure_rate if tenant.failure_rate is not None else float(logs["baseline"]["failure_rate"])
            if roll < background:
                choices = baseline_errors or list(BASELINE_FAILURES.get(row_channel, BASELINE_FAILURES["EMAIL"]))
                error, status, retry = rng.choice(choices), "FAILED", 3
            elif roll < background + float(logs["baseline"]["bounce_rate"]):
                error, status = rng.choice(BOUNCES), "BOUNCED"
            elif created > now - timedelta(minutes=1):
                status = "QUEUED"
            elif created > now - delay:
                status = "SENT"  # accepted by the provider; its delivery receipt has not come back yet
            else:
                status = "DELIVERED" if rng.random() < 0.85 else "SENT"
        meta: dict[str, Any] = {"job_id": str(100000 + i), "queue": row_channel.lower()}
        recipient = RECIPIENT_FORMS[i % len(RECIPIENT_FORMS)] if echo else _recipient(row_channel, rng)
        if error and echo:  # a provider's error naming the recipient, in the forms providers write
            error = (f"{error[0]} (to {recipient}; last tried {RECIPIENT_FORMS[(i + 3) % len(RECIPIENT_FORMS)]})", error[1])
        if error:
            meta["error"], meta["error_code"] = error[0], error[1]
        else:
            meta["provider_message_id"] = f"0100018c-{i:08x}"
        rows.append({
            "id": f"{scenario.name}-{i:06d}", "tenant_id": tenant.name, "channel": row_channel, "status": status,
            "provider": provider, "recipient": recipient,
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

"""The query builders run unchanged on PostgreSQL and SQLite and give the same answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from runbooklib import catalog, queries
from runbooklib.db import Database
from runbooklib.errors import QueryError
from runbooklib.sandbox import seed

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SCENARIO = catalog.get("email_provider_failure").load_scenario("tenant_specific")


@pytest.fixture(scope="module")
def databases(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Database]:
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('q') / 'logs.db'}"
    out = {}
    for name, url in (("sqlite", sqlite_url), ("postgres", postgres_url)):
        seed.seed(url, SCENARIO, now=NOW)
        out[name] = Database(url)
    return out


def window(**extra: Any) -> dict[str, Any]:
    return {"channel": "EMAIL", "since": NOW - timedelta(hours=1), "until": NOW + timedelta(seconds=1), **extra}


CASES = [
    ("status_counts", lambda: queries.status_counts(), window()),
    ("status_counts_tenant", lambda: queries.status_counts(by_tenant=True), window(tenant_id="globex")),
    ("failure_totals", lambda: queries.failure_totals(), window()),
    ("status_over_time", lambda: queries.status_over_time(300), window()),
    ("top_errors", lambda: queries.top_errors(), window(limit=5)),
    ("tenant_split", lambda: queries.tenant_split(), window(limit=10)),
    ("tenant_count", lambda: queries.tenant_count(), window()),
    ("peak_rate", lambda: queries.peak_rate(60), window()),
    ("failure_sample", lambda: queries.failure_sample(), window(limit=7)),
]


def normalise(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for row in frame.to_dict("records"):
        rows.append({k: (v.isoformat() if hasattr(v, "isoformat") else (int(v) if isinstance(v, float) and v.is_integer() else v))
                     for k, v in row.items()})
    return rows


@pytest.mark.parametrize(("name", "build", "params"), CASES, ids=[c[0] for c in CASES])
def test_same_answers_on_postgres_and_sqlite(databases: dict[str, Database], name: str, build: Any,
                                             params: dict[str, Any]) -> None:
    lite = databases["sqlite"].fetch(build(), params)
    pg = databases["postgres"].fetch(build(), params)
    assert not lite.empty
    assert normalise(lite) == normalise(pg)


def test_aggregates_match_the_seeded_rows(databases: dict[str, Database]) -> None:
    rows = [r for r in seed.generate_rows(SCENARIO, NOW) if r["created_at"] >= NOW - timedelta(hours=1)]
    totals = databases["postgres"].one(queries.failure_totals(), window())
    assert totals["total"] == len(rows)
    assert totals["failed"] == sum(r["status"] == "FAILED" for r in rows)
    top = databases["sqlite"].fetch(queries.tenant_split(), window(limit=1))
    assert top["tenant_id"].iloc[0] == "globex"


def test_timestamps_come_back_as_utc(databases: dict[str, Database]) -> None:
    for db in databases.values():
        first = db.fetch(queries.top_errors(), window(limit=1))["first_seen"].iloc[0]
        assert first.tzinfo is not None and first.utcoffset() == timedelta(0)


def test_row_cap_is_enforced(databases: dict[str, Database], postgres_url: str) -> None:
    capped = Database(postgres_url, row_cap=3)
    with pytest.raises(QueryError, match="row cap of 3"):
        capped.fetch(queries.failure_sample(), window(limit=10))


def test_the_executor_is_read_only(databases: dict[str, Database]) -> None:
    from runbooklib.schema import message_logs

    for db in databases.values():
        with pytest.raises(QueryError, match="query failed"):
            db.fetch(message_logs.delete())


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_statement_time_limit_interrupts_long_queries(dialect: str, postgres_url: str, tmp_path: Path) -> None:
    url = postgres_url if dialect == "postgres" else f"sqlite:///{tmp_path / 'slow.db'}"
    db = Database(url, statement_timeout=0.3)
    slow = sa.text("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000000) "
                   "SELECT count(*) FROM n")
    with pytest.raises(QueryError, match="time limit"):
        db.fetch(slow)


def test_statements_bind_values_instead_of_formatting_them() -> None:
    sql = str(queries.status_counts(by_tenant=True).compile(dialect=sa.dialects.postgresql.dialect()))
    assert "%(channel)s" in sql and "%(tenant_id)s" in sql and "%(since)s" in sql

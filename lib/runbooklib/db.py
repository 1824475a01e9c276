"""The one database executor: read-only, with a statement time limit and a row cap.

Queries come from `runbooklib.queries` as Core statements; values are always bound. On PostgreSQL
the session is read-only, in UTC, with `statement_timeout`; on SQLite the connection is
`query_only` and a progress handler interrupts a statement past the time limit. A query that fails,
times out or returns more rows than the cap raises `QueryError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from runbooklib.errors import ConfigError, QueryError
from runbooklib.settings import DEFAULT_ROW_CAP, DEFAULT_STATEMENT_TIMEOUT

_PROGRESS_EVERY = 10_000  # SQLite VM instructions between time-limit checks


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs that name no driver."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError("the database URL cannot be parsed (value hidden)") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigError(f"unsupported database {parsed.get_backend_name()!r}; use PostgreSQL or SQLite")
    return parsed.render_as_string(hide_password=False)


class Database:
    """Runs read-only statements with a time limit and a row cap; returns DataFrames."""

    def __init__(self, url: str, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
                 row_cap: int = DEFAULT_ROW_CAP, connect_timeout: float = 5.0,
                 on_result: Callable[[str, Mapping[str, Any], pd.DataFrame], None] | None = None) -> None:
        self.on_result = on_result
        """Called with (compiled SQL, bound values, result) after every query: the run keeps its evidence."""
        self.statement_timeout = statement_timeout
        self.row_cap = row_cap
        url = normalise_url(url)
        self.dialect = make_url(url).get_backend_name()
        if self.dialect == "postgresql":
            options = (f"-c default_transaction_read_only=on -c timezone=UTC "
                       f"-c statement_timeout={int(statement_timeout * 1000)}")
            self.engine: Engine = sa.create_engine(
                url, connect_args={"options": options, "connect_timeout": max(1, int(connect_timeout))},
                pool_pre_ping=True,
            )
        else:
            self.engine = sa.create_engine(url)
            sa.event.listen(self.engine, "connect", _sqlite_read_only)

    def bind_time(self, value: datetime) -> datetime:
        """Timestamps are UTC: aware on PostgreSQL, naive UTC for SQLite's text storage."""
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if self.dialect == "sqlite" else value

    def fetch(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Execute `statement` with bound `params`; at most `row_cap` rows, within the time limit."""
        bound = {k: self.bind_time(v) if isinstance(v, datetime) else v for k, v in (params or {}).items()}
        started = time.monotonic()
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    _sqlite_deadline(conn, started + self.statement_timeout)
                result = conn.execute(statement, bound)
                columns = list(result.keys())
                rows = result.fetchmany(self.row_cap + 1)
        except sa.exc.OperationalError as exc:
            text = str(exc.orig) if exc.orig else str(exc)
            if "interrupted" in text or "statement timeout" in text or "canceling statement" in text:
                raise QueryError(f"query stopped at the {self.statement_timeout:g}s time limit") from exc
            raise QueryError(f"query failed: {text.strip().splitlines()[0]}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise QueryError(f"query failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
        if len(rows) > self.row_cap:
            raise QueryError(f"query returned more than the row cap of {self.row_cap} rows; narrow the window")
        data = [[_utc(v) for v in row] for row in rows]
        frame = pd.DataFrame(data, columns=columns)
        if self.on_result is not None:
            self.on_result(self.sql(statement), bound, frame)
        return frame

    def sql(self, statement: sa.Executable) -> str:
        """The statement as this database runs it (placeholders, not values)."""
        return str(statement.compile(dialect=self.engine.dialect))  # type: ignore[attr-defined]

    def one(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The single row of an aggregate statement, as a dict (empty dict for no row)."""
        frame = self.fetch(statement, params)
        return {} if frame.empty else {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}

    def close(self) -> None:
        self.engine.dispose()


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] in " T":
        # SQLite hands back aggregated timestamps (MIN/MAX) as text.
        try:
            return _utc(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value


def _plain(value: Any) -> Any:
    """numpy scalars to Python values."""
    return value.item() if hasattr(value, "item") else value


def _sqlite_read_only(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA query_only = ON")
    cur.close()


def _sqlite_deadline(conn: sa.Connection, deadline: float) -> None:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, _PROGRESS_EVERY)

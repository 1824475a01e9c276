"""The one database executor: read-only, with a statement time limit, a client-side deadline and a row cap.

Queries come from `runbooklib.queries` as Core statements; values are always bound. On PostgreSQL
the session is read-only, in UTC, with `statement_timeout` and a shorter `lock_timeout` (a locked
table is named as such); the connection attempt is bounded by psycopg's client-side
`connect_timeout`, and a watchdog shuts the session's socket down if no answer has come a little
after the statement timeout (a session that goes silent after connecting never sends the server's
own timeout). On SQLite the connection is `query_only` and a progress handler interrupts a
statement past the time limit. A query that fails, times out or returns more rows than the cap
raises `QueryError`.

Once the database is known down (refused, silent, past its deadline) or timing out, later queries
of the same `Database` fail at once: a run learns that once, not once per query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from runbooklib.deadline import Dependency, RunBudget, watchdog
from runbooklib.errors import ConfigError, QueryError
from runbooklib.settings import DEFAULT_ROW_CAP, DEFAULT_STATEMENT_TIMEOUT

_PROGRESS_EVERY = 10_000  # SQLite VM instructions between time-limit checks
CLIENT_MARGIN = 2.0
"""Seconds past the server's statement timeout before the client gives up on a silent session."""
_DOWN_SIGNS = ("connection refused", "timeout expired", "could not connect", "server closed the connection",
               "connection to server", "no route to host", "name or service not known", "could not translate host",
               "network is unreachable", "connection reset", "consuming input failed", "ssl syscall")


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
                 on_result: Callable[[str, Mapping[str, Any], pd.DataFrame], None] | None = None,
                 budget: RunBudget | None = None) -> None:
        self.on_result = on_result
        """Called with (compiled SQL, bound values, result) after every query: the run keeps its evidence."""
        self.statement_timeout = statement_timeout
        self.row_cap = row_cap
        self.connect_timeout = connect_timeout
        url = normalise_url(url)
        self.dialect = make_url(url).get_backend_name()
        self.dependency = Dependency("the database", statement_timeout + connect_timeout + CLIENT_MARGIN, QueryError,
                                     budget=budget or RunBudget())
        """Known down or timing out: later queries fail at once."""
        if self.dialect == "postgresql":
            ms = int(statement_timeout * 1000)
            options = (f"-c default_transaction_read_only=on -c timezone=UTC -c statement_timeout={ms} "
                       f"-c lock_timeout={max(ms // 2, 1)}")
            self.engine: Engine = sa.create_engine(
                url, connect_args={"options": options, "connect_timeout": max(1, round(connect_timeout))},
                pool_size=2, max_overflow=2, pool_timeout=connect_timeout,
            )
            self._session = threading.local()
            sa.event.listen(self.engine, "connect", self._note_connection, insert=True)
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
        for attempt in (1, 2):
            seconds = self.dependency.allowance("query")
            try:
                columns, rows = self._execute(statement, bound, seconds)
                break
            except _Failed as failed:
                stale = failed.exc.connection_invalidated and not failed.fired
                if attempt == 1 and stale:
                    continue  # a pooled connection had gone stale (server restarted): once more, on a new one
                raise self._error(failed.exc, seconds, fired=failed.fired) from failed.exc
            except sa.exc.SQLAlchemyError as exc:
                raise QueryError(f"query failed: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from exc
        if len(rows) > self.row_cap:
            raise QueryError(f"query returned more than the row cap of {self.row_cap} rows; narrow the window")
        data = [[_utc(v) for v in row] for row in rows]
        frame = pd.DataFrame(data, columns=columns)
        if self.on_result is not None:
            self.on_result(self.sql(statement), bound, frame)
        return frame

    def _execute(self, statement: sa.Executable, bound: Mapping[str, Any],
                 seconds: float) -> tuple[list[str], list[Any]]:
        """Run one statement; on PostgreSQL a watchdog ends a session that stays silent past `seconds` (from the
        checkout on: SQLAlchemy's first connection itself runs queries)."""
        started = time.monotonic()
        if self.dialect == "sqlite":
            try:
                with self.engine.connect() as conn:
                    _sqlite_deadline(conn, started + min(self.statement_timeout, seconds))
                    result = conn.execute(statement, bound)
                    return list(result.keys()), list(result.fetchmany(self.row_cap + 1))
            except sa.exc.DBAPIError as exc:
                raise _Failed(exc, False) from exc
        session: dict[str, Any] = {}
        self._session.current = session  # a new connection's socket is noted here by `_note_connection`
        with watchdog(seconds, lambda: _pg_socket(session.get("raw"))) as fired:
            try:
                with self.engine.connect() as conn:
                    session["raw"] = conn.connection.dbapi_connection
                    result = conn.execute(statement, bound)
                    return list(result.keys()), list(result.fetchmany(self.row_cap + 1))
            except sa.exc.DBAPIError as exc:
                raise _Failed(exc, fired()) from exc
            finally:
                self._session.current = None

    def _note_connection(self, dbapi_connection: Any, _record: Any) -> None:
        """A new PostgreSQL connection: let the current call's watchdog reach it before SQLAlchemy queries it."""
        session = getattr(self._session, "current", None)
        if session is not None:
            session["raw"] = dbapi_connection

    def _error(self, exc: sa.exc.DBAPIError, seconds: float, *, fired: bool) -> QueryError:
        """Name what went wrong; mark the database down when it will not answer or keeps timing out."""
        text = (str(exc.orig) if exc.orig else str(exc)).strip()
        first = text.splitlines()[0] if text else exc.__class__.__name__
        lowered = text.lower()
        if fired:
            self.dependency.trip(f"stopped answering (no reply within {seconds:g}s)")
            return QueryError(f"the database stopped answering: no reply within {seconds:g}s (client-side deadline; "
                              "the session went silent)")
        if "lock timeout" in lowered:
            self.dependency.trip("had message_logs locked")
            return QueryError("message_logs is locked by another session: the query waited "
                              f"{self.statement_timeout / 2:g}s for the lock (lock_timeout)")
        if "interrupted" in lowered or "statement timeout" in lowered or "canceling statement" in lowered:
            self.dependency.trip(f"hit the {self.statement_timeout:g}s statement time limit")
            return QueryError(f"query stopped at the {self.statement_timeout:g}s time limit")
        if "timeout expired" in lowered:
            self.dependency.trip(f"did not accept a connection within {self.connect_timeout:g}s")
            return QueryError(f"cannot connect to the database: no answer within {self.connect_timeout:g}s")
        if isinstance(exc, sa.exc.OperationalError) and any(sign in lowered for sign in _DOWN_SIGNS):
            self.dependency.trip(f"could not be reached ({first[:120]})")
            return QueryError(f"cannot reach the database: {first[:300]}")
        return QueryError(f"query failed: {first[:300]}")

    def sql(self, statement: sa.Executable) -> str:
        """The statement as this database runs it (placeholders, not values)."""
        return str(statement.compile(dialect=self.engine.dialect))  # type: ignore[attr-defined]

    def one(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The single row of an aggregate statement, as a dict (empty dict for no row)."""
        frame = self.fetch(statement, params)
        return {} if frame.empty else {k: _plain(v) for k, v in frame.iloc[0].to_dict().items()}

    def close(self) -> None:
        self.engine.dispose()


class _Failed(Exception):
    """A DBAPI error, and whether the client-side deadline caused it."""

    def __init__(self, exc: sa.exc.DBAPIError, fired: bool) -> None:
        super().__init__(str(exc))
        self.exc, self.fired = exc, fired


def _pg_socket(raw: Any) -> int | None:
    """The file descriptor of a psycopg connection's socket (None if it has none)."""
    try:
        fd: int = raw.pgconn.socket
    except Exception:  # closed or broken: nothing to shut down
        return None
    return fd


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

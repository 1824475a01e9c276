"""Query builders over `message_logs`: each returns a SQLAlchemy Core statement and never executes it.

Every statement binds its window as `:since` / `:until` (`created_at >= :since AND created_at <
:until`) and its channel as `:channel`; with `by_tenant=True` it also binds `:tenant_id`. JSON is
read with SQLAlchemy's portable JSON operators (`->>` on PostgreSQL, `json_extract` on SQLite), and
time buckets with `epoch_bucket`, so one statement runs unchanged on both. All aggregation happens
in the database; only `failure_sample` returns rows, and it is capped by `:limit`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from runbooklib.schema import FAILED_STATUSES, message_logs

if TYPE_CHECKING:
    from typing import TypeAlias

    Query: TypeAlias = sa.Select[*tuple[Any, ...]]

T = message_logs
ERROR = T.c["metadata"]["error"].as_string()
ERROR_CODE = T.c["metadata"]["error_code"].as_string()
PROBLEM_STATUSES = ("FAILED", "BOUNCED", "RETRYING")


class epoch_bucket(FunctionElement[int]):  # noqa: N801 - reads like the SQL function it renders
    """Integer bucket index: floor(epoch seconds of `col` / `size`). Multiply by `size` for the start."""

    type = sa.BigInteger()
    inherit_cache = True

    def __init__(self, col: ColumnElement[Any], size: int) -> None:
        self.size = int(size)
        super().__init__(col)


@compiles(epoch_bucket, "postgresql")
def _bucket_pg(element: epoch_bucket, compiler: Any, **kw: Any) -> str:
    col = compiler.process(list(element.clauses)[0], **kw)
    return f"CAST(floor(extract(epoch FROM {col}) / {element.size}) AS BIGINT)"


@compiles(epoch_bucket, "sqlite")
def _bucket_sqlite(element: epoch_bucket, compiler: Any, **kw: Any) -> str:
    col = compiler.process(list(element.clauses)[0], **kw)
    return f"(CAST(strftime('%s', {col}) AS INTEGER) / {element.size})"


def _where(by_tenant: bool) -> list[ColumnElement[bool]]:
    clauses = [
        T.c.channel == sa.bindparam("channel"),
        T.c.created_at >= sa.bindparam("since"),
        T.c.created_at < sa.bindparam("until"),
    ]
    if by_tenant:
        clauses.append(T.c.tenant_id == sa.bindparam("tenant_id"))
    return clauses


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


DELAYED = sa.and_(T.c.status.in_(("QUEUED", "RETRYING", "SENT", "DELIVERED")),
                  sa.or_(T.c.status.in_(("QUEUED", "RETRYING")), T.c.retry_count > 0))
"""A delayed message: not failed, and still waiting or retrying, or sent only after one or more retries."""


def status_counts(*, by_tenant: bool = False) -> Query:
    """The spec's check: messages by status in the window.

    Columns: `status`, `count`, `retries` (sum of retry_count), `sample_error` (one error text).
    """
    return (
        sa.select(
            T.c.status,
            sa.func.count().label("count"),
            sa.func.coalesce(sa.func.sum(T.c.retry_count), 0).label("retries"),
            sa.func.max(ERROR).label("sample_error"),
        )
        .where(*_where(by_tenant))
        .group_by(T.c.status)
        .order_by(sa.desc("count"), T.c.status)
    )


def failure_totals(*, by_tenant: bool = False) -> Query:
    """One row for the window: `total`, `failed`, `bounced`, `retrying`, `delivered`, `sent`, `queued`, `problems`
    (failed, bounced or retrying)."""
    return sa.select(
        sa.func.count().label("total"),
        _count_if(T.c.status == "QUEUED").label("queued"),
        _count_if(T.c.status.in_(FAILED_STATUSES)).label("failed"),
        _count_if(T.c.status.in_(PROBLEM_STATUSES)).label("problems"),
        _count_if(T.c.status == "BOUNCED").label("bounced"),
        _count_if(T.c.status == "RETRYING").label("retrying"),
        _count_if(T.c.status == "DELIVERED").label("delivered"),
        _count_if(T.c.status == "SENT").label("sent"),
    ).where(*_where(by_tenant))


def failure_buckets(bucket_seconds: int, *, by_tenant: bool = False) -> Query:
    """Messages and failures per time bucket: `bucket` (see `status_over_time`), `total`, `failed`, `problems`
    (failed, bounced or retrying)."""
    bucket = epoch_bucket(T.c.created_at, bucket_seconds).label("bucket")
    return (
        sa.select(bucket, sa.func.count().label("total"), _count_if(T.c.status.in_(FAILED_STATUSES)).label("failed"),
                  _count_if(T.c.status.in_(PROBLEM_STATUSES)).label("problems"))
        .where(*_where(by_tenant))
        .group_by(bucket)
        .order_by(bucket)
    )


def status_over_time(bucket_seconds: int, *, by_tenant: bool = False) -> Query:
    """Messages per time bucket and status.

    Columns: `bucket` (integer; bucket start = bucket × bucket_seconds since the epoch), `status`, `count`.
    """
    bucket = epoch_bucket(T.c.created_at, bucket_seconds).label("bucket")
    return (
        sa.select(bucket, T.c.status, sa.func.count().label("count"))
        .where(*_where(by_tenant))
        .group_by(bucket, T.c.status)
        .order_by(bucket, T.c.status)
    )


def top_errors(*, by_tenant: bool = False) -> Query:
    """The most common errors of failing, bounced and retrying messages; binds `:limit`.

    Columns: `error`, `error_code` (one code seen with it), `count`, `tenants` (distinct),
    `first_seen`, `last_seen`.
    """
    error = sa.func.coalesce(ERROR, "(no error recorded)").label("error")
    return (
        sa.select(
            error,
            sa.func.max(ERROR_CODE).label("error_code"),
            sa.func.count().label("count"),
            sa.func.count(sa.distinct(T.c.tenant_id)).label("tenants"),
            sa.func.min(T.c.created_at).label("first_seen"),
            sa.func.max(T.c.created_at).label("last_seen"),
        )
        .where(*_where(by_tenant), T.c.status.in_(PROBLEM_STATUSES))
        .group_by(error)
        .order_by(sa.desc("count"), error)
        .limit(sa.bindparam("limit"))
    )


def tenant_split() -> Query:
    """Per tenant in the window, most failures first; binds `:limit`.

    Columns: `tenant_id`, `total`, `failed`, `delayed` (see DELAYED).
    """
    tenant = sa.func.coalesce(T.c.tenant_id, "(none)").label("tenant_id")
    failed = _count_if(T.c.status.in_(FAILED_STATUSES)).label("failed")
    return (
        sa.select(tenant, sa.func.count().label("total"), failed, _count_if(DELAYED).label("delayed"))
        .where(*_where(False))
        .group_by(tenant)
        .order_by(sa.desc("failed"), sa.desc("total"), tenant)
        .limit(sa.bindparam("limit"))
    )


def tenant_rates() -> Query:
    """Per tenant, the window (`:since` to `:until`) and the baseline before it (`:baseline_since` to `:since`) in
    one scan, most failures in the window first; binds `:limit`.

    Columns: `tenant_id`, `total`, `failed`, `delayed` (see DELAYED) in the window, and `baseline_total`,
    `baseline_failed`.
    """
    tenant = sa.func.coalesce(T.c.tenant_id, "(none)").label("tenant_id")
    in_window = T.c.created_at >= sa.bindparam("since")
    failed = T.c.status.in_(FAILED_STATUSES)
    return (
        sa.select(tenant,
                  _count_if(in_window).label("total"),
                  _count_if(sa.and_(in_window, failed)).label("failed"),
                  _count_if(sa.and_(in_window, DELAYED)).label("delayed"),
                  _count_if(sa.not_(in_window)).label("baseline_total"),
                  _count_if(sa.and_(sa.not_(in_window), failed)).label("baseline_failed"))
        .where(T.c.channel == sa.bindparam("channel"), T.c.created_at >= sa.bindparam("baseline_since"),
               T.c.created_at < sa.bindparam("until"))
        .group_by(tenant)
        .order_by(sa.desc("failed"), sa.desc("total"), tenant)
        .limit(sa.bindparam("limit"))
    )


def tenant_count() -> Query:
    """Columns: `tenants` (distinct tenants with messages), `failing_tenants` (with a failure), `total`, `failed`,
    `delayed`."""
    return sa.select(
        sa.func.count().label("total"),
        _count_if(T.c.status.in_(FAILED_STATUSES)).label("failed"),
        _count_if(DELAYED).label("delayed"),
        sa.func.count(sa.distinct(T.c.tenant_id)).label("tenants"),
        sa.func.count(sa.distinct(sa.case((T.c.status.in_(FAILED_STATUSES), T.c.tenant_id)))).label(
            "failing_tenants"
        ),
    ).where(*_where(False))


def peak_rate(bucket_seconds: int = 60, *, by_tenant: bool = False) -> Query:
    """The busiest bucket of the window. Columns: `bucket`, `count`."""
    bucket = epoch_bucket(T.c.created_at, bucket_seconds).label("bucket")
    return (
        sa.select(bucket, sa.func.count().label("count"))
        .where(*_where(by_tenant))
        .group_by(bucket)
        .order_by(sa.desc("count"), bucket)
        .limit(1)
    )


def failure_sample(*, by_tenant: bool = False) -> Query:
    """A capped sample of the newest failures; binds `:limit`.

    Columns: `id`, `tenant_id`, `status`, `provider`, `recipient`, `created_at`, `retry_count`,
    `error`, `error_code`.
    """
    return (
        sa.select(
            T.c.id, T.c.tenant_id, T.c.status, T.c.provider, T.c.recipient, T.c.created_at,
            T.c.retry_count, ERROR.label("error"), ERROR_CODE.label("error_code"),
        )
        .where(*_where(by_tenant), T.c.status.in_(FAILED_STATUSES))
        .order_by(sa.desc(T.c.created_at), T.c.id)
        .limit(sa.bindparam("limit"))
    )


def error_code_counts(*, by_tenant: bool = False, statuses: tuple[str, ...] = PROBLEM_STATUSES) -> Query:
    """Messages in `statuses` (default: failing, bounced, retrying) per error code, most first; binds `:limit`.

    Columns: `error_code`, `count`, `tenants` (distinct), `sample_error` (one error text),
    `last_seen`.
    """
    code = sa.func.coalesce(ERROR_CODE, "").label("error_code")
    return (
        sa.select(code, sa.func.count().label("count"), sa.func.count(sa.distinct(T.c.tenant_id)).label("tenants"),
                  sa.func.max(ERROR).label("sample_error"), sa.func.max(T.c.created_at).label("last_seen"))
        .where(*_where(by_tenant), T.c.status.in_(statuses))
        .group_by(code)
        .order_by(sa.desc("count"), code)
        .limit(sa.bindparam("limit"))
    )


def error_codes_over_time(bucket_seconds: int, *, by_tenant: bool = False) -> Query:
    """Failing, bounced and retrying messages per time bucket and error code.

    Columns: `bucket` (see `status_over_time`), `error_code`, `count`.
    """
    bucket = epoch_bucket(T.c.created_at, bucket_seconds).label("bucket")
    code = sa.func.coalesce(ERROR_CODE, "").label("error_code")
    return (
        sa.select(bucket, code, sa.func.count().label("count"))
        .where(*_where(by_tenant), T.c.status.in_(PROBLEM_STATUSES))
        .group_by(bucket, code)
        .order_by(bucket, code)
    )


def template_failures(*, by_tenant: bool = False) -> Query:
    """Failures per message template and error code, most first; binds `:limit`.

    Columns: `template`, `error_code`, `count`.
    """
    template = sa.func.coalesce(T.c.template, "(none)").label("template")
    code = sa.func.coalesce(ERROR_CODE, "").label("error_code")
    return (
        sa.select(template, code, sa.func.count().label("count"))
        .where(*_where(by_tenant), T.c.status.in_(PROBLEM_STATUSES))
        .group_by(template, code)
        .order_by(sa.desc("count"), template, code)
        .limit(sa.bindparam("limit"))
    )


def failed_message_ids(*, by_tenant: bool = False) -> Query:
    """FAILED messages of `:channel` in the window with an error code in `:codes` (an expanding list), by id (what
    a retry of the incident's failed messages picks up); binds `:limit`.

    Columns: `id`, `tenant_id`, `error_code`, `created_at`.
    """
    clauses = [*_where(False), T.c.status == "FAILED", ERROR_CODE.in_(sa.bindparam("codes", expanding=True))]
    if by_tenant:
        clauses.append(T.c.tenant_id == sa.bindparam("tenant_id"))
    return (
        sa.select(T.c.id, T.c.tenant_id, sa.func.coalesce(ERROR_CODE, "").label("error_code"), T.c.created_at)
        .where(*clauses)
        .order_by(T.c.id)
        .limit(sa.bindparam("limit"))
    )


def failed_recipients(*, by_tenant: bool = False) -> Query:
    """Recipients whose messages failed with one of `:codes` (an expanding list); binds `:limit`.

    Columns: `tenant_id`, `recipient`, `error_code`, `count`, `last_seen`, `message_id` (one id).
    """
    code = sa.func.coalesce(ERROR_CODE, "").label("error_code")
    return (
        sa.select(T.c.tenant_id, T.c.recipient, code, sa.func.count().label("count"),
                  sa.func.max(T.c.created_at).label("last_seen"), sa.func.max(T.c.id).label("message_id"))
        .where(*_where(by_tenant), T.c.status.in_(PROBLEM_STATUSES), T.c.recipient.is_not(None),
               ERROR_CODE.in_(sa.bindparam("codes", expanding=True)))
        .group_by(T.c.tenant_id, T.c.recipient, code)
        .order_by(sa.desc("count"), T.c.tenant_id, T.c.recipient)
        .limit(sa.bindparam("limit"))
    )


def _window_any_channel() -> list[ColumnElement[bool]]:
    return [T.c.created_at >= sa.bindparam("since"), T.c.created_at < sa.bindparam("until")]


def retry_distribution() -> Query:
    """The spec's retry-pattern query, every channel: messages by status and retry_count, highest first.

    Columns: `status`, `retry_count`, `count`.
    """
    return (
        sa.select(T.c.status, T.c.retry_count, sa.func.count().label("count"))
        .where(*_window_any_channel())
        .group_by(T.c.status, T.c.retry_count)
        .order_by(sa.desc(T.c.retry_count), T.c.status)
    )


def errors_by_retry() -> Query:
    """Errors of failing and retrying messages per channel and retry_count, every channel.

    Columns: `channel`, `error`, `retry_count`, `count`, `error_code` (one code seen with it).
    """
    error = sa.func.coalesce(ERROR, "(no error recorded)").label("error")
    return (
        sa.select(T.c.channel, error, T.c.retry_count, sa.func.count().label("count"),
                  sa.func.max(ERROR_CODE).label("error_code"))
        .where(*_window_any_channel(), T.c.status.in_(PROBLEM_STATUSES))
        .group_by(T.c.channel, error, T.c.retry_count)
        .order_by(sa.desc("count"), T.c.channel, error, T.c.retry_count)
    )


def retry_volume() -> Query:
    """One row: `messages` (created), `first_attempts` (retry_count 0), `retries` (sum of retry_count),
    `problems` (failing, bounced or retrying)."""
    return sa.select(
        sa.func.count().label("messages"),
        _count_if(T.c.status.in_(PROBLEM_STATUSES)).label("problems"),
        _count_if(T.c.retry_count == 0).label("first_attempts"),
        sa.func.coalesce(sa.func.sum(T.c.retry_count), 0).label("retries"),
    ).where(*_window_any_channel())


def repeat_offenders(min_retries: int) -> Query:
    """Messages retried at least `min_retries` times, most retried first; binds `:limit`.

    Columns: `id`, `channel`, `tenant_id`, `status`, `retry_count`, `error`, `job_id`.
    """
    return (
        sa.select(T.c.id, T.c.channel, T.c.tenant_id, T.c.status, T.c.retry_count, ERROR.label("error"),
                  T.c["metadata"]["job_id"].as_string().label("job_id"))
        .where(*_window_any_channel(), T.c.retry_count >= int(min_retries))
        .order_by(sa.desc(T.c.retry_count), T.c.id)
        .limit(sa.bindparam("limit"))
    )


def delivered_ids() -> Query:
    """Which of `:ids` (an expanding list of message ids) are DELIVERED. Columns: `id`."""
    return sa.select(T.c.id).where(T.c.id.in_(sa.bindparam("ids", expanding=True)), T.c.status == "DELIVERED")

"""The `message_logs` table and its enums, defined once.

Required columns (the runbooks' queries use them): `channel`, `status`, `created_at`, `retry_count`,
`metadata` (JSON with an `error` text). Optional columns used when present: `id`, `tenant_id`,
`provider`, `recipient`, `template`, `updated_at`; and in `metadata`: `error_code`,
`provider_message_id`, `job_id`, `queue`.

Production stores `metadata` as PostgreSQL JSONB; the demo uses SQLite. Timestamps are UTC: the
database executor sets the session time zone to UTC so that `timestamp without time zone` columns
compare correctly with the bound window.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from runbooklib.channels import LOG_NAMES

CHANNELS = LOG_NAMES
"""`message_logs.channel` values (declared in `runbooklib.channels`)."""
STATUSES = ("QUEUED", "SENT", "DELIVERED", "FAILED", "BOUNCED", "RETRYING")
FAILED_STATUSES = ("FAILED",)
"""Statuses counted as failures in failure rates (BOUNCED is reported on its own)."""

metadata_obj = sa.MetaData()

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

message_logs = sa.Table(
    "message_logs",
    metadata_obj,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), index=True),
    sa.Column("channel", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("provider", sa.String(32)),
    sa.Column("recipient", sa.String(320)),
    sa.Column("template", sa.String(128)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("metadata", JSONType),
)

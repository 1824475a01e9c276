"""The real services the suite starts: PostgreSQL and Redis on loopback."""

from __future__ import annotations

import socket

import redis
import sqlalchemy as sa

from tests.services import PostgresServer, RedisServer


def test_postgres_answers_on_loopback(postgres: PostgresServer) -> None:
    engine = sa.create_engine(postgres.url)
    with engine.connect() as conn:
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
        address = conn.execute(sa.text("SELECT inet_server_addr()::text")).scalar_one()
    engine.dispose()
    assert int(str(version).split(".")[0]) >= 15
    assert address.startswith("127.0.0.1")


def test_redis_answers_on_loopback(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2)
    assert client.ping() is True
    client.set("runbook:probe", "1")
    assert client.get("runbook:probe") == b"1"
    client.close()
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=1):
        pass

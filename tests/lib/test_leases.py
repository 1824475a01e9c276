"""Leases against a real redis-server: racing runs, all-or-nothing, expiry, renewal, token-checked release,
a SIGKILLed holder, and stores that refuse or never answer (each call bounded by its total deadline)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.exceptions

from runbooklib.leases import Lease, LeaseHeld, Leases, LeaseStoreError, store_error
from tests.faults.servers import Proxy, Silent, Trickle, closed_port
from tests.services import RedisServer

ROOT = Path(__file__).resolve().parents[2]
SLACK = 0.75
"""Seconds a call may overrun its total deadline (thread start, scheduling on a loaded machine)."""

LeasesFactory = Callable[..., Leases]


def holder_of(run: str, action: str = "pause_queue") -> dict[str, Any]:
    return {"incident": "INC-7", "run": run, "operator": "alice", "action": action}


@pytest.fixture
def prefix() -> str:
    return f"test-lease:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def make_leases(redis_server: RedisServer, prefix: str) -> Iterator[LeasesFactory]:
    """Leases on the session's Redis under this test's own prefix (each one its own pool, like another machine)."""
    made: list[Leases] = []

    def factory(url: str | None = None, **kwargs: Any) -> Leases:
        kwargs.setdefault("prefix", prefix)
        made.append(Leases(url or redis_server.url, **kwargs))
        return made[-1]

    yield factory
    for leases in made:
        leases.close()


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


def test_a_lease_is_stored_with_its_holder_and_ends_on_release(make_leases: LeasesFactory, raw: redis.Redis,
                                                               prefix: str) -> None:
    leases = make_leases(ttl=30)
    lease = leases.acquire(["queue:sms", "channel:email:tenant:t-acme", "queue:sms"], holder_of("r-1"))
    assert lease.resources == ("channel:email:tenant:t-acme", "queue:sms")  # sorted, unique
    seen = leases.holder("queue:sms")
    assert seen is not None
    assert {k: seen[k] for k in ("incident", "run", "operator", "action")} == holder_of("r-1")
    assert seen["resources"] == ["channel:email:tenant:t-acme", "queue:sms"]
    since, expires = datetime.fromisoformat(seen["since"]), datetime.fromisoformat(seen["expires"])
    assert abs((since - datetime.now(UTC)).total_seconds()) < 5
    assert 25 < (expires - since).total_seconds() <= 31 and 25 < seen["expires_in"] <= 30
    assert "token" not in seen
    assert 25_000 < raw.pttl(prefix + "queue:sms") <= 30_000
    lease.release()
    lease.release()  # idempotent
    assert leases.holder("queue:sms") is None and leases.holder("channel:email:tenant:t-acme") is None
    assert lease.lost is None


def test_a_held_resource_is_refused_naming_its_holder_and_nothing_is_taken(make_leases: LeasesFactory) -> None:
    a, b = make_leases(), make_leases()
    held = a.acquire(["r2"], holder_of("run-A", "switch_email_provider"))
    with pytest.raises(LeaseHeld) as refused:
        b.acquire(["r1", "r2"], holder_of("run-B"))
    assert refused.value.resource == "r2"
    assert refused.value.holder["run"] == "run-A" and refused.value.holder["action"] == "switch_email_provider"
    message = str(refused.value)
    for part in ("r2", "incident INC-7", "run run-A", "operator alice", "action switch_email_provider", "since ",
                 "expires ", "nothing was taken"):
        assert part in message
    assert b.holder("r1") is None  # all or nothing: r1 was not taken
    b.acquire(["r1"], holder_of("run-C")).release()
    held.release()


def test_racing_runs_for_overlapping_resources_exactly_one_wins(make_leases: LeasesFactory) -> None:
    a, b = make_leases(), make_leases()
    for round_ in range(50):
        sets = {"A": [f"{round_}:queue:sms", f"{round_}:queue:communication-dlq"],
                "B": [f"{round_}:queue:communication-dlq", f"{round_}:platform:sms:retry-failed"]}
        barrier = threading.Barrier(2)
        outcome: dict[str, Any] = {}

        def run(name: str, leases: Leases, sets: dict[str, list[str]] = sets, barrier: threading.Barrier = barrier,
                outcome: dict[str, Any] = outcome) -> None:
            barrier.wait()
            try:
                outcome[name] = leases.acquire(sets[name], holder_of(f"run-{name}"))
            except LeaseHeld as exc:
                outcome[name] = exc

        threads = [threading.Thread(target=run, args=("A", a)), threading.Thread(target=run, args=("B", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        won = [n for n, o in outcome.items() if isinstance(o, Lease)]
        lost = [n for n, o in outcome.items() if isinstance(o, LeaseHeld)]
        assert len(won) == 1 and len(lost) == 1, outcome
        winner, loser = won[0], lost[0]
        refusal = outcome[loser]
        assert refusal.resource == f"{round_}:queue:communication-dlq"
        assert refusal.holder["run"] == f"run-{winner}"
        loser_only = next(r for r in sets[loser] if r not in sets[winner])
        assert a.holder(loser_only) is None  # the loser took nothing
        outcome[winner].release()


def test_an_unrenewed_lease_expires_and_another_run_takes_it(make_leases: LeasesFactory) -> None:
    a, b = make_leases(ttl=0.5), make_leases(ttl=0.5)
    lease = a.acquire(["queue:sms"], holder_of("run-A"))
    with pytest.raises(LeaseHeld):
        b.acquire(["queue:sms"], holder_of("run-B"))
    time.sleep(0.7)
    assert lease.lost is not None and "not confirmed" in lease.lost  # the holder knows it cannot count on it
    b.acquire(["queue:sms"], holder_of("run-B")).release()


def test_an_open_lease_is_renewed_past_several_ttls(make_leases: LeasesFactory) -> None:
    a, b = make_leases(ttl=0.6), make_leases(ttl=0.6)
    with a.acquire(["queue:sms", "queue:email"], holder_of("run-A")) as lease:
        ends = time.monotonic() + 2.4  # four ttls
        while time.monotonic() < ends:
            with pytest.raises(LeaseHeld) as refused:
                b.acquire(["queue:email"], holder_of("run-B"))
            assert refused.value.holder["run"] == "run-A"
            time.sleep(0.2)
        assert lease.lost is None
    assert lease.lost is None and lease.release_error is None
    b.acquire(["queue:sms", "queue:email"], holder_of("run-B")).release()


def test_release_never_deletes_a_key_another_run_took_after_expiry(make_leases: LeasesFactory, raw: redis.Redis,
                                                                   prefix: str) -> None:
    a, b = make_leases(ttl=0.3), make_leases(ttl=30)
    stale = a.acquire(["queue:sms", "queue:email"], holder_of("run-A"))
    time.sleep(0.5)
    fresh = b.acquire(["queue:sms"], holder_of("run-B"))
    stale.renew()  # finds queue:email gone and queue:sms taken; extends neither, creates nothing
    assert stale.lost is not None
    assert raw.exists(prefix + "queue:email") == 0
    stale.release()
    seen = b.holder("queue:sms")
    assert seen is not None and seen["run"] == "run-B"
    assert 25_000 < raw.pttl(prefix + "queue:sms") <= 30_000  # B's expiry untouched by A's renew
    fresh.release()
    assert b.holder("queue:sms") is None


def test_lost_names_the_run_that_took_the_lease_over(make_leases: LeasesFactory, raw: redis.Redis,
                                                     prefix: str) -> None:
    a, b = make_leases(ttl=0.6), make_leases(ttl=30)
    with a.acquire(["queue:sms"], holder_of("run-A")) as lease:
        raw.delete(prefix + "queue:sms")  # as if it expired while the holder was stalled ...
        fresh = b.acquire(["queue:sms"], holder_of("run-B", "move_to_dlq"))  # ... and run B took it
        deadline = time.monotonic() + 2
        while lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost is not None
        assert "queue:sms was taken by" in lease.lost and "run run-B" in lease.lost
        assert "action move_to_dlq" in lease.lost
    seen = b.holder("queue:sms")
    assert seen is not None and seen["run"] == "run-B"  # A's exit released nothing of B's
    fresh.release()


def test_a_lease_whose_key_vanished_says_so(make_leases: LeasesFactory, raw: redis.Redis, prefix: str) -> None:
    lease = make_leases(ttl=30).acquire(["queue:sms"], holder_of("run-A"))
    raw.delete(prefix + "queue:sms")
    lease.renew()
    assert lease.lost is not None and "gone" in lease.lost
    assert raw.exists(prefix + "queue:sms") == 0  # renewal never re-creates a key


def test_a_sigkilled_holder_s_lease_expires(make_leases: LeasesFactory, redis_server: RedisServer,
                                            prefix: str) -> None:
    code = (
        "import sys, time\n"
        "from runbooklib.leases import Leases\n"
        f"leases = Leases({redis_server.url!r}, prefix={prefix!r}, ttl=1.0)\n"
        "with leases.acquire(['queue:sms'], {'incident': 'INC-9', 'run': 'doomed'}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "lib"), str(ROOT)])}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        other = make_leases(ttl=5)
        time.sleep(1.5)  # past its ttl: still held, because the child renews it
        with pytest.raises(LeaseHeld) as refused:
            other.acquire(["queue:sms"], holder_of("run-B"))
        assert refused.value.holder["run"] == "doomed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        taken: Lease | None = None
        while taken is None and time.monotonic() - killed < 1.5:
            try:
                taken = other.acquire(["queue:sms"], holder_of("run-B"))
            except LeaseHeld:
                time.sleep(0.05)
        assert taken is not None, "the killed holder's lease did not expire within its ttl"
        taken.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()


def test_a_closed_port_fails_fast_with_a_store_error(make_leases: LeasesFactory) -> None:
    leases = make_leases(f"redis://127.0.0.1:{closed_port()}/0", timeout=1, total_timeout=2)
    started = time.monotonic()
    with pytest.raises(LeaseStoreError, match="could not be reached"):
        leases.acquire(["queue:sms"], holder_of("run-A"))
    with pytest.raises(LeaseStoreError):
        leases.holder("queue:sms")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("fault", ["silent", "trickle"])
def test_a_store_that_never_answers_is_cut_at_the_total_deadline(make_leases: LeasesFactory, fault: str) -> None:
    # Socket timeouts longer than the total deadline: only the total deadline can end these calls.
    server = Silent() if fault == "silent" else Trickle(b"$100000\r\n" + b"x" * 100000, every=0.2)
    try:
        leases = make_leases(f"redis://127.0.0.1:{server.port}/0", timeout=30, total_timeout=1)
        for call in (lambda: leases.acquire(["queue:sms"], holder_of("run-A")), lambda: leases.holder("queue:sms")):
            started = time.monotonic()
            with pytest.raises(LeaseStoreError, match="no complete answer within 1s"):
                call()
            assert time.monotonic() - started < 1 + SLACK
        assert server.connections >= 1
    finally:
        server.stop()


def test_renew_and_release_are_bounded_when_the_store_goes_silent(make_leases: LeasesFactory,
                                                                  redis_server: RedisServer) -> None:
    freeze = threading.Event()
    proxy = Proxy("127.0.0.1", redis_server.port, freeze_after=lambda _: freeze.is_set(), everywhere=True)
    try:
        leases = make_leases(f"redis://127.0.0.1:{proxy.port}/0", ttl=3, timeout=30, total_timeout=1)
        lease = leases.acquire(["queue:sms"], holder_of("run-A"))
        freeze.set()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as trigger:
            trigger.sendall(b"PING\r\n")  # this answer passes (no deadline of ours, so a loaded machine cannot
            assert trigger.recv(16).startswith(b"+PONG")  # fail it); then everything through the proxy hangs
        started = time.monotonic()
        lease.renew()
        assert time.monotonic() - started < 1 + SLACK
        assert lease.lost is not None and "could not confirm" in lease.lost
        started = time.monotonic()
        with pytest.raises(LeaseStoreError, match="total deadline"):
            lease.release()
        assert time.monotonic() - started < 1 + SLACK
        started = time.monotonic()
        with lease:  # leaving the block does not raise: the keys expire by themselves
            pass
        assert time.monotonic() - started < 1 + SLACK
        assert lease.release_error is not None and "expire within 3s" in lease.release_error
    finally:
        proxy.stop()


def test_release_waits_for_a_renewal_in_flight_and_stays_bounded(make_leases: LeasesFactory,
                                                                  redis_server: RedisServer) -> None:
    """The block ends while a renewal is blocked on a stalled connection: release lets that renewal meet its
    deadline first, so no renewer is left mid-call when the caller closes the pool (the race that killed the
    renewer thread with redis-py's `'NoneType' object has no attribute 'readline'`)."""
    armed, lock = threading.Event(), threading.Lock()

    def freeze_once(_: bytes) -> bool:  # the first connection to answer once armed stalls; others stay live
        with lock:
            if armed.is_set():
                armed.clear()
                return True
            return False

    proxy = Proxy("127.0.0.1", redis_server.port, freeze_after=freeze_once)
    try:
        leases = make_leases(f"redis://127.0.0.1:{proxy.port}/0", ttl=0.6, timeout=30, total_timeout=2)
        with leases.acquire(["queue:sms"], holder_of("run-A")) as lease:
            armed.set()  # the renewer's next answer passes, then its pooled connection stalls
            deadline = time.monotonic() + 5
            while proxy.frozen == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proxy.frozen == 1
            time.sleep(0.4)  # the following renewal (every 0.2 s) is now blocked on that connection
            assert lease._renewer is not None and lease._renewer.is_alive()
            started = time.monotonic()
        assert not lease._renewer.is_alive()  # release waited for it ...
        assert time.monotonic() - started < 2 + SLACK  # ... within its deadline, then released on a live one
        assert lease.release_error is None
        leases.close()
    finally:
        proxy.stop()


def test_every_redis_error_is_mapped_to_a_store_error() -> None:
    def subclasses(cls: type[BaseException]) -> list[type[BaseException]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]
    upstream = {c for c in subclasses(redis.exceptions.RedisError) if c.__module__.startswith("redis")}
    assert len(upstream) > 10
    for cls in upstream:
        exc = cls.__new__(cls)  # some need cluster replies to construct; the mapping reads only the class
        exc.args = ("boom",)
        mapped = store_error("acquire lease", exc)
        assert isinstance(mapped, LeaseStoreError) and "acquire lease" in str(mapped)
    assert "could not be reached" in str(store_error("x", redis.exceptions.ConnectionError("refused")))
    assert "could not be reached" in str(store_error("x", ConnectionResetError("reset")))
    assert "answered with an error" in str(store_error("x", redis.exceptions.ResponseError("WRONGTYPE")))


def test_bad_arguments_are_refused_before_calling_redis(make_leases: LeasesFactory) -> None:
    leases = make_leases(f"redis://127.0.0.1:{closed_port()}/0")
    with pytest.raises(TypeError, match="not the string"):
        leases.acquire("queue:sms", holder_of("run-A"))
    with pytest.raises(ValueError, match="one or more"):
        leases.acquire([], holder_of("run-A"))
    with pytest.raises(ValueError, match="one or more"):
        leases.acquire([""], holder_of("run-A"))
    with pytest.raises(ValueError, match="positive"):
        Leases("redis://127.0.0.1:1/0", ttl=0)

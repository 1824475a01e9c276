"""Total deadlines and fail-fast: a call that does not finish is abandoned at its deadline, a socket that stays
silent is shut down, a service known down is not called again, and the run's budget caps every call."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from runbooklib.deadline import DeadlineExceeded, Dependency, RunBudget, watchdog, within
from runbooklib.errors import ProviderTimeout


def test_within_returns_the_value_or_stops_waiting_at_the_deadline() -> None:
    assert within(lambda: 41 + 1, 1) == 42
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        within(lambda: time.sleep(5), 0.3)
    assert time.monotonic() - started < 1.5


def test_within_hands_on_the_call_s_own_error() -> None:
    def boom() -> None:
        raise KeyError("nope")
    with pytest.raises(KeyError):
        within(boom, 1)


def test_a_dependency_that_timed_out_is_not_called_again() -> None:
    calls: list[int] = []
    dep = Dependency("Twilio", 0.3, ProviderTimeout)

    def slow() -> None:
        calls.append(1)
        time.sleep(3)
    with pytest.raises(ProviderTimeout, match="no complete answer within 0.3s"):
        dep.call(slow, "fetch account")
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="not tried — Twilio gave no complete answer within 0.3s earlier"):
        dep.call(slow, "list numbers")
    assert calls == [1] and time.monotonic() - started < 0.1


def test_a_client_error_that_means_unreachable_marks_the_service_down() -> None:
    dep = Dependency("API", 1, ProviderTimeout)

    def refused() -> None:
        raise ConnectionRefusedError("refused")
    with pytest.raises(ConnectionRefusedError):
        dep.call(refused, "GET", down_on=(ConnectionRefusedError,))
    assert dep.down == "could not be reached (ConnectionRefusedError)"
    with pytest.raises(ProviderTimeout, match="not tried"):
        dep.call(lambda: None, "GET again")
    other = Dependency("API", 1, ProviderTimeout)
    with pytest.raises(KeyError):
        other.call(lambda: {}["x"], "GET", down_on=(ConnectionRefusedError,))
    assert other.down is None


def test_a_changing_call_cut_at_its_deadline_says_it_may_have_landed() -> None:
    with pytest.raises(ProviderTimeout, match="may or may not have been made"):
        Dependency("API", 0.2, ProviderTimeout).call(lambda: time.sleep(2), "PATCH", changes=True)


def test_the_run_budget_caps_and_then_refuses_calls() -> None:
    dep = Dependency("API", 10, ProviderTimeout, budget=RunBudget(datetime.now(UTC) + timedelta(seconds=0.5)))
    assert dep.allowance("GET") <= 0.5
    time.sleep(0.6)
    with pytest.raises(ProviderTimeout, match="time budget is used up"):
        dep.allowance("GET")


def test_the_watchdog_wakes_a_blocked_read_and_leaves_a_quick_one_alone() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    started = time.monotonic()
    with watchdog(0.3, lambda: client) as fired:
        data = client.recv(10)  # the peer never sends: only the watchdog ends this
    assert data == b"" and fired() and time.monotonic() - started < 2
    quick = socket.create_connection(server.getsockname())
    peer2, _ = server.accept()
    peer2.sendall(b"hi")
    with watchdog(0.5, lambda: quick) as fired:
        assert quick.recv(10) == b"hi"
    time.sleep(0.7)
    assert not fired()
    peer2.sendall(b"still open")
    assert quick.recv(20) == b"still open"
    for s in (server, client, peer, quick, peer2):
        s.close()


def test_a_watchdog_on_a_descriptor() -> None:
    a, b = socket.socketpair()
    result: list[bytes] = []
    thread = threading.Thread(target=lambda: result.append(a.recv(5)))
    with watchdog(0.2, lambda: a.fileno()):
        thread.start()
        thread.join(3)
    assert result == [b""]
    a.close()
    b.close()

"""Total deadlines for every call to the outside world, and fail-fast once a service is known down.

Client libraries bound each socket operation (one connect, one read), not a call: a peer that
trickles a byte every few seconds, or a database session that goes silent after connecting, keeps
them waiting for ever. Three mechanisms give every outside call a *total* deadline:

- `Dependency.call(fn)` runs a blocking client call (httpx, the twilio client, botocore) on a
  helper thread and stops waiting at the deadline. The call is abandoned, not awaited; a mutating
  call abandoned this way may still land, and its caller says so.
- `watchdog(seconds, target)` shuts a socket down at the deadline, which wakes a blocked read with
  an error (smtplib's dialogue, a PostgreSQL session).
- `asyncio.wait_for` for Redis (in `runbooklib.queues`), where cancelling is clean.

A `Dependency` also remembers that its service did not answer: later calls in the same run fail at
once with the reason, so a database that times out costs one statement timeout, not a dozen. Each
call's deadline is capped by the run's own (`RunBudget`), so a headless run ends by the time it
printed at its start.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from runbooklib.errors import RunbookError

T = TypeVar("T")


class DeadlineExceeded(TimeoutError):
    """A call did not finish within its total deadline (raised by `within`; mapped by callers)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g}s")
        self.seconds = seconds


def within(fn: Callable[[], T], seconds: float) -> T:
    """`fn()`, or `DeadlineExceeded` once `seconds` have passed (the call goes on, abandoned, on its thread)."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, daemon=True, name="runbook-outside-call").start()
    if not done.wait(max(seconds, 0.0)):
        raise DeadlineExceeded(seconds)
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def shutdown(target: socket.socket | int | None) -> None:
    """Shut a socket (or a socket file descriptor) down for reading and writing; any blocked read wakes."""
    if target is None:
        return
    try:
        if isinstance(target, int):
            if target < 0:
                return
            dup = socket.socket(fileno=os.dup(target))
            try:
                dup.shutdown(socket.SHUT_RDWR)
            finally:
                dup.close()
        else:
            target.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing to wake


@contextmanager
def watchdog(seconds: float, target: Callable[[], socket.socket | int | None]) -> Iterator[Callable[[], bool]]:
    """Shut down the socket `target()` returns if the block is still running after `seconds`.

    Yields a function that says whether the watchdog fired (so the caller can report a deadline,
    not a mysterious disconnect). A block that ends first is never interfered with.
    """
    lock = threading.Lock()
    state = {"finished": False, "fired": False}

    def fire() -> None:
        with lock:
            if state["finished"]:
                return
            state["fired"] = True
        shutdown(target())

    timer = threading.Timer(max(seconds, 0.0), fire)
    timer.daemon = True
    timer.start()
    try:
        yield lambda: state["fired"]
    finally:
        with lock:
            state["finished"] = True
        timer.cancel()


class RunBudget:
    """The time a run may still take: every outside call's deadline is capped by it (None: no limit)."""

    def __init__(self, ends_at: datetime | None = None) -> None:
        self.ends_at = ends_at
        self._ends = None if ends_at is None else time.monotonic() + (ends_at - datetime.now(UTC)).total_seconds()

    def remaining(self) -> float | None:
        return None if self._ends is None else self._ends - time.monotonic()


@dataclass
class Dependency:
    """One outside service of a run: its per-call total deadline, and whether it is known down.

    `error` is the domain error raised for a call that hit its deadline or was not tried (a
    `PlatformUnreachable`, `ProviderTimeout`, `QueryError`, ...).
    """

    name: str
    seconds: float
    error: Callable[[str], RunbookError]
    budget: RunBudget = field(default_factory=RunBudget)
    down: str | None = None
    """Why the service is known down in this run (later calls fail at once), or None."""

    def allowance(self, what: str) -> float:
        """Seconds `what` may take now; raises `error` without calling when the service is down or time is up."""
        if self.down:
            raise self.error(f"{what}: not tried — {self.name} {self.down} earlier in this run "
                             "(later calls fail fast; run again once it answers)")
        seconds = self.seconds
        remaining = self.budget.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise self.error(f"{what}: not tried — the run's time budget is used up")
            seconds = min(seconds, remaining)
        return seconds

    def call(self, fn: Callable[[], T], what: str, *, changes: bool = False,
             down_on: tuple[type[BaseException], ...] = ()) -> T:
        """`fn()` within the deadline; at the deadline the service is marked down and `error` raised.

        `changes`: the call changes something; an abandoned call may still land, and the error says so.
        `down_on`: the client's own errors that mean the service cannot be reached (refused, timed out, hung
        up): the service is marked down and the error goes on to the caller, who maps it.
        """
        seconds = self.allowance(what)
        try:
            return within(fn, seconds)
        except down_on as exc:
            self.trip(f"could not be reached ({exc.__class__.__name__})")
            raise
        except DeadlineExceeded as exc:
            self.trip(f"gave no complete answer within {seconds:g}s")
            unsure = "; the change may or may not have been made — read it back before retrying" if changes else ""
            raise self.error(f"{what}: no complete answer within {seconds:g}s (total deadline){unsure}") from exc

    def trip(self, reason: str) -> None:
        """Mark the service down for the rest of the run (the first reason is kept)."""
        self.down = self.down or reason

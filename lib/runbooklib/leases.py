"""Leases in Redis: one change per resource at a time, across machines and runs.

Applying a mitigation takes a lease on the resources it changes (`channel:email:tenant:t-acme`,
`queue:sms`, `queue:communication-dlq`, `platform:sms:retry-failed`, ...). A second run that wants
any of them is refused with `LeaseHeld`, which names the run holding it and when its lease ends.

Key layout: one Redis string per resource, `<prefix><resource>` (prefix `comms-runbooks:lease:`),
holding JSON `{"token": <random hex>, "holder": {incident, run, operator, action, ..., resources,
since, expires}}` with a Redis expiry (`PX`) of `ttl`. Every key of one lease holds the same value.
The keys of one lease may live in different hash slots, so the store is one Redis (not a Cluster).

Guarantees:
- All or nothing: `acquire` runs one Lua script that sets every key (`NX`-like: only when none of
  them exists). If any is held, nothing is taken and `LeaseHeld` names the first held resource (in
  sorted order) and its holder. Scripts run atomically, so two runs racing for overlapping sets
  cannot both win, nor take half each.
- Token-checked: `renew` extends, and `release` deletes, only keys that still hold this lease's
  token (compare and `PEXPIRE`/`DEL` in one script). A holder whose lease expired and was taken by
  another run never extends or deletes the other run's keys.
- Expiry bounds a crashed holder: a holder killed mid-change stops renewing, and its keys vanish
  `ttl` later at most. Inside `with lease:` a daemon thread renews every `ttl / 3`.
- `Lease.lost` says when the holder can no longer count on its lease: a renewal found a key gone
  or taken by another holder, could not reach Redis, or nothing confirmed the lease for longer
  than `ttl` (by the holder's monotonic clock, counted from when the confirming call was *sent*,
  so it never overstates). It stays set once set; the gate records it with the change.

Clock skew between machines does not matter: only Redis' own clock times the keys. `since` and the
stored `expires` are the holder's wall clock and only informative; `holder()` and `LeaseHeld`
report `expires` as the reader's now plus the key's remaining `PTTL`.

Every call has a total deadline (`total_timeout`, via `runbooklib.deadline.within`): socket
timeouts bound each read only, and a Redis that accepts and never answers, or drip-feeds, must not
hang a run. At the deadline the call's connection is shut down and `LeaseStoreError` raised. An
`acquire` cut this way may still have landed; nothing renews such keys, so they expire within
`ttl`. The client has short socket timeouts and no retries.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from runbooklib.deadline import DeadlineExceeded, within
from runbooklib.errors import RunbookError

PREFIX = "comms-runbooks:lease:"
TTL = 60.0
"""Seconds a lease lives without renewal (a crashed holder blocks others this long at most)."""
TIMEOUT = 3.0
"""Seconds for one connect or one socket read."""
TOTAL_TIMEOUT = 10.0
"""Seconds for a whole call (connect, send, every read), whatever the peer does."""
HOLDER_FIELDS = ("incident", "run", "operator", "action")
T = TypeVar("T")

_OURS = """
local function ours(held, token)
  if not held then return false end
  local ok, lease = pcall(cjson.decode, held)
  return ok and type(lease) == 'table' and lease['token'] == token
end
"""
ACQUIRE = """
-- KEYS: the lease keys. ARGV[1]: the value (token and holder, JSON); ARGV[2]: ttl in ms.
-- Sets every key, or none: {0} when taken, else {index, value, pttl} of the first key held.
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held then return {i, held, redis.call('PTTL', key)} end
end
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
end
return {0}
"""
RENEW = _OURS + """
-- KEYS: the lease keys. ARGV[1]: token; ARGV[2]: the new value; ARGV[3]: ttl in ms.
-- Extends the keys still holding the token (never creates one): {0}, else {index, value or '', pttl}
-- of the first key that is gone or holds another token.
local first = nil
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if ours(held, ARGV[1]) then
    redis.call('SET', key, ARGV[2], 'XX', 'PX', ARGV[3])
  elseif not first then
    if held then first = {i, held, redis.call('PTTL', key)} else first = {i, '', -2} end
  end
end
return first or {0}
"""
RELEASE = _OURS + """
-- KEYS: the lease keys. ARGV[1]: token. Deletes the keys still holding the token; returns how many.
local n = 0
for _, key in ipairs(KEYS) do
  if ours(redis.call('GET', key), ARGV[1]) then n = n + redis.call('DEL', key) end
end
return n
"""
HOLDER = """
-- KEYS[1]: one lease key. {value, pttl}, or {''} when free.
local held = redis.call('GET', KEYS[1])
if not held then return {''} end
return {held, redis.call('PTTL', KEYS[1])}
"""


class LeaseHeld(RunbookError):
    """A resource is leased by another run: nothing was taken. `resource` and `holder` name it."""

    def __init__(self, resource: str, holder: dict[str, Any], *, wanted: tuple[str, ...] = ()) -> None:
        others = [r for r in wanted if r != resource]
        asked = f" (asked for {', '.join(wanted)})" if others else ""
        super().__init__(f"{resource} is held by {describe(holder)}: nothing was taken{asked}")
        self.resource = resource
        self.holder = holder


class LeaseStoreError(RunbookError):
    """The lease store could not be reached, did not answer within the deadline, or answered with an error."""


def describe(holder: Mapping[str, Any]) -> str:
    """`incident INC-7, run r-1, operator alice, action pause_queue, since ..., expires ... (in 41s unless renewed)`."""
    parts = [f"{k} {holder[k]}" for k in HOLDER_FIELDS if holder.get(k)]
    if not parts:
        parts = [f"an unnamed holder {json.dumps(dict(holder), default=str)[:200]}"]
    if holder.get("since"):
        parts.append(f"since {holder['since']}")
    if holder.get("expires"):
        left = holder.get("expires_in")
        parts.append(f"expires {holder['expires']}" + (f" (in {left:g}s unless renewed)" if left is not None else ""))
    elif "expires_in" in holder:
        parts.append("with no expiry (not set by runbooklib?)")
    return ", ".join(parts)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _as_seen(raw: str, pttl: int) -> dict[str, Any]:
    """The holder stored in a key's value, `expires` taken from the key's remaining time on the reader's clock."""
    try:
        holder = json.loads(raw)["holder"]
        if not isinstance(holder, dict):
            raise TypeError(type(holder).__name__)
    except (ValueError, KeyError, TypeError):
        holder = {"unreadable": raw[:200]}
    if pttl >= 0:
        holder["expires"] = _iso(datetime.now(UTC) + timedelta(milliseconds=pttl))
        holder["expires_in"] = round(pttl / 1000, 1)
    else:  # a key without expiry was not written by this module: say so rather than show a stale time
        holder["expires"] = holder["expires_in"] = None
    return holder


def store_error(what: str, exc: BaseException) -> LeaseStoreError:
    """The `LeaseStoreError` for a Redis client error (or a socket error) met while doing `what`."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError):
        return LeaseStoreError(f"{what}: the lease store (Redis) could not be reached: {exc.__class__.__name__}: {exc}")
    return LeaseStoreError(f"{what}: the lease store (Redis) answered with an error: {exc.__class__.__name__}: {exc}")


class Lease:
    """A lease on `resources`, held under `token` for `holder`; a context manager that renews it while open."""

    def __init__(self, store: Leases, resources: tuple[str, ...], token: str, holder: dict[str, Any],
                 confirmed: float) -> None:
        self.resources = resources
        self.token = token
        self.holder = holder
        """What the keys say: the caller's holder plus `resources`, `since` and `expires` (this machine's clock)."""
        self.release_error: str | None = None
        """Why leaving the `with` block could not release the keys (they expire within `ttl`), or None."""
        self._store = store
        self._confirmed = confirmed
        self._lost: str | None = None
        self._gone = False
        self._releasing = False
        self._released = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def lost(self) -> str | None:
        """Why this lease can no longer be counted on (gone, taken, store unreachable, unconfirmed), or None."""
        if self._lost is None and not self._releasing:
            silent = time.monotonic() - self._confirmed
            if silent > self._store.ttl:
                self._lost = (f"lease on {', '.join(self.resources)} not confirmed for {silent:.1f}s (ttl "
                              f"{self._store.ttl:g}s): its keys may have expired and another run may hold them")
        return self._lost

    def _lose(self, reason: str, *, gone: bool) -> None:
        # A definite loss (gone, taken) replaces an unsure one (unreachable); otherwise the first reason stays.
        if self._lost is None or (gone and not self._gone):
            self._lost = reason
        self._gone = self._gone or gone

    def renew(self) -> None:
        """Extend every key still holding the token by `ttl`; sets `lost` when one is gone or taken, or Redis fails."""
        if self._releasing:
            return
        store = self._store
        sent = time.monotonic()
        holder = {**self.holder, "expires": _iso(datetime.now(UTC) + timedelta(seconds=store.ttl))}
        value = json.dumps({"token": self.token, "holder": holder})
        try:
            reply = store._call("renew lease", lambda c: c.eval(RENEW, len(self.resources), *store._keys(self.resources),
                                                                self.token, value, store._ttl_ms))
        except LeaseStoreError as exc:
            if not self._releasing:
                self._lose(f"renewal could not confirm the lease: {exc}", gone=False)
            return
        if self._releasing:
            return
        index = int(reply[0])
        if index == 0:
            self._confirmed = sent
            self.holder = holder
            return
        resource = self.resources[index - 1]
        if not reply[1]:
            self._lose(f"{resource}: the lease key is gone (it expired: not renewed within {store.ttl:g}s)", gone=True)
        else:
            self._lose(f"{resource} was taken by {describe(_as_seen(str(reply[1]), int(reply[2])))}", gone=True)

    def release(self) -> None:
        """Delete the keys still holding the token (never another holder's); stops renewing. Idempotent.

        A renewal in flight is let finish first (bounded by its own deadline), so no renewer is left using the
        pool once this returns. Raises `LeaseStoreError` when Redis does not answer (the keys then expire
        within `ttl`); a later call tries again. A key found no longer ours is noted in `lost`.
        """
        self._releasing = True
        self._stop.set()
        if self._released:
            return
        store = self._store
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(store.total_timeout)  # a renewal in flight finishes (or meets its deadline) first
        deleted = int(store._call("release lease", lambda c: c.eval(RELEASE, len(self.resources),
                                                                    *store._keys(self.resources), self.token)))
        self._released = True
        if deleted < len(self.resources) and self._lost is None:
            self._lost = (f"at release, {len(self.resources) - deleted} of {len(self.resources)} lease keys no longer "
                          "held this lease (expired or taken by another run); they were left alone")

    def _keep_renewing(self) -> None:
        while not self._stop.wait(self._store.ttl / 3):
            try:
                self.renew()
            except Exception as exc:  # the renewer must never die silently: an unexpected failure is a finding
                if not self._releasing:
                    self._lose(f"renewal failed unexpectedly ({type(exc).__name__}: {exc}); the lease may expire",
                               gone=False)
            if self._gone:
                return

    def __enter__(self) -> Lease:
        if self._renewer is None and not self._releasing:
            self._renewer = threading.Thread(target=self._keep_renewing, daemon=True,
                                             name=f"lease-renew:{','.join(self.resources)}"[:60])
            self._renewer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # A release that fails must not turn a finished change into an error: the keys expire within ttl.
        try:
            self.release()
        except LeaseStoreError as error:
            self.release_error = f"{error} (the keys expire within {self._store.ttl:g}s by themselves)"
            if exc is not None:
                exc.add_note(f"and the lease was not released: {self.release_error}")

    def __repr__(self) -> str:
        return f"Lease({', '.join(self.resources)}, lost={self.lost!r})"


class Leases:
    """Leases kept in one Redis at `url`; every call bounded by `total_timeout` and mapped to `LeaseStoreError`."""

    def __init__(self, url: str, *, prefix: str = PREFIX, ttl: float = TTL, timeout: float = TIMEOUT,
                 total_timeout: float = TOTAL_TIMEOUT) -> None:
        if ttl <= 0 or timeout <= 0 or total_timeout <= 0:
            raise ValueError("ttl, timeout and total_timeout must be positive")
        self.prefix, self.ttl, self.timeout, self.total_timeout = prefix, ttl, timeout, total_timeout
        self._ttl_ms = max(1, int(ttl * 1000))
        self._pool = redis.ConnectionPool.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False, decode_responses=True)

    def _keys(self, resources: Iterable[str]) -> list[str]:
        return [self.prefix + r for r in resources]

    def _call(self, what: str, fn: Callable[[redis.Redis], T]) -> T:
        """`fn(client)` on a connection of its own, within `total_timeout`; at the deadline that connection is shut."""
        lock = threading.Lock()
        state: dict[str, Any] = {"client": None, "abandoned": False}

        def call() -> T:
            client = redis.Redis(connection_pool=self._pool, single_connection_client=True)  # connects
            with lock:
                state["client"] = client
                abandoned = state["abandoned"]
            try:
                if abandoned:
                    raise DeadlineExceeded(self.total_timeout)
                return fn(client)
            finally:
                client.close()

        try:
            return within(call, self.total_timeout)
        except DeadlineExceeded as exc:
            with lock:
                state["abandoned"] = True
                client = state["client"]
            if client is not None and client.connection is not None:
                client.connection.disconnect()  # wakes the abandoned call's blocked read
            raise LeaseStoreError(f"{what}: the lease store (Redis) gave no complete answer within "
                                  f"{self.total_timeout:g}s (total deadline)") from exc
        except (RedisError, OSError) as exc:
            raise store_error(what, exc) from exc

    def acquire(self, resources: Iterable[str], holder: Mapping[str, Any]) -> Lease:
        """Take every resource or none; `LeaseHeld` names the first held one, `LeaseStoreError` a failed store."""
        if isinstance(resources, str):
            raise TypeError(f"resources must be a collection of names, not the string {resources!r}")
        wanted = tuple(sorted(set(resources)))
        if not wanted or not all(isinstance(r, str) and r for r in wanted):
            raise ValueError(f"a lease needs one or more non-empty resource names, got {wanted!r}")
        token = secrets.token_hex(16)
        now = datetime.now(UTC)
        stored: dict[str, Any] = json.loads(json.dumps(dict(holder), default=str))
        stored.update(resources=list(wanted), since=_iso(now), expires=_iso(now + timedelta(seconds=self.ttl)))
        value = json.dumps({"token": token, "holder": stored})
        sent = time.monotonic()
        reply = self._call("acquire lease", lambda c: c.eval(ACQUIRE, len(wanted), *self._keys(wanted), value,
                                                             self._ttl_ms))
        index = int(reply[0])
        if index:
            raise LeaseHeld(wanted[index - 1], _as_seen(str(reply[1]), int(reply[2])), wanted=wanted)
        return Lease(self, wanted, token, stored, sent)

    def holder(self, resource: str) -> dict[str, Any] | None:
        """Who holds `resource` (with `expires` on this machine's clock and `expires_in` seconds), or None if free."""
        reply = self._call("read lease", lambda c: c.eval(HOLDER, 1, self.prefix + resource))
        if not reply[0]:
            return None
        return _as_seen(str(reply[0]), int(reply[1]))

    def close(self) -> None:
        """Close the connections (a later call opens new ones)."""
        self._pool.disconnect()

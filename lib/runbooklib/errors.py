"""The one error tree of comms-runbooks.

```
RunbookError
 ├── ConfigError             bad parameters, unknown environment, missing secret variable
 ├── QueryError              a database query failed, timed out or hit the row cap
 ├── QueueError              BullMQ's Redis could not be used (refused, silent, past its deadline)
 ├── StorageError            an s3:// run store could not be read or written
 ├── LeaseHeld               (runbooklib.leases) another run holds the lease on a resource; names the holder
 ├── LeaseStoreError         (runbooklib.leases) the lease store could not be reached within its deadline
 ├── PlatformAPIError        the Lineup API could not be used
 │    ├── PlatformUnreachable
 │    ├── PlatformAuthError
 │    └── PlatformResponseError
 ├── ProviderError           an email/SMS/WhatsApp provider call failed
 │    ├── ProviderTimeout
 │    ├── ProviderAuthError
 │    └── ProviderResponseError
 └── MitigationError
      └── MitigationFailed      apply or verify did not succeed
```

The gate holding an action back is a decision it records (`dry_run`, `refused`, `blocked`), not an error; a
headless run that stops at a failing cell is a `RunResult` with its bundle, not an exception.

Checks never raise these for a failing provider: they return a `CheckResult` that says so.
Third-party errors are mapped at the boundary (`raise ... from exc`).
"""

from __future__ import annotations


class RunbookError(Exception):
    """Base class of every error raised by runbooklib."""


class ConfigError(RunbookError):
    """A parameter, setting or environment variable is wrong or missing."""

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class QueryError(RunbookError):
    """A database query failed, was interrupted by the time limit, or exceeded the row cap."""


class QueueError(RunbookError):
    """A Redis/BullMQ call failed, did not answer within its deadline, or Redis is known down in this run."""


class StorageError(RunbookError):
    """An s3:// location for run records could not be read or written."""


class PlatformAPIError(RunbookError):
    """The Lineup platform API could not be used."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class PlatformUnreachable(PlatformAPIError):
    """The Lineup API did not answer (connection refused, DNS, timeout)."""


class PlatformAuthError(PlatformAPIError):
    """The Lineup API rejected the token (401/403)."""


class PlatformResponseError(PlatformAPIError):
    """The Lineup API answered with an error status or a body we cannot read."""


class ProviderError(RunbookError):
    """A provider (SMTP, SES, Twilio, Graph) call failed."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class ProviderTimeout(ProviderError):
    """A provider did not answer in time or could not be reached."""


class ProviderAuthError(ProviderError):
    """A provider rejected our credentials or permissions."""


class ProviderResponseError(ProviderError):
    """A provider answered with an error."""


class MitigationError(RunbookError):
    """A mitigation could not be carried out."""


class MitigationFailed(MitigationError):
    """A mitigation's apply or verify step failed."""


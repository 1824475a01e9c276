"""comms-runbooks: executable runbook notebooks for Lineup's communication system.

Public API: `start` (a notebook's run context), `RunbookError` and its tree (`runbooklib.errors`).
The run context (and the data stack it imports) loads on first use, so the runner, the S3 store and the
offline review import none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runbooklib.errors import RunbookError

if TYPE_CHECKING:
    from runbooklib.context import RunContext, start

__all__ = ["RunContext", "RunbookError", "start"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("RunContext", "start"):
        from runbooklib import context

        return getattr(context, name)
    raise AttributeError(f"module 'runbooklib' has no attribute {name!r}")

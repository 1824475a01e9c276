"""comms-runbooks: executable runbook notebooks for Lineup's communication system.

Public API: `start` (a notebook's run context), `RunbookError` and its tree (`runbooklib.errors`).
"""

from __future__ import annotations

from runbooklib.context import RunContext, start
from runbooklib.errors import RunbookError

__all__ = ["RunContext", "RunbookError", "start"]
__version__ = "0.1.0"
